package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

const testOrigin = "https://door.example:8443"

// remoteClient is the address the test front door pretends its clients come
// from: OpenClaw refuses a loopback client address (proxy_attribution_required).
const remoteClient = "203.0.113.7:40000"

// recorder is an upstream that records what the proxy sends it. On a
// WebSocket upgrade it echoes messages and reports the connection.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	ws   chan *websocket.Conn
}

func newRecorder() *recorder { return &recorder{ws: make(chan *websocket.Conn, 4)} }

func (u *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.reqs = append(u.reqs, r.Clone(context.Background()))
	u.mu.Unlock()
	if isUpgrade(r.Header) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		u.ws <- c
		ctx := context.Background()
		for {
			typ, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, b); err != nil {
				return
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: "door_session", Value: "fixated"})
	fmt.Fprintf(w, "ok %s %s %d", r.Method, r.URL.Path, len(body))
}

func (u *recorder) requests() []*http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.reqs)
}

// frontDoor stands in for the lead's session layer: it puts the identity
// named by X-Test-Role in the context (no header: no identity) and makes
// the client look remote.
func frontDoor(p http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.RemoteAddr = remoteClient
		if role := r.Header.Get("X-Test-Role"); role != "" {
			r.Header.Del("X-Test-Role")
			user := r.Header.Get("X-Test-User")
			r.Header.Del("X-Test-User")
			switch user {
			case "":
				user = role + "@example.com"
			case "-":
				user = "" // header values are trimmed, so "-" stands for empty
			}
			r = r.WithContext(WithIdentity(r.Context(), Identity{User: user, Tenant: "t1", Role: role, SessionID: "s-" + user}))
		}
		p.ServeHTTP(w, r)
	})
}

func newTestProxy(t *testing.T, cfg Config) *Proxy {
	t.Helper()
	if cfg.PublicOrigin == "" {
		cfg.PublicOrigin = testOrigin
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// startDoor serves frontDoor(p) with NewServer's limits, adjusted by
// the optional tweak before the server starts.
func startDoor(t *testing.T, p http.Handler, tweak ...func(*http.Server)) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(frontDoor(p))
	hs := NewServer(ts.Config.Handler)
	for _, f := range tweak {
		f(hs)
	}
	ts.Config = hs
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func do(t *testing.T, method, url string, hdr map[string][]string, body string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs // as given: non-canonical names and duplicates reach the wire
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, "", resp.Header // the body is the raw connection
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestNoIdentityNeverReachesUpstream(t *testing.T) {
	up := newRecorder()
	us := httptest.NewServer(up)
	defer us.Close()
	door := startDoor(t, newTestProxy(t, Config{Upstream: us.URL}))

	for _, tc := range []struct {
		name   string
		method string
		hdr    map[string][]string
	}{
		{"get", "GET", nil},
		{"post with origin", "POST", map[string][]string{"Origin": {testOrigin}}},
		{"spoofed user header", "GET", map[string][]string{"X-Forwarded-User": {"admin"}, "X-Forwarded-For": {"203.0.113.9"}}},
		{"bearer", "GET", map[string][]string{"Authorization": {"Bearer x"}}},
		{"empty user", "GET", map[string][]string{"X-Test-Role": {"admin"}, "X-Test-User": {"-"}}},
		{"websocket", "GET", map[string][]string{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Origin": {testOrigin},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, _ := do(t, tc.method, door.URL+"/tools/invoke", tc.hdr, "")
			if code != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", code)
			}
		})
	}
	if n := len(up.requests()); n != 0 {
		t.Errorf("upstream saw %d requests, want 0", n)
	}
}

func TestHeadersSetFromIdentity(t *testing.T) {
	up := newRecorder()
	us := httptest.NewServer(up)
	defer us.Close()
	door := startDoor(t, newTestProxy(t, Config{Upstream: us.URL}))

	hostile := map[string][]string{
		"X-Forwarded-User":   {"admin", "root"},
		"x-forwarded-user":   {"admin2"},
		"X_forwarded_user":   {"admin3"},
		"X-Forwarded-For":    {"127.0.0.1", "10.0.0.1"},
		"X-Forwarded-Host":   {"evil.example"},
		"X-Forwarded-Proto":  {"http"},
		"X-Forwarded-Port":   {"1"},
		"Forwarded":          {"for=127.0.0.1;host=evil.example;proto=http"},
		"X-Real-Ip":          {"127.0.0.1"},
		"X-Openclaw-Scopes":  {"operator.admin"},
		"x-openclaw-token":   {"hook-token"},
		"Authorization":      {"Bearer gateway-password"},
		"Cookie":             {"door_session=secret"},
		"True-Client-Ip":     {"127.0.0.1"},
		"Connection":         {"X-Keep-Me-Not"},
		"X-Keep-Me-Not":      {"hop"},
		"X-Harmless":         {"kept"},
		"X-Test-Role":        {RoleViewer},
		"X-Test-User":        {"alice@example.com"},
		"Origin":             {testOrigin},
		"X-Forwarded-Server": {"x"},
	}
	code, body, rh := do(t, "POST", door.URL+"/tools/invoke", hostile, `{"tool":"x"}`)
	if code != 200 {
		t.Fatalf("status %d %q", code, body)
	}
	if rh.Get("Set-Cookie") != "" {
		t.Errorf("upstream Set-Cookie passed to the client: %q", rh.Values("Set-Cookie"))
	}
	reqs := up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream saw %d requests", len(reqs))
	}
	got := reqs[0].Header
	want := map[string][]string{
		"X-Forwarded-User":  {"alice@example.com"},
		"X-Forwarded-For":   {"203.0.113.7"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"door.example:8443"},
		"X-Openclaw-Scopes": {"operator.read"},
		"X-Harmless":        {"kept"},
		"Origin":            {testOrigin},
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("upstream %s = %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		n := normName(k)
		if _, ok := want[k]; ok {
			continue
		}
		switch {
		case strings.HasPrefix(n, "x-forwarded"), strings.HasPrefix(n, "x-openclaw"), n == "forwarded",
			n == "x-real-ip", n == "authorization", n == "cookie", n == "true-client-ip", n == "x-keep-me-not":
			t.Errorf("client header %s: %q reached the upstream", k, got[k])
		}
	}
}

func TestScopesByRole(t *testing.T) {
	up := newRecorder()
	us := httptest.NewServer(up)
	defer us.Close()
	door := startDoor(t, newTestProxy(t, Config{Upstream: us.URL, UserHeader: "X-Auth-Request-Email"}))
	for _, tc := range []struct {
		role   string
		code   int
		scopes string
	}{
		{RoleViewer, 200, "operator.read"},
		{RoleOperator, 200, "operator.read,operator.write"},
		{RoleAdmin, 200, "operator.read,operator.write,operator.admin,operator.approvals,operator.questions,operator.pairing,operator.talk,operator.talk.secrets"},
		{"superuser", 403, ""},
		{"", 0, ""}, // no identity
	} {
		t.Run(tc.role, func(t *testing.T) {
			n := len(up.requests())
			hdr := map[string][]string{"X-Test-Role": {tc.role}, "X-Auth-Request-Email": {"mallory@example.com"}}
			code, _, _ := do(t, "GET", door.URL+"/v1/models", hdr, "")
			if tc.code == 0 {
				tc.code = 401
			}
			if code != tc.code {
				t.Fatalf("status %d, want %d", code, tc.code)
			}
			reqs := up.requests()
			if tc.code != 200 {
				if len(reqs) != n {
					t.Fatalf("refused request reached the upstream")
				}
				return
			}
			h := reqs[len(reqs)-1].Header
			if g := h.Values(ScopesHeader); !slices.Equal(g, []string{tc.scopes}) {
				t.Errorf("scopes %q, want %q", g, tc.scopes)
			}
			if g := h.Values("X-Auth-Request-Email"); !slices.Equal(g, []string{tc.role + "@example.com"}) {
				t.Errorf("user header %q", g)
			}
		})
	}
}

func TestOriginCheck(t *testing.T) {
	up := newRecorder()
	us := httptest.NewServer(up)
	defer us.Close()
	door := startDoor(t, newTestProxy(t, Config{Upstream: us.URL}))
	ws := map[string][]string{"Connection": {"Upgrade"}, "Upgrade": {"websocket"},
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}}
	for _, tc := range []struct {
		name    string
		method  string
		origins []string
		upgrade bool
		want    int
	}{
		{"get no origin", "GET", nil, false, 200},
		{"head no origin", "HEAD", nil, false, 200},
		{"get same origin", "GET", []string{testOrigin}, false, 200},
		{"get cross origin", "GET", []string{"https://evil.example"}, false, 403},
		{"post no origin", "POST", nil, false, 403},
		{"post same origin", "POST", []string{testOrigin}, false, 200},
		{"post cross origin", "POST", []string{"https://evil.example"}, false, 403},
		{"post null origin", "POST", []string{"null"}, false, 403},
		{"post origin other port", "POST", []string{"https://door.example"}, false, 403},
		{"post origin http", "POST", []string{"http://door.example:8443"}, false, 403},
		{"post origin trailing slash", "POST", []string{testOrigin + "/"}, false, 403},
		{"post two origins", "POST", []string{testOrigin, "https://evil.example"}, false, 403},
		{"put no origin", "PUT", nil, false, 403},
		{"patch same origin", "PATCH", []string{testOrigin}, false, 200},
		{"delete cross origin", "DELETE", []string{"https://evil.example"}, false, 403},
		{"options no origin", "OPTIONS", nil, false, 403},
		{"unknown method", "PROPFIND", nil, false, 403},
		{"ws same origin", "GET", []string{testOrigin}, true, 101},
		{"ws no origin", "GET", nil, true, 403},
		{"ws cross origin", "GET", []string{"https://evil.example"}, true, 403},
		{"ws localhost origin", "GET", []string{"http://127.0.0.1:18789"}, true, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(up.requests())
			hdr := map[string][]string{"X-Test-Role": {RoleAdmin}}
			if tc.origins != nil {
				hdr["Origin"] = tc.origins
			}
			if tc.upgrade {
				for k, v := range ws {
					hdr[k] = v
				}
			}
			code, _, _ := do(t, tc.method, door.URL+"/x", hdr, "")
			if code != tc.want {
				t.Fatalf("status %d, want %d", code, tc.want)
			}
			if reached := len(up.requests()) > n; reached != (tc.want != 403) {
				t.Errorf("reached upstream = %v", reached)
			}
		})
	}
}

func TestNonWebSocketUpgradeRefused(t *testing.T) {
	up := newRecorder()
	us := httptest.NewServer(up)
	defer us.Close()
	door := startDoor(t, newTestProxy(t, Config{Upstream: us.URL}))
	code, _, _ := do(t, "GET", door.URL+"/", map[string][]string{"X-Test-Role": {RoleAdmin},
		"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Origin": {testOrigin}}, "")
	if code != 400 || len(up.requests()) != 0 {
		t.Errorf("status %d, upstream requests %d; want 400 and none", code, len(up.requests()))
	}
}

func TestUpstreamErrors(t *testing.T) {
	// A port nobody listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()

	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"connection refused", Config{Upstream: dead}},
		{"missing unix socket", Config{Upstream: "unix:" + filepath.Join(t.TempDir(), "nope.sock")}},
		{"response header timeout", Config{Upstream: slow.URL, ResponseHeaderTimeout: 200 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			door := startDoor(t, newTestProxy(t, tc.cfg))
			start := time.Now()
			code, body, _ := do(t, "GET", door.URL+"/", map[string][]string{"X-Test-Role": {RoleViewer}}, "")
			if code != 502 || body != "bad gateway\n" {
				t.Errorf("got %d %q, want 502 \"bad gateway\"", code, body)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestNewConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Upstream: "http://127.0.0.1:1", PublicOrigin: ""},
		{Upstream: "http://127.0.0.1:1", PublicOrigin: "door.example"},
		{Upstream: "http://127.0.0.1:1", PublicOrigin: "https://door.example/path"},
		{Upstream: "ftp://127.0.0.1:1", PublicOrigin: testOrigin},
		{Upstream: "http://127.0.0.1:1/prefix", PublicOrigin: testOrigin},
		{Upstream: "unix:relative.sock", PublicOrigin: testOrigin},
		{Upstream: "http://127.0.0.1:1", PublicOrigin: testOrigin, UserHeader: "bad header"},
		{Upstream: "http://127.0.0.1:1", PublicOrigin: testOrigin, UserHeader: "Connection"},
		{Upstream: "http://127.0.0.1:1", PublicOrigin: testOrigin, UserHeader: "x-forwarded-for"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	p, err := New(Config{Upstream: "http://127.0.0.1:1", PublicOrigin: "HTTPS://Door.Example:443"})
	if err != nil {
		t.Fatal(err)
	}
	if p.origin != "https://door.example" {
		t.Errorf("origin %q", p.origin)
	}
}

func TestUnixSocketUpstream(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "gw.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	up := newRecorder()
	us := &httptest.Server{Listener: l, Config: &http.Server{Handler: up}}
	us.Start()
	defer us.Close()
	door := startDoor(t, newTestProxy(t, Config{Upstream: "unix:" + sock}))
	code, body, _ := do(t, "POST", door.URL+"/tools/invoke", map[string][]string{"X-Test-Role": {RoleOperator}, "Origin": {testOrigin}}, "abc")
	if code != 200 || body != "ok POST /tools/invoke 3" {
		t.Fatalf("got %d %q", code, body)
	}
	if u := up.requests()[0].Header.Get("X-Forwarded-User"); u != "operator@example.com" {
		t.Errorf("user %q", u)
	}
	// WebSocket over the socket too.
	c, _, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(door.URL, "http")+"/",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {testOrigin}, "X-Test-Role": {RoleViewer}}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	echo(t, c, "over unix")
}

func echo(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	_, b, err := c.Read(ctx)
	if err != nil || string(b) != msg {
		t.Fatalf("read %q, %v; want %q", b, err, msg)
	}
}

// registry records Register calls like the lead's session store would.
type registry struct {
	mu    sync.Mutex
	next  int
	live  map[string]map[int]func()
	added chan string
}

func newRegistry() *registry {
	return &registry{live: map[string]map[int]func(){}, added: make(chan string, 16)}
}

// Register records closeFn; its unregister removes only that one, so an
// earlier connection of the same session that ends late (a previous
// subtest's) never takes a newer one with it.
func (g *registry) Register(session string, closeFn func()) func() {
	g.mu.Lock()
	g.next++
	n := g.next
	if g.live[session] == nil {
		g.live[session] = map[int]func(){}
	}
	g.live[session][n] = closeFn
	g.mu.Unlock()
	g.added <- session
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.live[session], n)
		if len(g.live[session]) == 0 {
			delete(g.live, session)
		}
	}
}

func (g *registry) closeSession(session string) int {
	g.mu.Lock()
	var fns []func()
	for _, f := range g.live[session] {
		fns = append(fns, f)
	}
	g.mu.Unlock()
	for _, f := range fns {
		f()
	}
	return len(fns)
}

func (g *registry) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.live)
}

func TestWebSocketCloseBySession(t *testing.T) {
	up := newRecorder()
	us := httptest.NewServer(up)
	defer us.Close()
	reg := newRegistry()
	door := startDoor(t, newTestProxy(t, Config{Upstream: us.URL, Register: reg.Register}))

	c, resp, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(door.URL, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {testOrigin}, "X-Test-Role": {RoleOperator}}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if s := <-reg.added; s != "s-operator@example.com" {
		t.Errorf("registered under %q", s)
	}
	upc := <-up.ws
	echo(t, c, "hello")

	clientErr := make(chan error, 1)
	upErr := make(chan error, 1)
	go func() { _, _, err := c.Read(context.Background()); clientErr <- err }()
	go func() { _, _, err := upc.Read(context.Background()); upErr <- err }()

	start := time.Now()
	if n := reg.closeSession("s-operator@example.com"); n != 1 {
		t.Fatalf("%d close funcs registered", n)
	}
	for name, ch := range map[string]chan error{"client": clientErr, "upstream": upErr} {
		select {
		case err := <-ch:
			if err == nil {
				t.Errorf("%s read succeeded", name)
			}
			t.Logf("%s side closed after %v: %v", name, time.Since(start).Round(time.Millisecond), err)
		case <-time.After(time.Second - time.Since(start)):
			t.Fatalf("%s side still open 1 s after the session was closed", name)
		}
	}
	// The handler returns and unregisters.
	deadline := time.Now().Add(2 * time.Second)
	for reg.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("connection not unregistered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	reg.closeSession("s-operator@example.com") // idempotent, no panic
}

// rawRequest writes raw bytes to addr and returns the first response line
// (or the read error).
func rawRequest(t *testing.T, addr, raw string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		return "write: " + err.Error()
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "read: " + err.Error()
	}
	return strings.TrimSpace(line)
}

func TestHostileClients(t *testing.T) {
	up := newRecorder()
	us := httptest.NewServer(up)
	defer us.Close()
	door := startDoor(t, newTestProxy(t, Config{Upstream: us.URL, BodyReadTimeout: 500 * time.Millisecond}),
		func(s *http.Server) { s.ReadHeaderTimeout = 500 * time.Millisecond }) // the slowloris case below, quickly
	addr := door.Listener.Addr().String()

	healthy := func(t *testing.T) {
		t.Helper()
		code, _, _ := do(t, "GET", door.URL+"/alive", map[string][]string{"X-Test-Role": {RoleViewer}}, "")
		if code != 200 {
			t.Errorf("server not responsive: %d", code)
		}
	}

	t.Run("oversized headers", func(t *testing.T) {
		big := strings.Repeat("a", ServerMaxHeaderBytes+8192)
		got := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nX-Test-Role: admin\r\nX-Big: "+big+"\r\n\r\n")
		if !strings.Contains(got, " 431 ") {
			t.Errorf("got %q, want 431", got)
		}
		healthy(t)
	})

	t.Run("content-length and transfer-encoding", func(t *testing.T) {
		// Go resolves the ambiguity as RFC 9112 §6.3 says (chunked wins,
		// Content-Length is dropped) and the proxy re-frames the request
		// for the upstream, so the two cannot disagree about where the
		// request ends: the tail is a second request of this client's
		// connection, handled by the front door (401 here), never smuggled.
		n := len(up.requests())
		smuggled := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
		body := "0\r\n\r\n" + smuggled
		raw := "POST /tools/invoke HTTP/1.1\r\nHost: x\r\nX-Test-Role: admin\r\nOrigin: " + testOrigin +
			"\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\nTransfer-Encoding: chunked\r\n\r\n" + body
		got := rawResponses(t, addr, raw, 2)
		if len(got) != 2 || !strings.Contains(got[0], " 200 ") || !strings.Contains(got[1], " 401 ") {
			t.Errorf("responses %q, want 200 then 401", got)
		}
		reqs := up.requests()[n:]
		if len(reqs) != 1 || reqs[0].URL.Path != "/tools/invoke" || reqs[0].ContentLength > 0 {
			for _, r := range reqs {
				t.Errorf("upstream saw %s %s (length %d)", r.Method, r.URL.Path, r.ContentLength)
			}
		}
		healthy(t)
	})

	for _, te := range []string{"xchunked", "chunked, identity", "gzip"} {
		t.Run("transfer-encoding "+te, func(t *testing.T) {
			n := len(up.requests())
			got := rawRequest(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nX-Test-Role: admin\r\nOrigin: "+testOrigin+
				"\r\nContent-Length: 5\r\nTransfer-Encoding: "+te+"\r\n\r\n0\r\n\r\n")
			if !strings.Contains(got, " 501 ") && !strings.Contains(got, " 400 ") {
				t.Errorf("got %q, want 400 or 501", got)
			}
			if len(up.requests()) != n {
				t.Errorf("request reached the upstream")
			}
		})
	}

	t.Run("duplicate content-length", func(t *testing.T) {
		got := rawRequest(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nX-Test-Role: admin\r\nOrigin: "+testOrigin+
			"\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc")
		if !strings.Contains(got, " 400 ") {
			t.Errorf("got %q, want 400", got)
		}
	})

	t.Run("slowloris headers", func(t *testing.T) {
		conns := make([]net.Conn, 0, 20)
		for range 20 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
			conns = append(conns, c)
		}
		healthy(t) // others are served while the slow ones hang
		start := time.Now()
		for _, c := range conns {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "X-Slow: 1\r\n") // trickling does not extend the deadline
		}
		for i, c := range conns {
			b, err := io.ReadAll(c)
			if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
				t.Fatalf("conn %d still open after %v", i, time.Since(start))
			}
			_ = b // net/http may answer 408 before closing
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("slow connections closed after %v", d)
		}
		healthy(t)
	})

	t.Run("slow body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /tools/invoke HTTP/1.1\r\nHost: x\r\nX-Test-Role: admin\r\nOrigin: "+testOrigin+
			"\r\nContent-Length: 100\r\n\r\nabc")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		b, err := io.ReadAll(c)
		if isTimeout(err) {
			t.Fatalf("slow body still open after %v", time.Since(start))
		}
		if !strings.HasPrefix(string(b), "HTTP/1.1 408 ") {
			t.Errorf("got %.60q, want 408", b)
		}
		healthy(t)
	})
}

// rawResponses writes raw to addr and returns the status lines of up to n
// responses.
func rawResponses(t *testing.T, addr, raw string, n int) []string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	var out []string
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out = append(out, resp.Proto+" "+resp.Status)
	}
	return out
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestClientIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7:1234":       "203.0.113.7",
		"[2001:db8::1]:443":      "2001:db8::1",
		"[fe80::1%eth0]:443":     "fe80::1",
		"[::ffff:192.0.2.1]:443": "192.0.2.1",
		"garbage":                "",
		"":                       "",
	} {
		if got := clientIP(in); got != want {
			t.Errorf("clientIP(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestWebSocketActivityTouchesSession: a client sending on a proxied
// WebSocket reports its session active (the door keeps it from idling
// out); a silent socket does not.
func TestWebSocketActivityTouchesSession(t *testing.T) {
	up := newRecorder()
	us := httptest.NewServer(up)
	defer us.Close()
	touched := make(chan string, 8)
	door := startDoor(t, newTestProxy(t, Config{Upstream: us.URL, Touch: func(id string) { touched <- id }}))
	c, _, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(door.URL, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {testOrigin}, "X-Test-Role": {RoleOperator}}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	<-up.ws
	select {
	case id := <-touched:
		t.Fatalf("touched %s before the client sent anything", id)
	case <-time.After(200 * time.Millisecond):
	}
	echo(t, c, "hello")
	select {
	case id := <-touched:
		if id != "s-operator@example.com" {
			t.Errorf("touched %q", id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client traffic did not touch the session")
	}
	echo(t, c, "again") // within touchEvery: no second touch
	select {
	case id := <-touched:
		t.Errorf("touched %s twice within %v", id, touchEvery)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestPerTenantRouting: with Dial, each identity reaches only its own
// tenant's gateway, whatever Host, header or path the client sends, and a
// client on the door's own host is attributed as LocalClientAddr.
func TestPerTenantRouting(t *testing.T) {
	upstreams := map[string]*recorder{"acme": newRecorder(), "globex": newRecorder()}
	sockets := map[string]string{}
	dir := t.TempDir()
	for name, rec := range upstreams {
		sockets[name] = filepath.Join(dir, name+".sock")
		ln, err := net.Listen("unix", sockets[name])
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: rec}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
	}
	var mu sync.Mutex
	var dialed []string
	p, err := New(Config{PublicOrigin: testOrigin, Logger: slog.New(slog.DiscardHandler),
		Dial: func(ctx context.Context, tenant string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, tenant)
			mu.Unlock()
			sock, ok := sockets[tenant]
			if !ok {
				return nil, errors.New("no such tenant")
			}
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	serve := func(id Identity, remote string, mod func(*http.Request)) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "https://door.example:8443/api/x", nil)
		r.RemoteAddr = remote
		if mod != nil {
			mod(r)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
		return w
	}
	acme := Identity{User: "alice", Tenant: "acme", Role: RoleOperator, SessionID: "s1"}
	attacks := []func(*http.Request){
		nil,
		func(r *http.Request) { r.Host = "globex.cell" },
		func(r *http.Request) { r.URL.Host = "globex.cell"; r.Host = "globex.cell:80" },
		func(r *http.Request) {
			r.Header.Set("X-Forwarded-Host", "globex.cell")
			r.Header.Set("X-Tenant", "globex")
		},
		func(r *http.Request) { r.URL.Path = "//globex.cell/api/x" },
	}
	for i, a := range attacks {
		if w := serve(acme, remoteClient, a); w.Code != 200 {
			t.Fatalf("attack %d: status %d %s", i, w.Code, w.Body)
		}
	}
	if n := len(upstreams["globex"].requests()); n != 0 {
		t.Fatalf("globex's gateway got %d requests from an acme user", n)
	}
	if n := len(upstreams["acme"].requests()); n != len(attacks) {
		t.Fatalf("acme's gateway got %d requests, want %d", n, len(attacks))
	}
	for _, d := range dialed {
		if d != "acme" {
			t.Fatalf("dialed tenant %q for an acme user", d)
		}
	}
	// A tenant name that is not a DNS label reaches nothing.
	if w := serve(Identity{User: "eve", Tenant: "../acme", Role: RoleViewer}, remoteClient, nil); w.Code != http.StatusBadGateway {
		t.Fatalf("invalid tenant: status %d, want 502", w.Code)
	}
	// A client on the door's host.
	serve(Identity{User: "bob", Tenant: "globex", Role: RoleViewer}, "127.0.0.1:5555", nil)
	got := upstreams["globex"].requests()
	if len(got) != 1 || got[0].Header.Get("X-Forwarded-For") != LocalClientAddr || got[0].Host != "127.0.0.1" {
		t.Fatalf("local client: got %d requests, XFF %q, Host %q", len(got), got[0].Header.Get("X-Forwarded-For"), got[0].Host)
	}
}
