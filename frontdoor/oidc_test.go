package frontdoor

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/clawhold/clawhold/frontdoor/oidc"
	"github.com/clawhold/clawhold/frontdoor/oidc/oidctest"
	"github.com/clawhold/clawhold/frontdoor/web"
)

// TestOIDCSignIn: single sign-on through the door against the conforming
// test provider (oidctest, the stand-in for a real IdP, which cannot be
// reached from here) lands the user at OpenClaw (a recording stand-in
// upstream here; the real gateway is behind the door in the other tests)
// as their email, with the role their group maps to.
func TestOIDCSignIn(t *testing.T) {
	var mu sync.Mutex
	var seen []http.Header
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		w.Write([]byte("upstream"))
	}))
	defer up.Close()

	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	defer srv.Close()
	callback := srv.URL + web.Prefix + "oidc/callback"
	prov, err := oidctest.New(oidctest.Config{
		ClientID: "clawhold", ClientSecret: "oidc-test-secret", RedirectURIs: []string{callback},
		User: oidctest.User{Subject: "u-1", Email: "dana@example.com", EmailVerified: true, Name: "Dana", Groups: []string{"claw-ops"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prov.Close()
	key := make([]byte, 32)
	rand.Read(key)
	p, err := oidc.New(context.Background(), oidc.Config{
		Issuer: prov.URL, ClientID: "clawhold",
		ClientSecret: func(context.Context) ([]byte, error) { return []byte("oidc-test-secret"), nil },
		RedirectURL:  callback, DefaultTenant: "default", AllowedEmailDomains: []string{"example.com"},
		RoleMap: map[string]string{"claw-ops": "operator"}, CookieKey: key,
	})
	if err != nil {
		t.Fatal(err)
	}
	d := assemble(t, srv, srv.URL, func(o *Options) { o.Upstream = up.URL; o.OIDC = p; o.OIDCName = "Example SSO" })

	b := d.browser()
	_, page := b.do("GET", web.Prefix+"login", nil, nil)
	if !strings.Contains(page, "Sign in with Example SSO") {
		t.Errorf("no single sign-on button on the sign-in page")
	}
	resp, body := b.do("GET", web.Prefix+"oidc/start", nil, nil)
	if resp.StatusCode != 200 || body != "upstream" {
		t.Fatalf("after single sign-on: %d %q at %s", resp.StatusCode, body, resp.Request.URL)
	}
	mu.Lock()
	defer mu.Unlock()
	h := seen[len(seen)-1]
	if h.Get("X-Forwarded-User") != "dana@example.com" || h.Get("X-Openclaw-Scopes") != "operator.read,operator.write" {
		t.Errorf("OpenClaw saw user %q scopes %q, want dana@example.com as an operator", h.Get("X-Forwarded-User"), h.Get("X-Openclaw-Scopes"))
	}
	if len(prov.TokenRequests()) != 1 {
		t.Errorf("%d token requests, want 1", len(prov.TokenRequests()))
	}
}
