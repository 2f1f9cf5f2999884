package tlsconf

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsServer serves NewConfig(getCert) on loopback and completes handshakes.
func tlsServer(t *testing.T, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) string {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", NewConfig(getCert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					io.WriteString(c, "hi")
				}
			}()
		}
	}()
	return l.Addr().String()
}

func handshake(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

func TestProtocolPolicy(t *testing.T) {
	ss, err := SelfSigned(t.TempDir(), []string{"door.example"})
	if err != nil {
		t.Fatal(err)
	}
	addr := tlsServer(t, ss.GetCertificate)
	for _, tc := range []struct {
		name    string
		cfg     *tls.Config
		ok      bool
		version uint16
		curve   tls.CurveID
	}{
		{"tls 1.0", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, false, 0, 0},
		{"tls 1.1", &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}, false, 0, 0},
		{"tls 1.2 cbc", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}}, false, 0, 0},
		{"tls 1.2 rsa key exchange", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_256_GCM_SHA384}}, false, 0, 0},
		{"tls 1.2 aead", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, true, tls.VersionTLS12, tls.X25519},
		{"tls 1.2 chacha", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, true, tls.VersionTLS12, tls.X25519},
		{"tls 1.2 p-521 only", &tls.Config{MaxVersion: tls.VersionTLS12, CurvePreferences: []tls.CurveID{tls.CurveP521}}, false, 0, 0},
		{"default client gets 1.3", &tls.Config{}, true, tls.VersionTLS13, tls.X25519MLKEM768},
		{"tls 1.3 classical client", &tls.Config{MinVersion: tls.VersionTLS13, CurvePreferences: []tls.CurveID{tls.CurveP256, tls.X25519}}, true, tls.VersionTLS13, tls.X25519},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg.Clone()
			cfg.ServerName = "door.example"
			pool := x509.NewCertPool()
			pool.AddCert(ss.Certificate.Leaf)
			cfg.RootCAs = pool
			st, err := handshake(addr, cfg)
			if tc.ok != (err == nil) {
				t.Fatalf("handshake error %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				t.Logf("refused: %v", err)
				return
			}
			if st.Version != tc.version || st.CurveID != tc.curve {
				t.Errorf("version %s curve %s, want %s %s", tls.VersionName(st.Version), st.CurveID,
					tls.VersionName(tc.version), tc.curve)
			}
		})
	}
}

func writePair(t *testing.T, dir, name string, host string) (certPath, keyPath string, leaf *x509.Certificate) {
	t.Helper()
	certPEM, keyPEM, err := generateSelfSigned([]string{host}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, c.Leaf
}

// install copies the pair src into the served files dst, as a renewal would.
func install(t *testing.T, srcCert, srcKey, dstCert, dstKey string) {
	t.Helper()
	for src, dst := range map[string]string{srcCert: dstCert, srcKey: dstKey} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := writeFileAtomic(dst, b); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFileCertReload(t *testing.T) {
	dir := t.TempDir()
	aCert, aKey, a := writePair(t, dir, "a", "a.example")
	bCert, bKey, b := writePair(t, dir, "b", "b.example")
	_, cKey, _ := writePair(t, dir, "c", "c.example")
	certFile, keyFile := filepath.Join(dir, "served.crt"), filepath.Join(dir, "served.key")
	install(t, aCert, aKey, certFile, keyFile)

	var logs bytes.Buffer
	fc, err := LoadFileCert(certFile, keyFile, FileCertOptions{CheckInterval: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	now := fc.lastCheck
	fc.now = func() time.Time { return now }
	addr := tlsServer(t, fc.GetCertificate)
	served := func() string {
		t.Helper()
		st, err := handshake(addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return st.PeerCertificates[0].Subject.CommonName
	}
	advance := func() { now = now.Add(time.Minute) }

	if got := served(); got != "a.example" {
		t.Fatalf("serving %s", got)
	}
	steps := []struct {
		name    string
		change  func()
		advance bool
		want    string
		log     string
	}{
		{"new pair before the interval", func() { install(t, bCert, bKey, certFile, keyFile) }, false, "a.example", ""},
		{"new pair after the interval", func() {}, true, "b.example", "reloaded certificate"},
		{"garbage cert keeps the old", func() { writeFileAtomic(certFile, []byte("-----BEGIN CERTIFICATE-----\nnope\n")) }, true, "b.example", "does not load"},
		{"mismatched key keeps the old", func() { install(t, aCert, cKey, certFile, keyFile) }, true, "b.example", "does not load"},
		{"missing key keeps the old", func() { os.Remove(keyFile) }, true, "b.example", "unreadable"},
		{"good pair again", func() { install(t, aCert, aKey, certFile, keyFile) }, true, "a.example", "reloaded certificate"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			logs.Reset()
			s.change()
			if s.advance {
				advance()
			}
			if got := served(); got != s.want {
				t.Errorf("serving %s, want %s", got, s.want)
			}
			if !strings.Contains(logs.String(), s.log) {
				t.Errorf("log %q does not mention %q", logs.String(), s.log)
			}
		})
	}
	_, _ = a, b

	if _, err := LoadFileCert(filepath.Join(dir, "none.crt"), keyFile, FileCertOptions{}); err == nil {
		t.Error("LoadFileCert of a missing file succeeded")
	}
	if _, err := LoadFileCert(aCert, cKey, FileCertOptions{}); err == nil {
		t.Error("LoadFileCert of a mismatched pair succeeded")
	}
}

func TestSelfSignedPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	hosts := []string{"door.example", "127.0.0.1"}
	first, err := SelfSigned(dir, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Created {
		t.Error("first call did not create")
	}
	sum := sha256.Sum256(first.Certificate.Leaf.Raw)
	if want := strings.ToUpper(hex.EncodeToString(sum[:])); strings.ReplaceAll(first.Fingerprint, ":", "") != want || len(first.Fingerprint) != 95 {
		t.Errorf("fingerprint %s, want sha256 %s", first.Fingerprint, want)
	}
	for _, name := range []string{SelfSignedCertFile, SelfSignedKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", fi.Mode().Perm())
	}
	leaf := first.Certificate.Leaf
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("does not cover %s: %v", h, err)
		}
	}

	for _, tc := range []struct {
		name    string
		hosts   []string
		prepare func()
		same    bool
	}{
		{"same hosts reused", hosts, nil, true},
		{"subset of hosts reused", hosts[:1], nil, true},
		{"new host regenerates", []string{"door.example", "other.example"}, nil, false},
		{"broken key regenerates", []string{"door.example"}, func() {
			os.WriteFile(filepath.Join(dir, SelfSignedKeyFile), []byte("junk"), 0o600)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prepare != nil {
				tc.prepare()
			}
			got, err := SelfSigned(dir, tc.hosts)
			if err != nil {
				t.Fatal(err)
			}
			if same := got.Fingerprint == first.Fingerprint; same != tc.same || got.Created == tc.same {
				t.Errorf("fingerprint same = %v created = %v, want same %v", same, got.Created, tc.same)
			}
			first = got
		})
	}
	if _, err := SelfSigned(dir, nil); err == nil {
		t.Error("SelfSigned without hosts succeeded")
	}
}

func TestACMEConfig(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "acme")
	m, err := ACME(ACMEConfig{Hosts: []string{"door.example"}, CacheDir: cache, Email: "ops@example.com",
		DirectoryURL: "https://acme-staging-v02.api.letsencrypt.org/directory"})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("cache dir: %v %v", fi, err)
	}
	ctx := t.Context()
	if err := m.HostPolicy(ctx, "door.example"); err != nil {
		t.Errorf("policy refused the configured host: %v", err)
	}
	for _, h := range []string{"evil.example", "sub.door.example", "127.0.0.1"} {
		if err := m.HostPolicy(ctx, h); err == nil {
			t.Errorf("policy allowed %s", h)
		}
	}
	if m.Client == nil || m.Client.DirectoryURL == "" || m.Email != "ops@example.com" {
		t.Errorf("manager %+v", m)
	}
	// An SNI outside the policy is refused without contacting the CA.
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "evil.example"}); err == nil {
		t.Error("GetCertificate for evil.example succeeded")
	}
	c := ACMETLSConfig(m)
	if c.MinVersion != tls.VersionTLS12 || c.GetCertificate == nil || !strings.Contains(strings.Join(c.NextProtos, ","), "acme-tls/1") {
		t.Errorf("tls config %+v", c)
	}
	for _, bad := range []ACMEConfig{
		{CacheDir: cache},
		{Hosts: []string{"door.example"}},
		{Hosts: []string{"*.door.example"}, CacheDir: cache},
		{Hosts: []string{"door.example:443"}, CacheDir: cache},
	} {
		if _, err := ACME(bad); err == nil {
			t.Errorf("ACME(%+v) succeeded", bad)
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	want := map[string]string{}
	for _, kv := range securityHeaders {
		want[kv[0]] = kv[1]
	}
	if !strings.Contains(want["Strict-Transport-Security"], "includeSubDomains") {
		t.Fatal("HSTS without includeSubDomains")
	}
	for _, tc := range []struct {
		name string
		h    http.HandlerFunc
		code int
	}{
		{"ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }, 200},
		{"empty", func(w http.ResponseWriter, r *http.Request) {}, 200},
		{"not found", http.NotFound, 404},
		{"error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }, 500},
		{"bad gateway", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad gateway", 502) }, 502},
		{"redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/login", http.StatusFound) }, 302},
		{"upstream weakens", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", "default-src *")
			w.Header().Add("Strict-Transport-Security", "max-age=0")
			w.Header().Set("X-Frame-Options", "ALLOWALL")
			w.Header().Del("X-Content-Type-Options")
			w.WriteHeader(200)
		}, 200},
		{"upstream weakens on write", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Referrer-Policy", "unsafe-url")
			io.WriteString(w, "x")
		}, 200},
		{"streaming", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", "default-src *")
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("flush: %v", err)
			}
			io.WriteString(w, "x")
		}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := httptest.NewServer(SecurityHeaders(tc.h))
			defer ts.Close()
			client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := client.Get(ts.URL + "/x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("status %d", resp.StatusCode)
			}
			for k, v := range want {
				if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}

	// Hijack (WebSocket) still works through the wrapper.
	ts := httptest.NewServer(SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 204 No Content\r\n\r\n")
		brw.Flush()
	})))
	defer ts.Close()
	resp, err := http.Get(ts.URL)
	if err != nil || resp.StatusCode != 204 {
		t.Errorf("hijacked response: %v %v", resp, err)
	}
}

func TestRedirect(t *testing.T) {
	for _, tc := range []struct {
		name     string
		port     int
		host     string
		target   string
		code     int
		location string
	}{
		{"path and query", 8443, "door.example", "/a/b?x=1&y=%2F", 301, "https://door.example:8443/a/b?x=1&y=%2F"},
		{"host with port and case", 8443, "DOOR.example:80", "/", 301, "https://door.example:8443/"},
		{"trailing dot", 8443, "door.example.", "/", 301, "https://door.example:8443/"},
		{"default port", 443, "door.example", "/login", 301, "https://door.example/login"},
		{"escaped path", 443, "door.example", "/a%20b/%2E%2E", 301, "https://door.example/a%20b/%2E%2E"},
		{"double slash path stays on host", 443, "door.example", "//evil.example/x", 301, "https://door.example//evil.example/x"},
		{"backslash path stays on host", 443, "door.example", "/\\evil.example", 301, "https://door.example/%5Cevil.example"},
		{"hostile host", 8443, "evil.example", "/", 400, ""},
		{"suffix host", 8443, "door.example.evil.example", "/", 400, ""},
		{"prefix host", 8443, "evildoor.example", "/", 400, ""},
		{"empty host", 8443, "", "/", 400, ""},
		{"ip host", 8443, "127.0.0.1", "/", 400, ""},
		{"absolute form to another host", 8443, "door.example", "http://evil.example/x", 400, ""},
		{"absolute form to the host", 8443, "door.example", "http://door.example/x", 301, "https://door.example:8443/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			u, err := url.ParseRequestURI(tc.target) // as net/http parses a request target
			if err != nil {
				t.Fatal(err)
			}
			r.URL, r.RequestURI, r.Host = u, tc.target, tc.host
			if u.IsAbs() {
				r.Host = u.Host // what net/http does for an absolute-form target
			}
			if tc.name == "absolute form to another host" {
				r.Host = "door.example" // the Host header says one thing, the target another
			}
			w := httptest.NewRecorder()
			RedirectHandler("Door.Example", tc.port).ServeHTTP(w, r)
			if w.Code != tc.code || w.Header().Get("Location") != tc.location {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Header().Get("Location"), tc.code, tc.location)
			}
		})
	}
	// IPv6 public host.
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/x", nil)
	r.Host = "[2001:db8::1]:80"
	RedirectHandler("2001:db8::1", 8443).ServeHTTP(w, r)
	if loc := w.Header().Get("Location"); w.Code != 301 || loc != "https://[2001:db8::1]:8443/x" {
		t.Errorf("ipv6: %d %q", w.Code, loc)
	}
}
