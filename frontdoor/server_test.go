package frontdoor

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pquerna/otp/totp"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/frontdoor/session"
	"github.com/clawhold/clawhold/frontdoor/web"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/keys/keystest"
	"github.com/clawhold/clawhold/openclaw/openclawtest"
	"github.com/clawhold/clawhold/store"
)

// door is a front door in front of a real OpenClaw gateway in
// trusted-proxy mode, over TLS, with its accounts and sessions in a real
// SQLite system database.
type door struct {
	t        *testing.T
	srv      *httptest.Server
	origin   string
	accounts *account.Service
	sessions *session.Manager
	db       *store.DB
	kr       *keys.Keyring
}

// testClientIP is where the door pretends its clients connect from: the
// gateway refuses a loopback client address (proxy_attribution_required),
// and these tests run on loopback. Requests may name another with the
// X-Test-Client header (the lockout test needs fresh addresses).
const testClientIP = "203.0.113.7"

func newDoor(t *testing.T) *door {
	t.Helper()
	inst := openclawtest.Install(t)
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	origin := srv.URL // https://127.0.0.1:PORT

	g := openclawtest.Start(t, inst, map[string]any{
		"gateway": map[string]any{
			"bind":           "loopback",
			"trustedProxies": []string{"127.0.0.1"},
			"auth": map[string]any{
				"mode": "trusted-proxy",
				// A device-less WebSocket session gets only these grants
				// (docs/frontdoor.md); clawhold up writes them per role.
				"identityScopes": map[string]any{"alice": []string{"operator.read", "operator.write"}},
				"trustedProxy": map[string]any{
					"userHeader":      "x-forwarded-user",
					"requiredHeaders": []string{"x-forwarded-proto", "x-forwarded-host"},
					"allowLoopback":   true,
				},
			},
			"controlUi": map[string]any{"allowedOrigins": []string{origin}},
		},
	})

	d := assemble(t, srv, origin, func(o *Options) { o.Upstream = g.URL() })
	return d
}

// assemble builds a door (SQLite system database, keyring, accounts,
// sessions, hub) served by srv, with mod applied to its options.
func assemble(t testing.TB, srv *httptest.Server, origin string, mod func(*Options)) *door {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	st, err := store.OpenSQLite(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := st.System(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := keys.OpenKeyring(t.Context(), db, keystest.NewRoot(t), "system", keys.Options{Tables: account.SealedTables()})
	if err != nil {
		t.Fatal(err)
	}
	acc, err := account.New(t.Context(), db, kr, account.Config{})
	if err != nil {
		t.Fatal(err)
	}
	sm := &session.Manager{DB: db, Keyring: kr}
	hub := &session.Hub{Manager: sm}
	geo, _ := NewLocator("")
	o := Options{PublicOrigin: origin, Accounts: acc, Sessions: sm, Hub: hub, Geo: geo}
	mod(&o)
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	h := s.Handler()
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := testClientIP
		if v := r.Header.Get("X-Test-Client"); v != "" {
			ip = v
		}
		r.RemoteAddr = ip + ":40000"
		h.ServeHTTP(w, r)
	})
	d := &door{srv: srv, origin: origin, accounts: acc, sessions: sm, db: db, kr: kr}
	if tt, ok := t.(*testing.T); ok {
		d.t = tt
	}
	return d
}

// browser is a client with its own cookies that sends the door's Origin on
// form posts, as a browser on the door's pages does.
type browser struct {
	d      *door
	c      *http.Client
	client string // X-Test-Client
}

func (d *door) browser() *browser {
	jar, _ := cookiejar.New(nil)
	c := *d.srv.Client() // a copy: the server's client is shared
	c.Jar = jar
	return &browser{d: d, c: &c}
}

func (b *browser) do(method, path string, form url.Values, hdr http.Header) (*http.Response, string) {
	b.d.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.d.srv.URL+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.d.origin)
	}
	req.Header.Set("Accept", "text/html")
	if b.client != "" {
		req.Header.Set("X-Test-Client", b.client)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.d.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
var secretRe = regexp.MustCompile(`<code class="secret">([A-Z2-7]+)</code>`)

func field(t *testing.T, re *regexp.Regexp, page string) string {
	t.Helper()
	m := re.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no %s in page:\n%s", re, page)
	}
	return m[1]
}

// signIn goes through the password form and returns the page it lands on.
func (b *browser) signIn(user, password string) (*http.Response, string) {
	_, page := b.do("GET", web.Prefix+"login", nil, nil)
	csrf := field(b.d.t, csrfRe, page)
	return b.do("POST", web.Prefix+"login", url.Values{"csrf": {csrf}, "user": {user}, "password": {password}, "next": {"/"}}, nil)
}

// enroll completes first sign-in with TOTP enrolment and returns the TOTP
// secret and the code it used.
func (b *browser) enroll(user, password string) (secret, code string) {
	t := b.d.t
	resp, page := b.signIn(user, password)
	if !strings.Contains(resp.Request.URL.Path, "mfa/enroll") {
		t.Fatalf("first sign-in landed on %s (%d), want enrolment:\n%s", resp.Request.URL, resp.StatusCode, page)
	}
	secret = field(t, secretRe, page)
	code, _ = totp.GenerateCode(secret, time.Now())
	resp, page = b.do("POST", web.Prefix+"mfa/enroll", url.Values{"csrf": {field(t, csrfRe, page)}, "code": {code}, "next": {"/"}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "recovery") {
		t.Fatalf("enrolment: %d\n%s", resp.StatusCode, page)
	}
	return secret, code
}

func (d *door) addUser(name string, role account.Role) {
	d.t.Helper()
	_, err := d.accounts.Create(d.t.Context(), account.Meta{Actor: "test"}, account.NewUser{Name: name, Tenant: "default", Role: role, Password: []byte(password(name))})
	if err != nil {
		d.t.Fatal(err)
	}
}

// password is a test user's password: long, and not containing the name.
func password(name string) string {
	return "correct horse battery staple " + strings.Repeat("x", len(name))
}

func TestFrontDoorAgainstOpenClaw(t *testing.T) {
	d := newDoor(t)
	d.addUser("alice", account.RoleOperator)
	d.addUser("victor", account.RoleViewer)

	t.Run("no session never reaches OpenClaw", func(t *testing.T) {
		b := d.browser()
		b.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, _ := b.do("GET", "/", nil, nil)
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), web.Prefix+"login") {
			t.Errorf("page without a session: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, body := b.do("POST", "/tools/invoke", nil, http.Header{"X-Forwarded-User": {"alice"}, "Content-Type": {"application/json"}})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("API without a session, claiming alice: %d %s", resp.StatusCode, body)
		}
		for _, h := range []string{"Strict-Transport-Security", "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
			if resp.Header.Get(h) == "" {
				t.Errorf("missing %s on a refusal", h)
			}
		}
	})

	alice := d.browser()
	_, usedCode := alice.enroll("alice", password("alice"))

	t.Run("signed-in user reaches OpenClaw as herself", func(t *testing.T) {
		// An operator may write, a viewer may not, whatever identity and
		// scopes headers the client sends itself.
		req := `{"tool":"sessions_list"}`
		code := func(b *browser) (int, string) {
			r, _ := http.NewRequest("POST", d.srv.URL+"/tools/invoke", strings.NewReader(req))
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Origin", d.origin)
			r.Header.Set("X-Forwarded-User", "admin")
			r.Header.Set("X-Openclaw-Scopes", "operator.admin")
			resp, err := b.c.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(out)
		}
		if c, out := code(alice); c != 200 {
			t.Errorf("operator alice: %d %s", c, out)
		}
		victor := d.browser()
		victor.client = "203.0.113.9"
		victor.enroll("victor", password("victor"))
		if c, out := code(victor); c != 403 || !strings.Contains(out, "operator.write") {
			t.Errorf("viewer victor claiming admin: %d %s, want 403 missing operator.write", c, out)
		}
	})

	var ws *websocket.Conn
	t.Run("websocket connect through the door", func(t *testing.T) {
		var auth helloAuth
		var err error
		ws, auth, err = dialGateway(t.Context(), d, alice, d.origin)
		if err != nil {
			t.Fatal(err)
		}
		if auth.Method != "trusted-proxy" || len(auth.Scopes) == 0 {
			t.Errorf("hello-ok auth %+v: want trusted-proxy with alice's granted scopes", auth)
		}
		if _, _, err := dialGateway(t.Context(), d, alice, "https://evil.example"); err == nil {
			t.Error("a cross-origin upgrade was accepted")
		}
	})

	t.Run("logout closes the open websocket", func(t *testing.T) {
		closed := readUntilClosed(ws)
		_, page := alice.do("GET", web.Prefix+"account", nil, nil)
		start := time.Now()
		alice.do("POST", web.Prefix+"logout", url.Values{"csrf": {field(t, csrfRe, page)}}, nil)
		select {
		case <-closed:
			t.Logf("websocket closed %v after logout", time.Since(start).Round(time.Millisecond))
		case <-time.After(3 * time.Second):
			t.Fatal("websocket still open 3 s after logout")
		}
		resp, _ := alice.do("POST", "/tools/invoke", nil, http.Header{"Content-Type": {"application/json"}, "Origin": {d.origin}})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("after logout: %d", resp.StatusCode)
		}
	})

	t.Run("a TOTP code is accepted once", func(t *testing.T) {
		resp, page := alice.signIn("alice", password("alice"))
		if !strings.Contains(resp.Request.URL.Path, "/mfa") {
			t.Fatalf("sign-in landed on %s", resp.Request.URL)
		}
		resp, page = alice.do("POST", web.Prefix+"mfa", url.Values{"csrf": {field(t, csrfRe, page)}, "code": {usedCode}, "next": {"/"}}, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("replayed code: %d, want 401\n%s", resp.StatusCode, page)
		}
	})

	t.Run("revoke and disable from another process end sessions and sockets", func(t *testing.T) {
		// A fresh enrolment signs victor in without waiting for a TOTP step
		// his earlier sign-in has not spent.
		if err := d.accounts.ResetMFA(t.Context(), account.Meta{Actor: "test"}, "victor"); err != nil {
			t.Fatal(err)
		}
		victor := d.browser()
		victor.client = "203.0.113.11"
		victor.enroll("victor", password("victor"))
		c, _, err := dialGateway(t.Context(), d, victor, d.origin)
		if err != nil {
			t.Fatalf("victor's websocket: %v", err)
		}
		closed := readUntilClosed(c)
		// The CLI: another Manager on the same database.
		cli := &session.Manager{DB: d.db, Actor: "cli:test"}
		if err := d.accounts.Disable(t.Context(), account.Meta{Actor: "cli:test"}, "victor"); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if n, err := cli.RevokeUser(t.Context(), "victor", "user disabled"); err != nil || n == 0 {
			t.Fatalf("RevokeUser: %d %v", n, err)
		}
		select {
		case <-closed:
			t.Logf("websocket closed %v after the revoke", time.Since(start).Round(time.Millisecond))
		case <-time.After(3 * time.Second):
			t.Fatal("websocket still open 3 s after the user was disabled")
		}
		resp, _ := victor.do("GET", web.Prefix+"account", nil, nil)
		if !strings.Contains(resp.Request.URL.Path, "login") {
			t.Errorf("disabled user's session still works: %s", resp.Request.URL)
		}
		resp, page := victor.signIn("victor", password("victor"))
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("disabled user signed in: %d\n%s", resp.StatusCode, page)
		}
	})

	t.Run("brute force trips the lockout", func(t *testing.T) {
		b := d.browser()
		b.client = "198.51.100.23"
		var last int
		for i := 0; i < 5; i++ {
			resp, _ := b.signIn("alice", "wrong password number "+string(rune('a'+i)))
			last = resp.StatusCode
		}
		if last != http.StatusTooManyRequests {
			t.Fatalf("after 5 wrong passwords: %d, want 429", last)
		}
		// Even the right password is refused while banned.
		resp, _ := b.signIn("alice", password("alice"))
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("right password while banned: %d", resp.StatusCode)
		}
	})

	t.Run("login events carry address, agent and country", func(t *testing.T) {
		b := d.browser()
		b.client = "8.8.8.8"
		b.signIn("nobody-here", "not the password") // alice is locked out by now
		evs, err := events.List(t.Context(), d.db, events.Filter{Type: account.EventLoginFailed})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if ev.Detail["ip"] == "8.8.8.8" {
				if ev.Detail["country"] != "US" || ev.Detail["user_agent"] == "" {
					t.Errorf("failed-login event detail %v: want country US and the user agent", ev.Detail)
				}
				if strings.Contains(fmt.Sprint(ev.Detail), "not the password") {
					t.Error("the password reached an event")
				}
				return
			}
		}
		t.Errorf("no failed-login event from 8.8.8.8 among %d", len(evs))
	})

	t.Run("forms refuse cross-origin posts", func(t *testing.T) {
		b := d.browser()
		_, page := b.do("GET", web.Prefix+"login", nil, nil)
		resp, _ := b.do("POST", web.Prefix+"login", url.Values{"csrf": {field(t, csrfRe, page)}, "user": {"alice"}, "password": {password("alice")}},
			http.Header{"Origin": {"https://evil.example"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin login post: %d", resp.StatusCode)
		}
		resp, _ = b.do("POST", web.Prefix+"login", url.Values{"csrf": {"forged"}, "user": {"alice"}, "password": {password("alice")}}, nil)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("login post with a forged token: %d", resp.StatusCode)
		}
	})
}

type helloAuth = openclawtest.HelloAuth

// dialGateway opens OpenClaw's WebSocket through the door with b's cookies
// and completes the operator connect handshake (openclaw-experiments §2).
func dialGateway(ctx context.Context, d *door, b *browser, origin string) (*websocket.Conn, helloAuth, error) {
	u, _ := url.Parse(d.srv.URL)
	h := http.Header{"Origin": {origin}}
	for _, c := range b.c.Jar.Cookies(u) {
		h.Add("Cookie", c.Name+"="+c.Value)
	}
	if b.client != "" {
		h.Set("X-Test-Client", b.client)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(d.srv.URL, "https")+"/", &websocket.DialOptions{HTTPHeader: h, HTTPClient: d.srv.Client()})
	if err != nil {
		return nil, helloAuth{}, err
	}
	auth, _, err := openclawtest.Handshake(ctx, c, []string{"operator.read", "operator.write"})
	if err != nil {
		c.CloseNow()
		return nil, helloAuth{}, err
	}
	return c, auth, nil
}

// readUntilClosed reads c until it fails and then closes the channel.
func readUntilClosed(c *websocket.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return done
}
