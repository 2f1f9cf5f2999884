package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// gatewayConfig is the trusted-proxy setup of openclaw-experiments.md §3 for
// a same-host front door: the proxy connects from 127.0.0.1, so it must be
// in trustedProxies with allowLoopback, and X-Forwarded-For must name a
// non-loopback client. alice has an identityScopes grant, which is how a
// device-less WebSocket session gets scopes (and so shows whom the gateway
// saw); bob and the role users have none.
func gatewayConfig() map[string]any {
	return map[string]any{
		"gateway": map[string]any{
			"bind":           "loopback",
			"trustedProxies": []string{"127.0.0.1"},
			"auth": map[string]any{
				"mode":           "trusted-proxy",
				"identityScopes": map[string]any{"alice@example.com": []string{"operator.read", "operator.write"}},
				"trustedProxy": map[string]any{
					"userHeader":      DefaultUserHeader,
					"requiredHeaders": []string{"x-forwarded-proto", "x-forwarded-host"},
					"allowUsers": []string{"alice@example.com", "bob@example.com",
						"viewer@example.com", "operator@example.com", "admin@example.com"},
					"allowLoopback": true,
				},
			},
			"controlUi": map[string]any{"allowedOrigins": []string{testOrigin}},
			"http":      map[string]any{"endpoints": map[string]any{"chatCompletions": map[string]any{"enabled": true}}},
		},
	}
}

type frame struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Event   string          `json:"event"`
	OK      bool            `json:"ok"`
	Payload json.RawMessage `json:"payload"`
	Error   json.RawMessage `json:"error"`
}

// wsCall sends a request frame and returns the response frame with its id,
// skipping events.
func wsCall(ctx context.Context, c *websocket.Conn, id, method string, params any) (frame, error) {
	b, err := json.Marshal(map[string]any{"type": "req", "id": id, "method": method, "params": params})
	if err != nil {
		return frame{}, err
	}
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		return frame{}, err
	}
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return frame{}, err
		}
		var f frame
		if err := json.Unmarshal(b, &f); err != nil {
			return frame{}, err
		}
		if f.Type == "res" && f.ID == id {
			return f, nil
		}
	}
}

type helloAuth = openclawtest.HelloAuth

// wsConnect dials the front door as the given identity and completes the
// operator connect, returning the hello-ok auth block (or the refusal).
func wsConnect(ctx context.Context, t *testing.T, doorURL, role, user string, hdr http.Header) (*websocket.Conn, helloAuth, json.RawMessage, error) {
	h := http.Header{"Origin": {testOrigin}, "X-Test-Role": {role}, "X-Test-User": {user}}
	for k, v := range hdr {
		h[k] = v
	}
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(doorURL, "http")+"/", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		return nil, helloAuth{}, nil, err
	}
	auth, refusal, err := openclawtest.Handshake(ctx, c, []string{"operator.read", "operator.write", "operator.admin"})
	if err != nil {
		c.CloseNow()
		return nil, helloAuth{}, refusal, err
	}
	return c, auth, nil, nil
}

func TestAgainstOpenClaw(t *testing.T) {
	inst := openclawtest.Install(t)
	g := openclawtest.Start(t, inst, gatewayConfig())
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := newRegistry()
	door := startDoor(t, newTestProxy(t, Config{Upstream: g.URL(), Register: reg.Register, Logger: logger}))

	invoke := `{"tool":"sessions_list"}`
	post := func(t *testing.T, url string, hdr map[string][]string) (int, string) {
		t.Helper()
		h := map[string][]string{"Origin": {testOrigin}, "Content-Type": {"application/json"}}
		for k, v := range hdr {
			h[k] = v
		}
		code, body, _ := do(t, "POST", url+"/tools/invoke", h, invoke)
		return code, body
	}

	t.Run("http roles", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			hdr  map[string][]string
			code int
			body string
		}{
			{"viewer cannot write", map[string][]string{"X-Test-Role": {RoleViewer}}, 403, "missing scope: operator.write"},
			{"operator can write", map[string][]string{"X-Test-Role": {RoleOperator}}, 200, `"ok":true`},
			{"admin can write", map[string][]string{"X-Test-Role": {RoleAdmin}}, 200, `"ok":true`},
			// Client-supplied identity, address and scope headers are
			// replaced: the viewer is still a viewer...
			{"viewer spoofing admin", map[string][]string{"X-Test-Role": {RoleViewer},
				"X-Forwarded-User":  {"admin@example.com"},
				"X-Openclaw-Scopes": {"operator.admin,operator.write"},
				"X-Forwarded-For":   {"198.51.100.1"},
				"Forwarded":         {"for=198.51.100.1;proto=https"},
				"X-Real-Ip":         {"198.51.100.1"},
			}, 403, "missing scope: operator.write"},
			// ...and a user outside allowUsers claiming to be alice is
			// refused: OpenClaw checked the user the proxy set.
			{"unlisted user claiming alice", map[string][]string{"X-Test-Role": {RoleAdmin}, "X-Test-User": {"mallory@example.com"},
				"X-Forwarded-User": {"alice@example.com"}, "x-forwarded-user": {"alice@example.com"}}, 401, "unauthorized"},
			{"no identity", map[string][]string{"X-Forwarded-User": {"alice@example.com"}, "X-Forwarded-For": {"198.51.100.1"}}, 401, "unauthorized"},
			{"cross origin", map[string][]string{"X-Test-Role": {RoleAdmin}, "Origin": {"https://evil.example"}}, 403, "bad origin"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, body := post(t, door.URL, tc.hdr)
				if code != tc.code || !strings.Contains(body, tc.body) {
					t.Errorf("got %d %.300s, want %d containing %q", code, body, tc.code, tc.body)
				}
			})
		}
		// A read endpoint for the viewer.
		code, body, _ := do(t, "GET", door.URL+"/v1/models", map[string][]string{"X-Test-Role": {RoleViewer}}, "")
		if code != 200 || !strings.Contains(body, "openclaw") {
			t.Errorf("viewer GET /v1/models = %d %.200s", code, body)
		}
	})

	t.Run("loopback client", func(t *testing.T) {
		// OpenClaw refuses a loopback X-Forwarded-For
		// (proxy_attribution_required), but a browser on the door's own
		// host (a laptop, an SSH tunnel) is a real user: the proxy names it
		// LocalClientAddr, and the gateway serves it.
		p := newTestProxy(t, Config{Upstream: g.URL(), Logger: logger})
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), Identity{User: "alice@example.com", Role: RoleAdmin})))
		}))
		defer ts.Close()
		code, body := post(t, ts.URL, nil)
		if code != 200 {
			t.Errorf("got %d %.300s, want 200 for a client on the door's host", code, body)
		}
	})

	t.Run("websocket identity", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			role   string
			user   string
			hdr    http.Header
			scopes []string
		}{
			// alice's identityScopes grant shows the gateway saw alice.
			{"alice admin", RoleAdmin, "alice@example.com", nil, []string{"operator.read", "operator.write"}},
			{"alice spoofing bob", RoleAdmin, "alice@example.com", http.Header{"X-Forwarded-User": {"bob@example.com"}}, []string{"operator.read", "operator.write"}},
			// bob has no grant: a device-less session gets no scopes.
			{"bob admin", RoleAdmin, "bob@example.com", nil, []string{}},
			{"bob spoofing alice", RoleAdmin, "bob@example.com", http.Header{"X-Forwarded-User": {"alice@example.com"}, "X-Openclaw-Scopes": {"operator.admin"}}, []string{}},
			// The role's scopes header caps alice's grant.
			{"alice viewer", RoleViewer, "alice@example.com", nil, []string{"operator.read"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				c, auth, _, err := wsConnect(ctx, t, door.URL, tc.role, tc.user, tc.hdr)
				if err != nil {
					t.Fatalf("connect: %v\n%s", err, g.LogTail(20))
				}
				defer c.CloseNow()
				t.Logf("hello-ok auth: %+v", auth)
				if auth.Method != "trusted-proxy" || !slices.Equal(auth.Scopes, tc.scopes) {
					t.Errorf("auth %+v, want trusted-proxy with scopes %q", auth, tc.scopes)
				}
				res, err := wsCall(ctx, c, "s1", "status", map[string]any{})
				if err != nil {
					t.Fatal(err)
				}
				if want := slices.Contains(tc.scopes, "operator.read"); res.OK != want {
					t.Errorf("status ok = %v, want %v: %.300s", res.OK, want, res.Error)
				}
				c.Close(websocket.StatusNormalClosure, "")
			})
		}
	})

	t.Run("websocket cross origin", func(t *testing.T) {
		for _, origin := range []string{"", "https://evil.example", g.URL()} {
			h := http.Header{"X-Test-Role": {RoleAdmin}, "X-Test-User": {"alice@example.com"}}
			if origin != "" {
				h.Set("Origin", origin)
			}
			c, resp, err := websocket.Dial(t.Context(), "ws"+strings.TrimPrefix(door.URL, "http")+"/", &websocket.DialOptions{HTTPHeader: h})
			if err == nil {
				c.CloseNow()
				t.Errorf("origin %q: upgrade succeeded", origin)
				continue
			}
			if resp == nil || resp.StatusCode != 403 {
				t.Errorf("origin %q: %v, want 403", origin, err)
			}
		}
	})

	t.Run("websocket closed with session", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		for len(reg.added) > 0 {
			<-reg.added
		}
		c, _, _, err := wsConnect(ctx, t, door.URL, RoleOperator, "alice@example.com", nil)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer c.CloseNow()
		if s := <-reg.added; s != "s-alice@example.com" {
			t.Fatalf("registered as %q", s)
		}
		readErr := make(chan error, 1)
		go func() {
			for {
				if _, _, err := c.Read(context.Background()); err != nil {
					readErr <- err
					return
				}
			}
		}()
		start := time.Now()
		if n := reg.closeSession("s-alice@example.com"); n == 0 {
			t.Fatal("no connection registered for the session")
		}
		// The door's side is closed when closeSession returns; the client
		// notices when the scheduler lets it (seconds on a loaded CI box).
		if d := time.Since(start); d > time.Second {
			t.Fatalf("closing the session's connections took %v", d)
		}
		select {
		case err := <-readErr:
			t.Logf("client closed after %v: %v", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(5 * time.Second):
			t.Fatal("client still open 5 s after the session's connections were closed")
		}
	})

	t.Run("unix socket upstream", func(t *testing.T) {
		// The gateway listens on TCP; a relay stands in for the sandbox's
		// host socket. Its connections to the gateway come from 127.0.0.1.
		sock := filepath.Join(t.TempDir(), "gw.sock")
		relay(t, sock, "127.0.0.1:"+strings.TrimPrefix(g.URL(), "http://127.0.0.1:"))
		door := startDoor(t, newTestProxy(t, Config{Upstream: "unix:" + sock, Logger: logger}))
		code, body := post(t, door.URL, map[string][]string{"X-Test-Role": {RoleOperator}})
		if code != 200 || !strings.Contains(body, `"ok":true`) {
			t.Errorf("operator over unix socket = %d %.300s", code, body)
		}
		code, body = post(t, door.URL, map[string][]string{"X-Test-Role": {RoleViewer}})
		if code != 403 {
			t.Errorf("viewer over unix socket = %d %.300s", code, body)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		c, auth, _, err := wsConnect(ctx, t, door.URL, RoleAdmin, "alice@example.com", nil)
		if err != nil {
			t.Fatalf("ws over unix socket: %v", err)
		}
		defer c.CloseNow()
		if !slices.Equal(auth.Scopes, []string{"operator.read", "operator.write"}) {
			t.Errorf("ws over unix socket: %+v", auth)
		}
	})
}

// relay accepts on a unix socket at path and copies each connection to
// addr, like the sandbox's relay to the gateway's loopback port.
func relay(t *testing.T, path, addr string) {
	t.Helper()
	l, err := net.Listen("unix", path)
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
				u, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(u, c); done <- struct{}{} }()
				go func() { io.Copy(c, u); done <- struct{}{} }()
				<-done
			}()
		}
	}()
}
