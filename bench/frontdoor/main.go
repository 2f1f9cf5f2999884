// Command frontdoor is the load generator and the in-repo servers for
// bench/frontdoor.sh, which compares clawhold's front door with nginx as a
// plain TLS reverse proxy and oauth2-proxy as an authenticating one, all in
// front of the same trivial backend on loopback.
//
// It has four modes, chosen by the first argument:
//
//	backend     the trivial backend (GET → 200 with a 16-byte body; /ws a
//	            WebSocket echo) and, beside it, the OIDC test provider
//	            (frontdoor/oidc/oidctest) that oauth2-proxy signs in with
//	door        clawhold's front door (frontdoor.New over a SQLite system
//	            database and an in-memory root key), TLS with the given
//	            certificate and tlsconf's server config, upstream the
//	            backend; it creates a user with account.Service and a
//	            complete (post-MFA) session with session.Manager.Create and
//	            writes the session token to a file; with -proxy-only-listen
//	            also the door's proxy, headers and TLS with a fixed identity
//	            and no session lookup (a diagnostic row, not a product)
//	load        the load generator (below)
//	free-ports  print N free loopback ports
//
// The door runs as its own process, like nginx and oauth2-proxy, so that the
// load generator's goroutines and garbage do not share its Go runtime.
//
// The load generator measures the direct backend (plain HTTP, the baseline)
// and every -target (HTTPS): requests/s with -conc keep-alive clients for
// -duration each, latency p50/p99 with one client (-lat-n requests per
// target, targets interleaved request by request), and WebSocket message
// round trips p50/p99 (-ws-n messages of -ws-size bytes, interleaved).
// "Added" is the target's percentile minus the direct one. Every client
// speaks HTTP/1.1 (ALPN offers only http/1.1: the door would otherwise
// choose h2) over TLS 1.3 with keep-alive, one request in flight per
// connection, through a minimal client (a request template written on the
// connection, the response read with http.ReadResponse) so that the load
// generator spends as little CPU as it can on the shared machine.
//
// Before measuring, every authenticating target is checked: without its
// cookie a request must not reach the backend (its status is reported), with
// it every request must return the backend's body. -rounds repeats the
// measurements and reports medians. It dials 127.0.0.1 only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/clawhold/clawhold/frontdoor"
	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/frontdoor/oidc/oidctest"
	"github.com/clawhold/clawhold/frontdoor/proxy"
	"github.com/clawhold/clawhold/frontdoor/session"
	"github.com/clawhold/clawhold/frontdoor/tlsconf"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// backendBody is what the trivial backend answers; a proxied response with
// another body did not come from it.
var backendBody = []byte("clawhold-bench\n\n")

func main() {
	log.SetFlags(0)
	log.SetPrefix("frontdoor-bench: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: frontdoor backend|door|load|free-ports [flags]")
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "backend":
		err = runBackend(args)
	case "door":
		err = runDoor(args)
	case "load":
		err = runLoad(args)
	case "free-ports":
		err = freePorts(args)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

func freePorts(args []string) error {
	fs := flag.NewFlagSet("free-ports", flag.ExitOnError)
	n := fs.Int("n", 1, "how many")
	fs.Parse(args)
	var ls []net.Listener
	for range *n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return nil
}

func untilSignal() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// ---- backend ----

func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "backend address")
	redirect := fs.String("oidc-redirect", "", "oauth2-proxy's callback URL (registered with the OIDC test provider)")
	secretFile := fs.String("oidc-secret-file", "", "file holding the OIDC client secret")
	issuerFile := fs.String("issuer-file", "", "write the OIDC issuer URL here once listening")
	fs.Parse(args)
	ctx, stop := untilSignal()
	defer stop()

	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			// Behind a proxy the Origin names the proxy, not this host.
			InsecureSkipVerify: true,
			CompressionMode:    websocket.CompressionDisabled,
		})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(backendBody)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	defer srv.Close()

	if *redirect != "" {
		secret, err := os.ReadFile(*secretFile)
		if err != nil {
			return err
		}
		op, err := oidctest.New(oidctest.Config{
			ClientID:     "frontdoor-bench",
			ClientSecret: strings.TrimSpace(string(secret)),
			RedirectURIs: []string{*redirect},
			User:         oidctest.User{Subject: "bench", Email: "bench@example.com", EmailVerified: true, Name: "Bench"},
		})
		if err != nil {
			return err
		}
		defer op.Close()
		if err := os.WriteFile(*issuerFile, []byte(op.URL+"\n"), 0o644); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// ---- door ----

// memRoot is an in-memory AES-256-GCM root key (as keys/keystest's, which
// needs a testing.TB).
type memRoot struct{ aead cipher.AEAD }

func newMemRoot() (*memRoot, error) {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &memRoot{a}, nil
}

func (r *memRoot) ID() string { return "bench-memory-root" }

func (r *memRoot) Wrap(_ context.Context, pt, aad []byte) ([]byte, error) {
	nonce := make([]byte, r.aead.NonceSize())
	rand.Read(nonce)
	return r.aead.Seal(nonce, nonce, pt, aad), nil
}

func (r *memRoot) Unwrap(_ context.Context, w, aad []byte) ([]byte, error) {
	if len(w) < r.aead.NonceSize() {
		return nil, errors.New("wrapped key too short")
	}
	return r.aead.Open(nil, w[:r.aead.NonceSize()], w[r.aead.NonceSize():], aad)
}

func runDoor(args []string) error {
	fs := flag.NewFlagSet("door", flag.ExitOnError)
	listen := fs.String("listen", "", "door address, 127.0.0.1:PORT")
	upstream := fs.String("upstream", "", "backend, http://127.0.0.1:PORT")
	certFile := fs.String("cert", "", "TLS certificate (PEM)")
	keyFile := fs.String("key", "", "TLS key (PEM)")
	dir := fs.String("dir", "", "data directory (the SQLite system database)")
	tokenFile := fs.String("token-file", "", "write the session token here")
	proxyOnly := fs.String("proxy-only-listen", "", "diagnostic: also serve the door's proxy without the session lookup here")
	cpuProfile := fs.String("cpuprofile", "", "write the door's CPU profile here (from start to exit)")
	fs.Parse(args)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := untilSignal()
	defer stop()

	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	st, err := store.OpenSQLite(*dir)
	if err != nil {
		return err
	}
	defer st.Close()
	db, err := st.System(ctx)
	if err != nil {
		return err
	}
	root, err := newMemRoot()
	if err != nil {
		return err
	}
	kr, err := keys.OpenKeyring(ctx, db, root, "system", keys.Options{Tables: account.SealedTables()})
	if err != nil {
		return err
	}
	acc, err := account.New(ctx, db, kr, account.Config{})
	if err != nil {
		return err
	}
	pw := []byte(hex.EncodeToString(randBytes(16)))
	if _, err := acc.Create(ctx, account.Meta{Actor: "bench"}, account.NewUser{Name: "bench", Tenant: "default", Role: account.RoleOperator, Password: pw}); err != nil {
		return err
	}
	sm := &session.Manager{DB: db, Keyring: kr}
	hub := &session.Hub{Manager: sm}
	// The session a sign-in with password and TOTP would leave: the user's
	// real role, not a pending one.
	tok, _, err := sm.Create(ctx, session.Login{User: "bench", Tenant: "default", Role: string(account.RoleOperator),
		IP: "127.0.0.1", UserAgent: "frontdoor-bench", AuthMethod: "password+totp"})
	if err != nil {
		return err
	}
	s, err := frontdoor.New(frontdoor.Options{PublicOrigin: "https://" + *listen, Accounts: acc, Sessions: sm, Hub: hub,
		Upstream: *upstream, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer s.Close()
	go s.Run(ctx)

	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tlsconf.NewConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()

	if *proxyOnly != "" {
		// Diagnostic: the door's proxy, security headers and TLS with the
		// identity fixed instead of looked up, to tell the session lookup's
		// cost from the rest. Not a configuration anyone should run.
		// No Register: the hub would close sockets of a session it cannot find.
		p, err := proxy.New(proxy.Config{Upstream: *upstream, PublicOrigin: "https://" + *proxyOnly,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		defer p.Close()
		id := proxy.Identity{User: "bench", Tenant: "default", Role: proxy.RoleOperator, SessionID: strings.Repeat("0", 64)}
		h := tlsconf.SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.ServeHTTP(w, r.WithContext(proxy.WithIdentity(r.Context(), id)))
		}))
		pln, err := net.Listen("tcp", *proxyOnly)
		if err != nil {
			return err
		}
		psrv := &http.Server{Handler: h, TLSConfig: srv.TLSConfig.Clone(), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: log.New(io.Discard, "", 0)}
		go psrv.ServeTLS(pln, "", "")
		defer psrv.Close()
	}
	if err := os.WriteFile(*tokenFile, []byte(tok+"\n"), 0o600); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// ---- load ----

type target struct {
	Name   string
	URL    *url.URL
	Cookie string // Cookie header value, "" for none
	Auth   string // how the check went: "401 without cookie" etc.; "" when not authenticating
	tls    *tls.Config
}

func (t *target) origin() string { return t.URL.Scheme + "://" + t.URL.Host }

// conn is one keep-alive HTTP/1.1 connection with a fixed request.
type conn struct {
	t   *target
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func (t *target) request(path string, cookie bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: frontdoor-bench\r\nAccept: */*\r\n", path, t.URL.Host)
	if cookie && t.Cookie != "" {
		fmt.Fprintf(&b, "Cookie: %s\r\n", t.Cookie)
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

func (t *target) dial() (net.Conn, error) {
	c, err := net.DialTimeout("tcp", t.URL.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if t.URL.Scheme != "https" {
		return c, nil
	}
	tc := tls.Client(c, t.tls)
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	if p := tc.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
		tc.Close()
		return nil, fmt.Errorf("%s negotiated %q, want http/1.1", t.Name, p)
	}
	return tc, nil
}

func (t *target) newConn(path string, cookie bool) (*conn, error) {
	c, err := t.dial()
	if err != nil {
		return nil, err
	}
	return &conn{t: t, c: c, br: bufio.NewReaderSize(c, 16<<10), req: t.request(path, cookie)}, nil
}

var reconnects atomic.Int64

// do sends the request and reads the whole response. A kept-alive
// connection the server closed is redialled once.
func (c *conn) do() (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		st, body, closed, err := c.roundTrip()
		if err == nil {
			if closed {
				c.c.Close()
				nc, derr := c.t.dial()
				if derr != nil {
					return st, body, derr
				}
				c.c, c.br = nc, bufio.NewReaderSize(nc, 16<<10)
			}
			return st, body, nil
		}
		c.c.Close()
		if attempt > 0 {
			return 0, nil, err
		}
		reconnects.Add(1)
		nc, derr := c.t.dial()
		if derr != nil {
			return 0, nil, derr
		}
		c.c, c.br = nc, bufio.NewReaderSize(nc, 16<<10)
	}
}

func (c *conn) roundTrip() (int, []byte, bool, error) {
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(c.req); err != nil {
		return 0, nil, false, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, nil, false, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, nil, false, err
	}
	return resp.StatusCode, body, resp.Close, nil
}

func (c *conn) close() { c.c.Close() }

type targetList []*target

func (l *targetList) String() string { return fmt.Sprint(*l) }
func (l *targetList) Set(v string) error {
	name, raw, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want name=https://127.0.0.1:PORT, got %q", v)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("bad target URL %q", raw)
	}
	host, _, err := net.SplitHostPort(u.Host)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("target %q is not a loopback address", u.Host)
	}
	*l = append(*l, &target{Name: name, URL: u})
	return nil
}

type stats struct {
	RPS       float64
	Errors    int64
	P50, P99  float64 // µs
	WP50, WPP float64 // WebSocket µs (p50, p99)
}

func runLoad(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	var targets targetList
	fs.Var(&targets, "target", "name=https://127.0.0.1:PORT (repeatable)")
	direct := fs.String("direct", "", "the backend, http://127.0.0.1:PORT (the baseline)")
	caFile := fs.String("ca", "", "PEM certificate the targets' certificates chain to")
	doorName := fs.String("door", "door", "the target that takes the door's session cookie")
	tokenFile := fs.String("door-token", "", "the door's session token")
	o2pName := fs.String("oauth2-proxy", "oauth2-proxy", "the target to sign in to through /oauth2/start")
	conc := fs.Int("conc", 32, "requests/s: concurrent keep-alive clients")
	duration := fs.Duration("duration", 10*time.Second, "requests/s: time per target")
	latN := fs.Int("lat-n", 3000, "latency: requests per target")
	wsN := fs.Int("ws-n", 3000, "WebSocket: messages per target")
	wsSize := fs.Int("ws-size", 64, "WebSocket: message size")
	rounds := fs.Int("rounds", 1, "repeat everything; report medians")
	tests := fs.String("tests", "rps,latency,ws", "which tests")
	ref := fs.String("ref", "nginx", "the target req/s are compared with")
	mdFile := fs.String("md", "", "also write the table here")
	jsonFile := fs.String("json", "", "also write per-round results here (JSON lines)")
	fs.Parse(args)

	pool := x509.NewCertPool()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return err
		}
		pool.AppendCertsFromPEM(pem)
	}
	tcfg := &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	var all targetList
	if *direct != "" {
		if err := all.Set("direct=" + *direct); err != nil {
			return err
		}
	}
	all = append(all, targets...)
	for _, t := range all {
		t.tls = tcfg.Clone()
		t.tls.ServerName = t.URL.Hostname()
	}

	// Authentication: give each authenticating target its credentials and
	// check that it refuses a request without them.
	for _, t := range all {
		switch t.Name {
		case *doorName:
			tok, err := os.ReadFile(*tokenFile)
			if err != nil {
				return err
			}
			t.Cookie = session.CookieName + "=" + strings.TrimSpace(string(tok))
		case *o2pName:
			c, err := oauth2ProxyLogin(t)
			if err != nil {
				return fmt.Errorf("%s: signing in: %w", t.Name, err)
			}
			t.Cookie = c
		default:
			continue
		}
		c, err := t.newConn("/bench", false)
		if err != nil {
			return err
		}
		st, body, err := c.do()
		c.close()
		if err != nil {
			return err
		}
		if st == http.StatusOK || bytes.Equal(body, backendBody) {
			return fmt.Errorf("%s: a request without credentials got %d %q: not authenticating", t.Name, st, body)
		}
		t.Auth = fmt.Sprintf("%d without it", st)
		fmt.Fprintf(os.Stderr, "# %s: without credentials: %d; cookie %d bytes\n", t.Name, st, len(t.Cookie))
	}
	for _, t := range all {
		c, err := t.newConn("/bench", true)
		if err != nil {
			return err
		}
		for range 100 {
			st, body, err := c.do()
			if err != nil || st != 200 || !bytes.Equal(body, backendBody) {
				return fmt.Errorf("%s: warm-up request: %d %q %v", t.Name, st, body, err)
			}
		}
		c.close()
	}

	var jout io.Writer = io.Discard
	if *jsonFile != "" {
		f, err := os.Create(*jsonFile)
		if err != nil {
			return err
		}
		defer f.Close()
		jout = f
	}
	want := func(s string) bool { return slices.Contains(strings.Split(*tests, ","), s) }
	res := make(map[string][]stats)
	for r := range *rounds {
		round := make(map[string]*stats)
		for _, t := range all {
			round[t.Name] = &stats{}
		}
		if want("rps") {
			for _, t := range all {
				rps, errs, err := measureRPS(t, *conc, *duration)
				if err != nil {
					return err
				}
				round[t.Name].RPS, round[t.Name].Errors = rps, errs
				fmt.Fprintf(os.Stderr, "# round %d %s: %.0f req/s (%d errors)\n", r+1, t.Name, rps, errs)
			}
		}
		if want("latency") {
			p, err := measureLatency(all, *latN)
			if err != nil {
				return err
			}
			for i, t := range all {
				round[t.Name].P50, round[t.Name].P99 = p[i][0], p[i][1]
			}
		}
		if want("ws") {
			p, err := measureWS(all, *wsN, *wsSize)
			if err != nil {
				return err
			}
			for i, t := range all {
				round[t.Name].WP50, round[t.Name].WPP = p[i][0], p[i][1]
			}
		}
		for _, t := range all {
			s := round[t.Name]
			res[t.Name] = append(res[t.Name], *s)
			json.NewEncoder(jout).Encode(map[string]any{"round": r + 1, "target": t.Name, "rps": s.RPS, "errors": s.Errors,
				"p50_us": s.P50, "p99_us": s.P99, "ws_p50_us": s.WP50, "ws_p99_us": s.WPP})
		}
	}
	if n := reconnects.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "# %d reconnects (a server closed a kept-alive connection)\n", n)
	}

	med := func(name string, f func(stats) float64) float64 {
		var v []float64
		for _, s := range res[name] {
			v = append(v, f(s))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| target | authenticates | req/s, %d clients | vs %s | p50 µs | p99 µs | added p50 µs | added p99 µs | WS p50 µs | WS p99 µs | WS added p50 µs | WS added p99 µs |\n", *conc, *ref)
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	d := "direct"
	for _, t := range all {
		rps, dr := med(t.Name, func(s stats) float64 { return s.RPS }), med(*ref, func(s stats) float64 { return s.RPS })
		p50, p99 := med(t.Name, func(s stats) float64 { return s.P50 }), med(t.Name, func(s stats) float64 { return s.P99 })
		w50, w99 := med(t.Name, func(s stats) float64 { return s.WP50 }), med(t.Name, func(s stats) float64 { return s.WPP })
		d50, d99 := med(d, func(s stats) float64 { return s.P50 }), med(d, func(s stats) float64 { return s.P99 })
		dw50, dw99 := med(d, func(s stats) float64 { return s.WP50 }), med(d, func(s stats) float64 { return s.WPP })
		auth := "no"
		if t.Auth != "" {
			auth = "yes (" + t.Auth + ")"
		}
		proto := "HTTPS"
		if t.URL.Scheme == "http" {
			proto, auth = "HTTP", "–"
		}
		add := func(v, base float64) string {
			if t.Name == d {
				return "–"
			}
			return fmt.Sprintf("%+.0f", v-base)
		}
		ratio := "–"
		if t.Name != d && t.Name != *ref && dr > 0 {
			ratio = fmt.Sprintf("%.2f", rps/dr)
		}
		cols := []string{fmt.Sprintf("%.0f", rps), ratio,
			fmt.Sprintf("%.0f", p50), fmt.Sprintf("%.0f", p99), add(p50, d50), add(p99, d99),
			fmt.Sprintf("%.0f", w50), fmt.Sprintf("%.0f", w99), add(w50, dw50), add(w99, dw99)}
		for i, test := range []string{"rps", "rps", "latency", "latency", "latency", "latency", "ws", "ws", "ws", "ws"} {
			if !want(test) {
				cols[i] = "–"
			}
		}
		fmt.Fprintf(&b, "| %s (%s) | %s | %s |\n", t.Name, proto, auth, strings.Join(cols, " | "))
	}
	fmt.Print(b.String())
	if *mdFile != "" {
		return os.WriteFile(*mdFile, []byte(b.String()), 0o644)
	}
	return nil
}

func measureRPS(t *target, conc int, d time.Duration) (float64, int64, error) {
	conns := make([]*conn, conc)
	for i := range conns {
		c, err := t.newConn("/bench", true)
		if err != nil {
			return 0, 0, err
		}
		conns[i] = c
	}
	defer func() {
		for _, c := range conns {
			c.close()
		}
	}()
	var n, errs atomic.Int64
	var firstErr atomic.Value
	var counting atomic.Bool
	var stop atomic.Bool
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			for !stop.Load() {
				st, _, err := c.do()
				if err != nil || st != 200 {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v", st, err))
					if err != nil {
						return
					}
					continue
				}
				if counting.Load() {
					n.Add(1)
				}
			}
		})
	}
	time.Sleep(time.Second) // warm-up
	counting.Store(true)
	start := time.Now()
	time.Sleep(d)
	got := n.Load()
	el := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if e := errs.Load(); e > 0 {
		fmt.Fprintf(os.Stderr, "# %s: %d errors, first: %v\n", t.Name, e, firstErr.Load())
	}
	return float64(got) / el.Seconds(), errs.Load(), nil
}

// measureLatency sends n requests on one connection per target, the
// targets interleaved request by request, and returns p50/p99 in µs.
func measureLatency(all targetList, n int) ([][2]float64, error) {
	conns := make([]*conn, len(all))
	for i, t := range all {
		c, err := t.newConn("/bench", true)
		if err != nil {
			return nil, err
		}
		defer c.close()
		conns[i] = c
	}
	lat := make([][]time.Duration, len(all))
	for i := -200; i < n; i++ {
		for j, c := range conns {
			s := time.Now()
			st, _, err := c.do()
			el := time.Since(s)
			if err != nil || st != 200 {
				return nil, fmt.Errorf("%s: latency request: %d %v", all[j].Name, st, err)
			}
			if i >= 0 {
				lat[j] = append(lat[j], el)
			}
		}
	}
	return percentiles(lat), nil
}

func percentiles(lat [][]time.Duration) [][2]float64 {
	out := make([][2]float64, len(lat))
	for i, l := range lat {
		slices.Sort(l)
		p := func(q float64) float64 { return float64(l[int(q*float64(len(l)-1))].Nanoseconds()) / 1e3 }
		out[i] = [2]float64{p(0.50), p(0.99)}
	}
	return out
}

// measureWS opens one WebSocket per target (over HTTP/1.1, with the
// target's cookie and its own Origin) and times n echo round trips each,
// interleaved.
func measureWS(all targetList, n, size int) ([][2]float64, error) {
	ctx := context.Background()
	conns := make([]*websocket.Conn, len(all))
	for i, t := range all {
		u := *t.URL
		u.Path = "/ws"
		if u.Scheme == "https" {
			u.Scheme = "wss"
		} else {
			u.Scheme = "ws"
		}
		h := http.Header{}
		if t.Cookie != "" {
			h.Set("Cookie", t.Cookie)
		}
		if t.URL.Scheme == "https" {
			h.Set("Origin", t.origin())
		}
		tr := &http.Transport{TLSClientConfig: t.tls.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
		c, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
			HTTPClient: &http.Client{Transport: tr}, HTTPHeader: h, CompressionMode: websocket.CompressionDisabled,
		})
		if err != nil {
			st := 0
			if resp != nil {
				st = resp.StatusCode
			}
			return nil, fmt.Errorf("%s: WebSocket dial: %d %w", t.Name, st, err)
		}
		defer c.CloseNow()
		conns[i] = c
	}
	msg := bytes.Repeat([]byte("x"), size)
	lat := make([][]time.Duration, len(all))
	for i := -200; i < n; i++ {
		for j, c := range conns {
			s := time.Now()
			if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
				return nil, fmt.Errorf("%s: WebSocket write: %w", all[j].Name, err)
			}
			_, got, err := c.Read(ctx)
			el := time.Since(s)
			if err != nil || !bytes.Equal(got, msg) {
				return nil, fmt.Errorf("%s: WebSocket echo: %q %v", all[j].Name, got, err)
			}
			if i >= 0 {
				lat[j] = append(lat[j], el)
			}
		}
	}
	for _, c := range conns {
		c.Close(websocket.StatusNormalClosure, "")
	}
	return percentiles(lat), nil
}

// oauth2ProxyLogin signs in through oauth2-proxy's own flow — /oauth2/start,
// the OIDC test provider's /authorize (which approves its one user), the
// callback, where oauth2-proxy redeems the code (PKCE) and sets its session
// cookie — and returns the Cookie header oauth2-proxy then wants.
func oauth2ProxyLogin(t *target) (string, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: t.tls.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
	}}
	resp, err := c.Get(t.origin() + "/oauth2/start?rd=%2Fbench")
	if err != nil {
		return "", err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, backendBody) {
		return "", fmt.Errorf("sign-in ended at %s with %d %.200q", resp.Request.URL, resp.StatusCode, body)
	}
	var parts []string
	for _, ck := range jar.Cookies(t.URL) {
		if strings.HasPrefix(ck.Name, "_oauth2_proxy") && !strings.HasSuffix(ck.Name, "_csrf") {
			parts = append(parts, ck.Name+"="+ck.Value)
		}
	}
	if len(parts) == 0 {
		return "", errors.New("no session cookie after sign-in")
	}
	return strings.Join(parts, "; "), nil
}
