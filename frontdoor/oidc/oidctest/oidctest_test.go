package oidctest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

const (
	clientID = "rp"
	secret   = "rp-secret"
	redirect = "https://rp.example/callback"
)

func start(t *testing.T, cfg Config) (*Server, *http.Client) {
	t.Helper()
	cfg.ClientID, cfg.ClientSecret = clientID, secret
	cfg.RedirectURIs = []string{redirect}
	if cfg.User.Subject == "" {
		cfg.User = User{Subject: "u1", Email: "u1@example.com", EmailVerified: true, Groups: []string{"g"}, Claims: map[string]any{"tenant": "acme"}}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	c := s.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return s, c
}

func authParams(verifier string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirect},
		"scope":                 {"openid email"},
		"state":                 {"st"},
		"nonce":                 {"nn"},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
	}
}

// authorize returns the status and, for a redirect, its query.
func authorize(t *testing.T, s *Server, c *http.Client, p url.Values) (int, url.Values) {
	t.Helper()
	resp, err := c.Get(s.URL + "/authorize?" + p.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return resp.StatusCode, nil
	}
	if !strings.HasPrefix(loc.String(), redirect+"?") {
		t.Fatalf("redirected to %s", loc)
	}
	return resp.StatusCode, loc.Query()
}

func TestAuthorize(t *testing.T) {
	s, c := start(t, Config{})
	v := oauth2.GenerateVerifier()
	for _, tc := range []struct {
		name      string
		edit      func(url.Values)
		status    int    // without a redirect
		wantError string // in the redirect
	}{
		{name: "approved", edit: func(url.Values) {}},
		{name: "unknown client", edit: func(p url.Values) { p.Set("client_id", "other") }, status: 400},
		{name: "unregistered redirect", edit: func(p url.Values) { p.Set("redirect_uri", redirect+"/x") }, status: 400},
		{name: "no pkce", edit: func(p url.Values) { p.Del("code_challenge"); p.Del("code_challenge_method") }, wantError: "invalid_request"},
		{name: "plain pkce", edit: func(p url.Values) { p.Set("code_challenge_method", "plain") }, wantError: "invalid_request"},
		{name: "short challenge", edit: func(p url.Values) { p.Set("code_challenge", "abc") }, wantError: "invalid_request"},
		{name: "implicit flow", edit: func(p url.Values) { p.Set("response_type", "id_token") }, wantError: "unsupported_response_type"},
		{name: "no openid scope", edit: func(p url.Values) { p.Set("scope", "email") }, wantError: "invalid_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := authParams(v)
			tc.edit(p)
			status, q := authorize(t, s, c, p)
			if tc.status != 0 {
				if status != tc.status || q != nil {
					t.Fatalf("status %d query %v, want %d and no redirect", status, q, tc.status)
				}
				return
			}
			if status != http.StatusFound || q.Get("state") != "st" || q.Get("iss") != s.URL {
				t.Fatalf("status %d query %v", status, q)
			}
			if q.Get("error") != tc.wantError || (tc.wantError == "") == (q.Get("code") == "") {
				t.Fatalf("query %v, want error %q", q, tc.wantError)
			}
		})
	}
	s.FailAuthorize("access_denied")
	if _, q := authorize(t, s, c, authParams(v)); q.Get("error") != "access_denied" {
		t.Fatalf("FailAuthorize: %v", q)
	}
}

func TestToken(t *testing.T) {
	type tokenResp struct {
		Error   string `json:"error"`
		IDToken string `json:"id_token"`
		Access  string `json:"access_token"`
	}
	exchange := func(t *testing.T, s *Server, c *http.Client, form url.Values, basic bool) (int, tokenResp) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.URL+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic {
			req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr tokenResp
		json.NewDecoder(resp.Body).Decode(&tr)
		return resp.StatusCode, tr
	}
	for _, tc := range []struct {
		name    string
		cfg     Config
		edit    func(url.Values) (basic bool)
		status  int
		wantErr string
	}{
		{name: "ok basic", edit: func(url.Values) bool { return true }, status: 200},
		{name: "ok post", cfg: Config{AuthMethod: "client_secret_post"}, status: 200,
			edit: func(f url.Values) bool { f.Set("client_id", clientID); f.Set("client_secret", secret); return false }},
		{name: "post when basic registered", status: 401, wantErr: "invalid_client",
			edit: func(f url.Values) bool { f.Set("client_id", clientID); f.Set("client_secret", secret); return false }},
		{name: "no client auth", edit: func(url.Values) bool { return false }, status: 401, wantErr: "invalid_client"},
		{name: "wrong secret", status: 401, wantErr: "invalid_client", cfg: Config{AuthMethod: "client_secret_post"},
			edit: func(f url.Values) bool { f.Set("client_id", clientID); f.Set("client_secret", "guess"); return false }},
		{name: "wrong grant type", edit: func(f url.Values) bool { f.Set("grant_type", "password"); return true }, status: 400, wantErr: "unsupported_grant_type"},
		{name: "unknown code", edit: func(f url.Values) bool { f.Set("code", "nope"); return true }, status: 400, wantErr: "invalid_grant"},
		{name: "other redirect_uri", edit: func(f url.Values) bool { f.Set("redirect_uri", "https://rp.example/other"); return true }, status: 400, wantErr: "invalid_grant"},
		{name: "wrong verifier", edit: func(f url.Values) bool { f.Set("code_verifier", oauth2.GenerateVerifier()); return true }, status: 400, wantErr: "invalid_grant"},
		{name: "no verifier", edit: func(f url.Values) bool { f.Del("code_verifier"); return true }, status: 400, wantErr: "invalid_grant"},
		{name: "expired code", cfg: Config{CodeTTL: time.Nanosecond}, edit: func(url.Values) bool { return true }, status: 400, wantErr: "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, c := start(t, tc.cfg)
			v := oauth2.GenerateVerifier()
			_, q := authorize(t, s, c, authParams(v))
			form := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {redirect}, "code_verifier": {v}}
			basic := tc.edit(form)
			status, tr := exchange(t, s, c, form, basic)
			if status != tc.status || tr.Error != tc.wantErr {
				t.Fatalf("status %d error %q, want %d %q", status, tr.Error, tc.status, tc.wantErr)
			}
			if tc.status != 200 {
				return
			}
			// The ID token verifies with the published key and says what it should.
			resp, err := c.Get(s.URL + "/jwks")
			if err != nil {
				t.Fatal(err)
			}
			var set jose.JSONWebKeySet
			json.NewDecoder(resp.Body).Decode(&set)
			resp.Body.Close()
			jws, err := jose.ParseSigned(tr.IDToken, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			keys := set.Key(jws.Signatures[0].Header.KeyID)
			if len(keys) != 1 {
				t.Fatalf("kid not in JWKS")
			}
			payload, err := jws.Verify(keys[0])
			if err != nil {
				t.Fatal(err)
			}
			var claims map[string]any
			json.Unmarshal(payload, &claims)
			for k, want := range map[string]any{"iss": s.URL, "aud": clientID, "sub": "u1", "nonce": "nn", "email": "u1@example.com", "email_verified": true, "tenant": "acme"} {
				if claims[k] != want {
					t.Errorf("claim %s = %v, want %v", k, claims[k], want)
				}
			}
			// Codes are single-use.
			if status, tr := exchange(t, s, c, form, basic); status != 400 || tr.Error != "invalid_grant" {
				t.Errorf("replay: %d %q, want 400 invalid_grant", status, tr.Error)
			}
			if rs := s.TokenRequests(); len(rs) != 2 || rs[0].Form.Has("client_secret") || !rs[0].SecretOK {
				t.Errorf("recorded token requests: %+v", rs)
			}
		})
	}
}
