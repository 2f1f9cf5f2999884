package oidc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawhold/clawhold/frontdoor/oidc/oidctest"
	"golang.org/x/oauth2"
)

const (
	testClientID = "clawhold-test"
	// testSecret is distinctive so a leak into any error is easy to spot.
	testSecret = "client-secret-7f3a9c-never-in-errors"
)

func defaultUser() oidctest.User {
	return oidctest.User{
		Subject:       "user-123",
		Email:         "alice@example.com",
		EmailVerified: true,
		Name:          "Alice Liddell",
		Groups:        []string{"staff", "claw-operators"},
		Claims:        map[string]any{"org": "acme"},
	}
}

type harnessOpts struct {
	idp      oidctest.Config // ClientID, TLS and defaults are filled in
	plainIdP bool            // serve the provider over http on loopback
	cfg      func(*Config)
}

// harness is a test provider, a relying party (TLS, like the front door)
// serving /login (Begin) and /callback (Finish), and a Provider joining them.
type harness struct {
	idp         *oidctest.Server
	rp          *httptest.Server
	p           *Provider
	skew        atomic.Int64 // added to the Provider's clock
	secretCalls atomic.Int32

	mu      sync.Mutex
	lastErr error
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	h := &harness{}
	ic := o.idp
	ic.ClientID = testClientID
	if ic.ClientSecret == "" {
		ic.ClientSecret = testSecret
	}
	if ic.User.Subject == "" {
		ic.User = defaultUser()
	}
	ic.TLS = !o.plainIdP
	idp, err := oidctest.New(ic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	h.idp = idp

	mux := http.NewServeMux()
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) { h.p.Begin(w, r) })
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		id, err := h.p.Finish(w, r)
		h.mu.Lock()
		h.lastErr = err
		h.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		json.NewEncoder(w).Encode(id)
	})
	// Unstarted, so the redirect URL is known before New and the server
	// goroutines start after h.p is set.
	h.rp = httptest.NewUnstartedServer(mux)
	base := "https://" + h.rp.Listener.Addr().String()
	idp.AddRedirectURI(base + "/callback")

	cfg := Config{
		Issuer:   idp.URL,
		ClientID: testClientID,
		ClientSecret: func(ctx context.Context) ([]byte, error) {
			h.secretCalls.Add(1)
			return []byte(testSecret), nil
		},
		RedirectURL:   base + "/callback",
		DefaultTenant: "acme",
		DefaultRole:   RoleViewer,
		CookieKey:     testKey(),
		HTTPClient:    idp.Client(),
		Now:           func() time.Time { return time.Now().Add(time.Duration(h.skew.Load())) },
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	h.p, err = New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.rp.StartTLS()
	t.Cleanup(h.rp.Close)
	return h
}

func testKey() []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// browser is a client with a cookie jar that trusts both servers (httptest
// TLS servers share one certificate).
func (h *harness) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: h.rp.Client().Transport, Jar: jar}
}

// authorize runs /login and the provider's /authorize in c, stopping at the
// redirect back to /callback, and returns that URL and the flow cookie.
func (h *harness) authorize(t *testing.T, c *http.Client) (*url.URL, string) {
	t.Helper()
	cc := *c
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Path == "/callback" {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := cc.Get(h.rp.URL + "/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %s: %s", resp.Status, body)
	}
	u, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	rpURL, _ := url.Parse(h.rp.URL)
	var cookie string
	for _, ck := range c.Jar.Cookies(rpURL) {
		if ck.Name == FlowCookieName {
			cookie = ck.Value
		}
	}
	if cookie == "" {
		t.Fatal("no flow cookie after Begin")
	}
	return u, cookie
}

// finish calls the callback u with the flow cookie (none if ""), outside
// any jar, and returns the response and Finish's error.
func (h *harness) finish(t *testing.T, u *url.URL, cookie string) (*http.Response, error) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u.String(), nil)
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: FlowCookieName, Value: cookie})
	}
	c := &http.Client{Transport: h.rp.Client().Transport}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	return resp, h.lastErr
}

func TestLoginRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name       string
		plainIdP   bool
		authMethod string
	}{
		{"tls-basic", false, "client_secret_basic"},
		{"tls-post", false, "client_secret_post"},
		{"loopback-http-basic", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpts{
				plainIdP: tc.plainIdP,
				idp:      oidctest.Config{AuthMethod: tc.authMethod},
				cfg: func(c *Config) {
					c.TenantClaim = "org"
					c.DefaultTenant = ""
					c.RoleMap = map[string]string{"claw-operators": RoleOperator, "staff": RoleViewer}
					c.AllowedEmailDomains = []string{"Example.COM"}
					c.AllowedGroups = []string{"staff"}
				},
			})
			if n := h.secretCalls.Load(); n != 0 {
				t.Fatalf("secret fetched %d times before any login", n)
			}
			b := h.browser()
			resp, err := b.Get(h.rp.URL + "/login") // follows every redirect
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("login: %s: %s", resp.Status, body)
			}
			var got Identity
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			want := Identity{
				Issuer:  h.idp.URL,
				Subject: "user-123",
				Email:   "alice@example.com",
				Name:    "Alice Liddell",
				Groups:  []string{"staff", "claw-operators"},
				Tenant:  "acme",
				Role:    RoleOperator,
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("identity:\n got %+v\nwant %+v", got, want)
			}
			rpURL, _ := url.Parse(h.rp.URL)
			for _, ck := range b.Jar.Cookies(rpURL) {
				if ck.Name == FlowCookieName {
					t.Errorf("flow cookie still set after Finish")
				}
			}
			if n := h.secretCalls.Load(); n != 1 {
				t.Errorf("secret fetched %d times, want 1", n)
			}

			// What the client sent: PKCE S256, state, nonce, client auth.
			az := h.idp.AuthorizeRequests()
			tr := h.idp.TokenRequests()
			if len(az) != 1 || len(tr) != 1 {
				t.Fatalf("%d authorize, %d token requests; want 1 each", len(az), len(tr))
			}
			q := az[0].Params
			if m := q.Get("code_challenge_method"); m != "S256" {
				t.Errorf("code_challenge_method = %q, want S256", m)
			}
			sum := sha256.Sum256([]byte(tr[0].Form.Get("code_verifier")))
			if ch := base64.RawURLEncoding.EncodeToString(sum[:]); q.Get("code_challenge") != ch {
				t.Errorf("code_challenge is not S256(code_verifier)")
			}
			if len(q.Get("state")) != randLen || len(q.Get("nonce")) != randLen || q.Get("state") == q.Get("nonce") {
				t.Errorf("state %q / nonce %q: want two distinct 256-bit values", q.Get("state"), q.Get("nonce"))
			}
			if s := q.Get("scope"); s != "openid email profile" {
				t.Errorf("scope = %q", s)
			}
			wantMethod := tc.authMethod
			if wantMethod == "" {
				wantMethod = "client_secret_basic"
			}
			if tr[0].AuthMethod != wantMethod || !tr[0].SecretOK || tr[0].Error != "" {
				t.Errorf("token request: method %q secretOK %v error %q; want %s, true, none", tr[0].AuthMethod, tr[0].SecretOK, tr[0].Error, wantMethod)
			}
		})
	}
}

func TestBeginCookie(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	w := httptest.NewRecorder()
	h.p.Begin(w, httptest.NewRequest("GET", "https://front.example/login", nil))
	resp := w.Result()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cks := resp.Cookies()
	if len(cks) != 1 {
		t.Fatalf("%d cookies", len(cks))
	}
	c := cks[0]
	if c.Name != FlowCookieName || !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || !c.HttpOnly ||
		c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" || c.MaxAge != 600 {
		t.Errorf("cookie attributes: %s", c.String())
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	loc, _ := resp.Location()
	f, err := h.p.codec.open(c.Value, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	if q.Get("state") != f.State || q.Get("nonce") != f.Nonce || q.Get("code_challenge") != oauth2.S256ChallengeFromVerifier(f.Verifier) {
		t.Errorf("redirect does not carry the cookie's state, nonce and challenge")
	}
	if strings.Contains(loc.String(), f.Verifier) || strings.Contains(c.Value, f.Verifier) {
		t.Errorf("verifier visible outside the encrypted cookie")
	}
}

func TestFinishRefuses(t *testing.T) {
	setQuery := func(u *url.URL, k, v string) {
		q := u.Query()
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
	}
	for _, tc := range []struct {
		name   string
		opts   harnessOpts
		setup  func(t *testing.T, h *harness)
		tamper func(t *testing.T, h *harness, u *url.URL, cookie *string)
		want   Kind
		reason string // substring of Reason
	}{
		{name: "state missing", want: KindState,
			tamper: func(t *testing.T, h *harness, u *url.URL, _ *string) { setQuery(u, "state", "") }},
		{name: "state wrong", want: KindState,
			tamper: func(t *testing.T, h *harness, u *url.URL, _ *string) { setQuery(u, "state", randToken()) }},
		{name: "cookie missing", want: KindFlowCookie,
			tamper: func(t *testing.T, h *harness, u *url.URL, c *string) { *c = "" }},
		{name: "cookie tampered", want: KindFlowCookie,
			tamper: func(t *testing.T, h *harness, u *url.URL, c *string) {
				b := []byte(*c)
				i := len(b) / 2
				if b[i] == 'A' {
					b[i] = 'B'
				} else {
					b[i] = 'A'
				}
				*c = string(b)
			}},
		{name: "cookie sealed with another key", want: KindFlowCookie,
			tamper: func(t *testing.T, h *harness, u *url.URL, c *string) {
				f, err := h.p.codec.open(*c, h.p.now())
				if err != nil {
					t.Fatal(err)
				}
				other, _ := newFlowCodec(testKey(), h.p.cfg.Issuer, testClientID)
				*c = other.seal(f)
			}},
		{name: "flow expired", want: KindFlowCookie, reason: "expired",
			tamper: func(t *testing.T, h *harness, u *url.URL, c *string) { h.skew.Store(int64(11 * time.Minute)) }},
		{name: "provider denies", want: KindProviderError, reason: "access_denied",
			setup: func(t *testing.T, h *harness) { h.idp.FailAuthorize("access_denied") }},
		{name: "iss parameter from another issuer", want: KindIssuerMismatch,
			tamper: func(t *testing.T, h *harness, u *url.URL, _ *string) { setQuery(u, "iss", "https://evil.example") }},
		{name: "code missing", want: KindMissingCode,
			tamper: func(t *testing.T, h *harness, u *url.URL, _ *string) { setQuery(u, "code", "") }},
		{name: "nonce wrong", want: KindNonce,
			setup: mutate(func(c map[string]any) { c["nonce"] = randToken() })},
		{name: "nonce missing", want: KindNonce,
			setup: mutate(func(c map[string]any) { delete(c, "nonce") })},
		{name: "id token expired", want: KindIDTokenExpired,
			setup: mutate(func(c map[string]any) {
				c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
				c["exp"] = time.Now().Add(-time.Hour).Unix()
			})},
		{name: "signed by another key", want: KindIDToken,
			setup: func(t *testing.T, h *harness) {
				if err := h.idp.SignWithUnknownKey(true); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "wrong audience", want: KindIDToken,
			setup: mutate(func(c map[string]any) { c["aud"] = "another-client" })},
		{name: "extra audience without azp", want: KindIDToken, reason: "azp",
			setup: mutate(func(c map[string]any) { c["aud"] = []string{testClientID, "another-client"} })},
		{name: "azp another client", want: KindIDToken, reason: "azp",
			setup: mutate(func(c map[string]any) { c["azp"] = "another-client" })},
		{name: "wrong issuer in token", want: KindIDToken,
			setup: mutate(func(c map[string]any) { c["iss"] = "https://evil.example" })},
		{name: "at_hash mismatch", want: KindIDToken, reason: "at_hash",
			setup: mutate(func(c map[string]any) { c["at_hash"] = "AAAAAAAAAAAAAAAAAAAAAA" })},
		{name: "email not verified", want: KindEmailUnverified,
			setup: func(t *testing.T, h *harness) {
				u := defaultUser()
				u.EmailVerified = false
				h.idp.SetUser(u)
			}},
		{name: "email domain not allowed", want: KindEmailDomain, reason: "example.com",
			opts: harnessOpts{cfg: func(c *Config) { c.AllowedEmailDomains = []string{"example.org", "corp.example.com"} }}},
		{name: "group not allowed", want: KindGroup,
			opts: harnessOpts{cfg: func(c *Config) { c.AllowedGroups = []string{"claw-admins"} }}},
		{name: "no role", want: KindRole,
			opts: harnessOpts{cfg: func(c *Config) { c.DefaultRole = ""; c.RoleMap = map[string]string{"claw-admins": RoleAdmin} }}},
		{name: "tenant claim not a tenant name", want: KindTenant,
			opts: harnessOpts{cfg: func(c *Config) { c.TenantClaim = "org" }},
			setup: func(t *testing.T, h *harness) {
				u := defaultUser()
				u.Claims = map[string]any{"org": "../system"}
				h.idp.SetUser(u)
			}},
		{name: "pkce verifier mismatch", want: KindExchange, reason: "invalid_grant",
			tamper: func(t *testing.T, h *harness, u *url.URL, c *string) {
				f, err := h.p.codec.open(*c, h.p.now())
				if err != nil {
					t.Fatal(err)
				}
				f.Verifier = oauth2.GenerateVerifier()
				*c = h.p.codec.seal(f)
			}},
		{name: "client secret unavailable", want: KindClientSecret,
			opts: harnessOpts{cfg: func(c *Config) {
				c.ClientSecret = func(context.Context) ([]byte, error) { return nil, errors.New("secret store locked") }
			}}},
		{name: "client secret wrong", want: KindExchange, reason: "invalid_client",
			opts: harnessOpts{idp: oidctest.Config{ClientSecret: "the-provider-expects-another"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts)
			if tc.setup != nil {
				tc.setup(t, h)
			}
			u, cookie := h.authorize(t, h.browser())
			code := u.Query().Get("code")
			if tc.tamper != nil {
				tc.tamper(t, h, u, &cookie)
			}
			resp, err := h.finish(t, u, cookie)
			if err == nil {
				t.Fatalf("Finish succeeded, want %q", tc.want)
			}
			if !errors.Is(err, tc.want) || KindOf(err) != tc.want {
				t.Fatalf("Finish: %v (kind %q), want kind %q", err, KindOf(err), tc.want)
			}
			t.Logf("Finish: %v", err)
			var e *Error
			errors.As(err, &e)
			if !strings.Contains(e.Reason, tc.reason) {
				t.Errorf("reason %q does not mention %q", e.Reason, tc.reason)
			}
			assertNoLeak(t, err, testSecret, code, cookie)
			assertCleared(t, resp)
			for _, tr := range h.idp.TokenRequests() {
				if tc.name == "pkce verifier mismatch" && tr.Error != "invalid_grant" {
					t.Errorf("provider answered %q to a wrong verifier, want invalid_grant", tr.Error)
				}
			}
		})
	}
}

func mutate(f func(map[string]any)) func(*testing.T, *harness) {
	return func(t *testing.T, h *harness) { h.idp.MutateIDToken(f) }
}

// assertNoLeak checks that no secret, code, cookie or JWT appears anywhere
// in err's chain.
func assertNoLeak(t *testing.T, err error, secrets ...string) {
	t.Helper()
	for e := err; e != nil; e = errors.Unwrap(e) {
		msg := e.Error()
		for _, s := range secrets {
			if s != "" && strings.Contains(msg, s) {
				t.Errorf("error %q contains a secret value %.8q…", msg, s)
			}
		}
		if strings.Contains(msg, "eyJ") {
			t.Errorf("error %q seems to contain a JWT", msg)
		}
	}
}

func assertCleared(t *testing.T, resp *http.Response) {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == FlowCookieName && c.MaxAge < 0 && c.Value == "" {
			return
		}
	}
	t.Errorf("Finish did not clear the flow cookie: %q", resp.Header.Values("Set-Cookie"))
}

func TestReplayedCode(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	u, cookie := h.authorize(t, h.browser())
	if resp, err := h.finish(t, u, cookie); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("first Finish: %v", err)
	}
	// An attacker holding both the callback URL and the flow cookie.
	_, err := h.finish(t, u, cookie)
	if KindOf(err) != KindExchange || !strings.Contains(err.Error(), "invalid_grant") {
		t.Fatalf("replayed code: %v, want %s invalid_grant", err, KindExchange)
	}
	assertNoLeak(t, err, testSecret, u.Query().Get("code"), cookie)
	tr := h.idp.TokenRequests()
	if len(tr) != 2 || tr[1].Error != "invalid_grant" {
		t.Errorf("token requests %+v", tr)
	}
}

// TestSecretFetchedPerExchange checks the secret comes from the func at
// every exchange and only then.
func TestSecretFetchedPerExchange(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	for i := 1; i <= 3; i++ {
		u, cookie := h.authorize(t, h.browser())
		if n := h.secretCalls.Load(); n != int32(i-1) {
			t.Fatalf("secret fetched %d times before exchange %d", n, i)
		}
		if _, err := h.finish(t, u, cookie); err != nil {
			t.Fatal(err)
		}
		if n := h.secretCalls.Load(); n != int32(i) {
			t.Fatalf("secret fetched %d times after %d logins", n, i)
		}
	}
	// The state check comes before the exchange: no secret fetched.
	u, cookie := h.authorize(t, h.browser())
	q := u.Query()
	q.Set("state", randToken())
	u.RawQuery = q.Encode()
	if _, err := h.finish(t, u, cookie); KindOf(err) != KindState {
		t.Fatal(err)
	}
	if n := h.secretCalls.Load(); n != 3 {
		t.Errorf("secret fetched for a request refused before the exchange")
	}
}

func TestAuthorizeClaims(t *testing.T) {
	base := Config{
		Issuer:       "https://idp.example",
		ClientID:     testClientID,
		ClientSecret: func(context.Context) ([]byte, error) { return []byte(testSecret), nil },
		RedirectURL:  "https://claw.example/callback",
		CookieKey:    testKey(),
		RoleMap: map[string]string{
			"readers":   RoleViewer,
			"operators": RoleOperator,
			"admins":    RoleAdmin,
		},
		TenantClaim:   "tenant",
		DefaultTenant: "main",
	}
	claims := func(kv ...any) map[string]any {
		c := map[string]any{"email": "bob@Example.com", "email_verified": true}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(c, kv[i].(string))
			} else {
				c[kv[i].(string)] = kv[i+1]
			}
		}
		return c
	}
	no := false
	for _, tc := range []struct {
		name       string
		cfg        func(*Config)
		sub        string
		claims     map[string]any
		wantRole   string
		wantTenant string
		wantGroups []string
		wantKind   Kind
	}{
		{name: "highest mapped role wins", claims: claims("groups", []any{"readers", "admins", "operators"}),
			wantRole: RoleAdmin, wantTenant: "main", wantGroups: []string{"readers", "admins", "operators"}},
		{name: "operator", claims: claims("groups", []any{"operators", "unmapped"}),
			wantRole: RoleOperator, wantTenant: "main", wantGroups: []string{"operators", "unmapped"}},
		{name: "single string group", claims: claims("groups", "readers"),
			wantRole: RoleViewer, wantTenant: "main", wantGroups: []string{"readers"}},
		{name: "unmapped group gets default role", cfg: func(c *Config) { c.DefaultRole = RoleViewer },
			claims: claims("groups", []any{"unmapped"}), wantRole: RoleViewer, wantTenant: "main", wantGroups: []string{"unmapped"}},
		{name: "mapped role beats default", cfg: func(c *Config) { c.DefaultRole = RoleOperator },
			claims: claims("groups", []any{"admins"}), wantRole: RoleAdmin, wantTenant: "main", wantGroups: []string{"admins"}},
		{name: "no groups no default", claims: claims(), wantKind: KindRole},
		{name: "custom groups claim", cfg: func(c *Config) { c.GroupsClaim = "roles" },
			claims: claims("roles", []any{"operators"}, "groups", []any{"admins"}), wantRole: RoleOperator, wantTenant: "main", wantGroups: []string{"operators"}},
		{name: "groups not strings", claims: claims("groups", []any{"admins", 7.0}), wantKind: KindClaims},
		{name: "groups an object", claims: claims("groups", map[string]any{"a": "admins"}), wantKind: KindClaims},
		{name: "tenant from claim", claims: claims("groups", "readers", "tenant", "team-b"),
			wantRole: RoleViewer, wantTenant: "team-b", wantGroups: []string{"readers"}},
		{name: "tenant claim absent uses default", claims: claims("groups", "readers"),
			wantRole: RoleViewer, wantTenant: "main", wantGroups: []string{"readers"}},
		{name: "tenant claim absent no default", cfg: func(c *Config) { c.DefaultTenant = "" },
			claims: claims("groups", "readers"), wantKind: KindTenant},
		{name: "tenant claim invalid", claims: claims("groups", "readers", "tenant", "Team B"), wantKind: KindTenant},
		{name: "tenant claim path traversal", claims: claims("groups", "readers", "tenant", "../x"), wantKind: KindTenant},
		{name: "tenant claim not a string", claims: claims("groups", "readers", "tenant", []any{"a"}), wantKind: KindTenant},
		{name: "no tenant claim configured", cfg: func(c *Config) { c.TenantClaim = "" },
			claims: claims("groups", "readers", "tenant", "team-b"), wantRole: RoleViewer, wantTenant: "main", wantGroups: []string{"readers"}},
		{name: "allowed domain case-insensitive", cfg: func(c *Config) { c.AllowedEmailDomains = []string{"@EXAMPLE.com"} },
			claims: claims("groups", "readers"), wantRole: RoleViewer, wantTenant: "main", wantGroups: []string{"readers"}},
		{name: "subdomain not implied", cfg: func(c *Config) { c.AllowedEmailDomains = []string{"example.com"} },
			claims: claims("groups", "readers", "email", "bob@evil.example.com"), wantKind: KindEmailDomain},
		{name: "domain suffix trick", cfg: func(c *Config) { c.AllowedEmailDomains = []string{"example.com"} },
			claims: claims("groups", "readers", "email", "bob@example.com@evil.test"), wantKind: KindEmailDomain},
		{name: "email_verified string", claims: claims("groups", "readers", "email_verified", "true"),
			wantRole: RoleViewer, wantTenant: "main", wantGroups: []string{"readers"}},
		{name: "email_verified false", claims: claims("groups", "readers", "email_verified", false), wantKind: KindEmailUnverified},
		{name: "email_verified absent", claims: claims("groups", "readers", "email_verified", nil), wantKind: KindEmailUnverified},
		{name: "email_verified not required", cfg: func(c *Config) { c.RequireEmailVerified = &no },
			claims: claims("groups", "readers", "email_verified", false), wantRole: RoleViewer, wantTenant: "main", wantGroups: []string{"readers"}},
		{name: "allowed group", cfg: func(c *Config) { c.AllowedGroups = []string{"operators"} },
			claims: claims("groups", []any{"operators"}), wantRole: RoleOperator, wantTenant: "main", wantGroups: []string{"operators"}},
		{name: "group not allowed", cfg: func(c *Config) { c.AllowedGroups = []string{"operators"} },
			claims: claims("groups", []any{"admins"}), wantKind: KindGroup},
		{name: "no groups when groups required", cfg: func(c *Config) { c.AllowedGroups = []string{"operators"} },
			claims: claims(), wantKind: KindGroup},
		{name: "no email", claims: claims("email", nil, "groups", "readers"), wantKind: KindClaims},
		{name: "email without domain", claims: claims("email", "bob@", "groups", "readers"), wantKind: KindClaims},
		{name: "email with newline", claims: claims("email", "bob@example.com\nx", "groups", "readers"), wantKind: KindClaims},
		{name: "no subject", sub: "-", claims: claims("groups", "readers"), wantKind: KindClaims},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			p, err := newProvider(cfg)
			if err != nil {
				t.Fatal(err)
			}
			sub := "sub-1"
			if tc.sub == "-" {
				sub = ""
			}
			id, err := p.authorize(sub, tc.claims)
			if tc.wantKind != "" {
				if KindOf(err) != tc.wantKind {
					t.Fatalf("authorize: %v, want kind %q", err, tc.wantKind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Role != tc.wantRole || id.Tenant != tc.wantTenant || !reflect.DeepEqual(id.Groups, tc.wantGroups) || id.Subject != sub {
				t.Errorf("got role %q tenant %q groups %q sub %q; want %q %q %q", id.Role, id.Tenant, id.Groups, id.Subject, tc.wantRole, tc.wantTenant, tc.wantGroups)
			}
		})
	}
}

func TestNewRejectsConfig(t *testing.T) {
	good := func() Config {
		return Config{
			Issuer:        "https://idp.example",
			ClientID:      testClientID,
			ClientSecret:  func(context.Context) ([]byte, error) { return nil, nil },
			RedirectURL:   "https://claw.example/callback",
			CookieKey:     testKey(),
			DefaultTenant: "main",
		}
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"http issuer off loopback", func(c *Config) { c.Issuer = "http://idp.example" }},
		{"relative issuer", func(c *Config) { c.Issuer = "/idp" }},
		{"http redirect off loopback", func(c *Config) { c.RedirectURL = "http://claw.example/callback" }},
		{"no client id", func(c *Config) { c.ClientID = "" }},
		{"no secret source", func(c *Config) { c.ClientSecret = nil }},
		{"short cookie key", func(c *Config) { c.CookieKey = make([]byte, 16) }},
		{"no tenant source", func(c *Config) { c.DefaultTenant = "" }},
		{"bad default tenant", func(c *Config) { c.DefaultTenant = "Main" }},
		{"bad default role", func(c *Config) { c.DefaultRole = "root" }},
		{"bad mapped role", func(c *Config) { c.RoleMap = map[string]string{"g": "superuser"} }},
		{"bad scope", func(c *Config) { c.Scopes = []string{"openid email"} }},
		{"bad domain", func(c *Config) { c.AllowedEmailDomains = []string{"a@b"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(&c)
			_, err := New(t.Context(), c)
			if KindOf(err) != KindConfig {
				t.Fatalf("New: %v, want kind %q", err, KindConfig)
			}
		})
	}
	// Loopback http is accepted (tests, local development): only discovery fails.
	c := good()
	c.Issuer = "http://127.0.0.1:1"
	c.RedirectURL = "http://localhost:8080/callback"
	if _, err := New(t.Context(), c); KindOf(err) != KindDiscovery {
		t.Fatalf("loopback http: %v, want kind %q", err, KindDiscovery)
	}
}

func TestNewDiscoveryFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  func(url string) map[string]any // nil: 404
	}{
		{"no discovery document", nil},
		{"issuer mismatch", func(u string) map[string]any {
			return map[string]any{"issuer": "https://other.example", "authorization_endpoint": u + "/a", "token_endpoint": u + "/t", "jwks_uri": u + "/k"}
		}},
		{"no S256", func(u string) map[string]any {
			return map[string]any{"issuer": u, "authorization_endpoint": u + "/a", "token_endpoint": u + "/t", "jwks_uri": u + "/k",
				"code_challenge_methods_supported": []string{"plain"}}
		}},
		{"no usable client auth", func(u string) map[string]any {
			return map[string]any{"issuer": u, "authorization_endpoint": u + "/a", "token_endpoint": u + "/t", "jwks_uri": u + "/k",
				"token_endpoint_auth_methods_supported": []string{"private_key_jwt"}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srv *httptest.Server
			srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.doc == nil || r.URL.Path != "/.well-known/openid-configuration" {
					http.NotFound(w, r)
					return
				}
				json.NewEncoder(w).Encode(tc.doc(srv.URL))
			}))
			defer srv.Close()
			_, err := New(t.Context(), Config{
				Issuer:        srv.URL,
				ClientID:      testClientID,
				ClientSecret:  func(context.Context) ([]byte, error) { return nil, nil },
				RedirectURL:   "https://claw.example/callback",
				CookieKey:     testKey(),
				DefaultTenant: "main",
			})
			if KindOf(err) != KindDiscovery {
				t.Fatalf("New: %v, want kind %q", err, KindDiscovery)
			}
		})
	}
}
