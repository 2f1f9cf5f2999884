package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	injectTestHost  = "api.example.test"
	injectTestToken = "clawhold:openai"
	// injectTestSecret is not a real credential. Tests never print it,
	// only its length and hash.
	injectTestSecret = "sk-test-4f9c2a7e1b8d3c6f0a5e9b2d7c4f1a8e"
)

// injectShow returns s for a failure message, or only its hash if it
// contains secret.
func injectShow(s, secret string) string {
	if strings.Contains(s, secret) {
		return "<redacted: " + injectHash(s) + ">"
	}
	return fmt.Sprintf("%q", s)
}

func injectHash(s string) string {
	return fmt.Sprintf("len %d sha256 %x", len(s), sha256.Sum256([]byte(s)))[:28]
}

// injectUpstream is a TLS upstream on loopback with a certificate for
// injectTestHost from its own CA. It records what it received and echoes
// the Authorization header back in a header and the body.
type injectUpstream struct {
	srv   *httptest.Server
	addr  netip.AddrPort
	ca    *CA
	hits  atomic.Int32
	conns atomic.Int32

	mu       sync.Mutex
	auths    []string
	encoding []string
	ranges   []string
}

func newInjectUpstream(t *testing.T, trusted bool, configure ...func(*http.Server)) *injectUpstream {
	t.Helper()
	u := &injectUpstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(u.serveHTTP))
	for _, f := range configure {
		f(u.srv.Config)
	}
	u.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			u.conns.Add(1)
		}
	}
	ca, err := NewCA("upstream")
	if err != nil {
		t.Fatal(err)
	}
	u.ca = ca
	if trusted {
		leaf, err := ca.Leaf(injectTestHost)
		if err != nil {
			t.Fatal(err)
		}
		u.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*leaf}}
	} // else httptest's own certificate, which ca does not vouch for
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	u.addr = netip.MustParseAddrPort(u.srv.Listener.Addr().String())
	return u
}

func (u *injectUpstream) serveHTTP(w http.ResponseWriter, r *http.Request) {
	u.hits.Add(1)
	auth := r.Header.Get("Authorization")
	u.mu.Lock()
	u.auths = append(u.auths, auth)
	u.encoding = append(u.encoding, r.Header.Get("Accept-Encoding"))
	u.ranges = append(u.ranges, r.Header.Get("Range"))
	u.mu.Unlock()
	w.Header().Set("X-Echo-Auth", auth)
	switch r.URL.Path {
	case "/stream": // the echo split into one-byte chunks
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range len(auth) {
			w.Write([]byte{auth[i]})
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, "\n\n")
	case "/length":
		body := "auth=" + auth
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		io.WriteString(w, body)
	case "/leak": // an API that returns the key without being sent it
		w.Header().Set("X-Key", injectTestSecret)
		io.WriteString(w, "your key is "+injectTestSecret)
	case "/gzip":
		w.Header().Set("Content-Encoding", "gzip")
		io.WriteString(w, "not really gzip")
	case "/body":
		io.Copy(w, r.Body)
	default:
		io.WriteString(w, "auth="+auth)
	}
}

func (u *injectUpstream) received() (auths, encodings, ranges []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...), append([]string(nil), u.encoding...), append([]string(nil), u.ranges...)
}

type injectResult struct {
	st  InjectStats
	err error
}

// injectTunnel simulates the proxy: every connection accepted on a
// loopback listener is handed to Serve as an established tunnel.
type injectTunnel struct {
	ln       net.Listener
	in       *Injector
	client   *http.Client
	tr       *http.Transport
	results  chan injectResult
	accepted atomic.Int32
	fetches  atomic.Int32
	logs     *injectSyncBuffer
}

type injectSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *injectSyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *injectSyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func newInjectTunnel(t *testing.T, u *injectUpstream, b Binding, secret string, configure ...func(*Injector)) *injectTunnel {
	t.Helper()
	ca, err := NewCA("policy")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &injectTunnel{ln: ln, results: make(chan injectResult, 16), logs: &injectSyncBuffer{}}
	tn.in = &Injector{
		CA: ca,
		Secrets: func(ctx context.Context, name string) ([]byte, error) {
			tn.fetches.Add(1)
			if name != b.Secret {
				return nil, fmt.Errorf("no secret %q", name)
			}
			return []byte(secret), nil
		},
		RootCAs: u.ca.CertPool(),
		Dial: func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr.String())
		},
		IdleTimeout: 10 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(tn.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range configure {
		f(tn.in)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tn.accepted.Add(1)
			wg.Go(func() {
				st, err := tn.in.Serve(ctx, c, b, u.addr)
				tn.results <- injectResult{st, err}
			})
		}
	})
	tn.tr = &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if want := net.JoinHostPort(b.Host, "443"); addr != want {
				return nil, fmt.Errorf("test dial to %q, want %q", addr, want)
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", ln.Addr().String())
		},
		TLSClientConfig: &tls.Config{RootCAs: ca.CertPool()},
	}
	tn.client = &http.Client{Transport: tn.tr, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		tn.tr.CloseIdleConnections()
		ln.Close()
		cancel()
		wg.Wait()
		if logs := tn.logs.String(); strings.Contains(logs, secret) {
			t.Errorf("logs contain the secret (%s)", injectHash(secret))
		}
	})
	return tn
}

// do makes a request the way the agent would, with auth (the
// placeholder) as its Authorization, and reads the whole response.
func (tn *injectTunnel) do(t *testing.T, method, path, auth string, hdr http.Header, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+injectTestHost+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := tn.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, string(b)
}

// result waits for one Serve call to return.
func (tn *injectTunnel) result(t *testing.T) injectResult {
	t.Helper()
	tn.tr.CloseIdleConnections()
	select {
	case r := <-tn.results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return injectResult{}
	}
}

func injectBinding() Binding {
	return Binding{Host: injectTestHost, Header: "Authorization", Placeholder: injectTestToken, Secret: "openai"}
}

// injectAssertClean fails if the client saw the secret anywhere in resp or body.
func injectAssertClean(t *testing.T, resp *http.Response, body, secret string) {
	t.Helper()
	var hdr bytes.Buffer
	resp.Header.Write(&hdr)
	if strings.Contains(hdr.String(), secret) || strings.Contains(body, secret) || strings.Contains(resp.Status, secret) {
		t.Errorf("client saw the secret (%s)", injectHash(secret))
	}
}

// TestInjectCredential is issue 3's required test: credential injection
// reaches a local TLS upstream with the real key while the client only
// ever sent and saw the placeholder.
func TestInjectCredential(t *testing.T) {
	for _, secret := range []string{
		injectTestSecret,  // longer than the placeholder: responses re-framed
		"sk-abcdefghijkl", // as long as the placeholder: Content-Length kept
	} {
		t.Run(fmt.Sprintf("secret_len_%d", len(secret)), func(t *testing.T) {
			u := newInjectUpstream(t, true)
			tn := newInjectTunnel(t, u, injectBinding(), secret)
			placeholder := "Bearer " + injectTestToken

			requests := []struct {
				method, path string
				body         string
				hdr          http.Header
				wantBody     string
			}{
				{"GET", "/", "", nil, "auth=" + placeholder},
				{"GET", "/stream", "", nil, placeholder + "\n\n"},
				{"GET", "/length", "", http.Header{"Range": {"bytes=0-3"}}, "auth=" + placeholder},
				{"POST", "/body", "streamed request body", nil, "streamed request body"},
				{"HEAD", "/", "", nil, ""},
			}
			for _, r := range requests {
				var body io.Reader
				if r.body != "" {
					body = strings.NewReader(r.body)
				}
				resp, got := tn.do(t, r.method, r.path, placeholder, r.hdr, body)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s %s: status %s", r.method, r.path, resp.Status)
				}
				injectAssertClean(t, resp, got, secret)
				if got != r.wantBody {
					t.Errorf("%s %s: client body %s, want %q", r.method, r.path, injectShow(got, secret), r.wantBody)
				}
				if h := resp.Header.Get("X-Echo-Auth"); h != placeholder {
					t.Errorf("%s %s: client saw X-Echo-Auth %s, want the placeholder", r.method, r.path, injectShow(h, secret))
				}
				if r.path == "/length" && len(secret) == len(injectTestToken) && resp.ContentLength != int64(len(r.wantBody)) {
					t.Errorf("same-length secret: Content-Length %d, want %d", resp.ContentLength, len(r.wantBody))
				}
			}

			auths, encodings, ranges := u.received()
			if len(auths) != len(requests) {
				t.Fatalf("upstream got %d requests, want %d", len(auths), len(requests))
			}
			for i, a := range auths {
				if a != "Bearer "+secret {
					t.Errorf("request %d: upstream got Authorization %s, want Bearer + secret (%s)", i, injectHash(a), injectHash(secret))
				}
				if encodings[i] != "identity" {
					t.Errorf("request %d: upstream got Accept-Encoding %q, want identity", i, encodings[i])
				}
				if ranges[i] != "" {
					t.Errorf("request %d: upstream got Range %q, want none", i, ranges[i])
				}
			}

			// Keep-alive on both sides: one tunnel, one upstream connection.
			if n := tn.accepted.Load(); n != 1 {
				t.Errorf("client opened %d tunnels, want 1", n)
			}
			if n := u.conns.Load(); n != 1 {
				t.Errorf("upstream saw %d connections, want 1", n)
			}
			if n := tn.fetches.Load(); n != 1 {
				t.Errorf("secret fetched %d times, want 1", n)
			}
			r := tn.result(t)
			if r.err != nil {
				t.Errorf("Serve: %v", r.err)
			}
			if r.st.Requests != len(requests) || r.st.BytesUp == 0 || r.st.BytesDown == 0 {
				t.Errorf("stats = %+v, want %d requests and bytes both ways", r.st, len(requests))
			}
		})
	}
}

func TestInjectScrubsUnaskedSecretAndPassesWithoutPlaceholder(t *testing.T) {
	u := newInjectUpstream(t, true)
	tn := newInjectTunnel(t, u, injectBinding(), injectTestSecret)

	// No placeholder: forwarded unchanged, no injection.
	resp, body := tn.do(t, "GET", "/", "Bearer something-else", nil, nil)
	if resp.StatusCode != http.StatusOK || body != "auth=Bearer something-else" {
		t.Errorf("without placeholder: %s %s", resp.Status, injectShow(body, injectTestSecret))
	}
	// The upstream volunteers the secret: the client sees the placeholder.
	resp, body = tn.do(t, "GET", "/leak", "", nil, nil)
	injectAssertClean(t, resp, body, injectTestSecret)
	if body != "your key is "+injectTestToken || resp.Header.Get("X-Key") != injectTestToken {
		t.Errorf("leaked secret not replaced by the placeholder: header len %d, body len %d", len(resp.Header.Get("X-Key")), len(body))
	}
	auths, _, _ := u.received()
	if len(auths) != 2 || auths[0] != "Bearer something-else" || auths[1] != "" {
		t.Errorf("upstream got Authorization headers %d, want them unchanged", len(auths))
	}
}

func TestInjectRefusals(t *testing.T) {
	tests := []struct {
		name      string
		trusted   bool
		host      string // Host header; "" = the bound host
		path      string
		hdr       http.Header
		wantCode  int
		wantBody  string
		wantHits  int32
		wantError bool
	}{
		{name: "untrusted upstream certificate", trusted: false, path: "/", wantCode: http.StatusBadGateway, wantBody: "certificate", wantError: true},
		{name: "wrong Host header", trusted: true, host: "evil.example.test", path: "/", wantCode: http.StatusMisdirectedRequest, wantBody: injectTestHost, wantError: true},
		{name: "upgrade", trusted: true, path: "/", hdr: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, wantCode: http.StatusNotImplemented},
		{name: "encoded response", trusted: true, path: "/gzip", wantCode: http.StatusBadGateway, wantBody: "cannot be scrubbed", wantHits: 1, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newInjectUpstream(t, tt.trusted)
			tn := newInjectTunnel(t, u, injectBinding(), injectTestSecret)
			req, err := http.NewRequest("GET", "https://"+injectTestHost+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+injectTestToken)
			for k, v := range tt.hdr {
				req.Header[k] = v
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := tn.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			injectAssertClean(t, resp, string(b), injectTestSecret)
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(b), tt.wantBody) {
				t.Errorf("got %s %s, want %d with %q", resp.Status, injectShow(string(b), injectTestSecret), tt.wantCode, tt.wantBody)
			}
			if n := u.hits.Load(); n != tt.wantHits {
				t.Errorf("upstream handled %d requests, want %d", n, tt.wantHits)
			}
			if r := tn.result(t); (r.err != nil) != tt.wantError {
				t.Errorf("Serve error = %v, want error %v", r.err, tt.wantError)
			}
		})
	}
}

func TestInjectClientWithoutTLS(t *testing.T) {
	u := newInjectUpstream(t, true)
	tn := newInjectTunnel(t, u, injectBinding(), injectTestSecret)
	c, err := net.Dial("tcp", tn.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", injectTestHost, injectTestToken)
	got, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading: %v", err)
	}
	if bytes.Contains(got, []byte("HTTP/1.1 200")) {
		t.Errorf("plain-text client got a response: %s", injectShow(string(got), injectTestSecret))
	}
	r := tn.result(t)
	if r.err == nil || !strings.Contains(r.err.Error(), "handshake") {
		t.Errorf("Serve error = %v, want a handshake error", r.err)
	}
	if u.hits.Load() != 0 || tn.fetches.Load() != 0 {
		t.Error("a non-TLS client reached the upstream or the secret store")
	}
}

func TestInjectWrongServerName(t *testing.T) {
	u := newInjectUpstream(t, true)
	tn := newInjectTunnel(t, u, injectBinding(), injectTestSecret)
	c, err := tls.Dial("tcp", tn.ln.Addr().String(), &tls.Config{ServerName: "other.example.test", RootCAs: tn.in.CA.CertPool()})
	if err == nil {
		c.Close()
		t.Fatal("TLS handshake for another server name succeeded")
	}
	if r := tn.result(t); r.err == nil {
		t.Error("Serve returned no error")
	}
}

func TestInjectContextCancel(t *testing.T) {
	u := newInjectUpstream(t, true)
	ca, err := NewCA("cancel")
	if err != nil {
		t.Fatal(err)
	}
	in := &Injector{CA: ca, RootCAs: u.ca.CertPool(), Secrets: func(context.Context, string) ([]byte, error) {
		return []byte(injectTestSecret), nil
	}}
	cc, sc := net.Pipe()
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := in.Serve(ctx, sc, injectBinding(), u.addr)
		done <- err
	}()
	tc := tls.Client(cc, &tls.Config{ServerName: injectTestHost, RootCAs: ca.CertPool()})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	// An idle keep-alive connection: Serve waits for a request until
	// cancelled.
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Serve = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
	if _, err := bufio.NewReader(tc).ReadByte(); err == nil {
		t.Error("client connection still open after cancel")
	}
}

func TestInjectValidate(t *testing.T) {
	ca, err := NewCA("validate")
	if err != nil {
		t.Fatal(err)
	}
	good := &Injector{CA: ca, Secrets: func(context.Context, string) ([]byte, error) { return nil, nil }}
	addr := netip.MustParseAddrPort("127.0.0.1:443")
	tests := []struct {
		name string
		in   *Injector
		b    func(*Binding)
		addr netip.AddrPort
	}{
		{"no CA", &Injector{Secrets: good.Secrets}, func(*Binding) {}, addr},
		{"no store", &Injector{CA: ca}, func(*Binding) {}, addr},
		{"no host", good, func(b *Binding) { b.Host = "" }, addr},
		{"bad header", good, func(b *Binding) { b.Header = "Auth orization" }, addr},
		{"no placeholder", good, func(b *Binding) { b.Placeholder = "" }, addr},
		{"placeholder with CRLF", good, func(b *Binding) { b.Placeholder = "x\r\ny" }, addr},
		{"no secret", good, func(b *Binding) { b.Secret = "" }, addr},
		{"no upstream", good, func(*Binding) {}, netip.AddrPort{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := injectBinding()
			tt.b(&b)
			cc, sc := net.Pipe()
			defer cc.Close()
			if _, err := tt.in.Serve(context.Background(), sc, b, tt.addr); err == nil {
				t.Error("Serve accepted an invalid configuration")
			}
		})
	}
}

// TestInjectUpstreamReconnect checks that a tunnel outlives upstream
// connections: closed after a response, or closed while idle.
func TestInjectUpstreamReconnect(t *testing.T) {
	tests := []struct {
		name  string
		setup func(*http.Server)
		pause time.Duration
	}{
		{"upstream closes after each response", func(s *http.Server) { s.SetKeepAlivesEnabled(false) }, 0},
		{"upstream closes idle connection", func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond }, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newInjectUpstream(t, true, tt.setup)
			tn := newInjectTunnel(t, u, injectBinding(), injectTestSecret)
			for i := range 3 {
				if i > 0 {
					time.Sleep(tt.pause)
				}
				resp, body := tn.do(t, "GET", "/", "Bearer "+injectTestToken, nil, nil)
				injectAssertClean(t, resp, body, injectTestSecret)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("request %d: %s", i, resp.Status)
				}
			}
			if n := tn.accepted.Load(); n != 1 {
				t.Errorf("client opened %d tunnels, want 1", n)
			}
			if n := u.conns.Load(); n != 3 {
				t.Errorf("upstream saw %d connections, want 3", n)
			}
			if r := tn.result(t); r.err != nil || r.st.Requests != 3 {
				t.Errorf("Serve = %+v, %v; want 3 requests, no error", r.st, r.err)
			}
		})
	}
}

func TestInjectIdleTimeout(t *testing.T) {
	ca, err := NewCA("idle")
	if err != nil {
		t.Fatal(err)
	}
	in := &Injector{CA: ca, IdleTimeout: 100 * time.Millisecond, Secrets: func(context.Context, string) ([]byte, error) {
		return []byte(injectTestSecret), nil
	}}
	cc, sc := net.Pipe()
	defer cc.Close()
	done := make(chan error, 1)
	go func() {
		_, err := in.Serve(context.Background(), sc, injectBinding(), netip.MustParseAddrPort("127.0.0.1:9"))
		done <- err
	}()
	tc := tls.Client(cc, &tls.Config{ServerName: injectTestHost, RootCAs: ca.CertPool()})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, tc) // net.Pipe: let Serve's close_notify through
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil for an idle client", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not time out an idle client")
	}
}

func TestInjectHeaderLimit(t *testing.T) {
	u := newInjectUpstream(t, true)
	tn := newInjectTunnel(t, u, injectBinding(), injectTestSecret, func(in *Injector) { in.MaxHeaderBytes = 4096 })
	resp, _ := tn.do(t, "GET", "/", "Bearer "+injectTestToken, http.Header{"X-Big": {strings.Repeat("x", 8192)}}, nil)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %s, want 431", resp.Status)
	}
	if u.hits.Load() != 0 {
		t.Error("oversized request reached the upstream")
	}
	if r := tn.result(t); r.err == nil {
		t.Error("Serve returned no error")
	}
}
