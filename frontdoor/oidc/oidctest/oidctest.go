// Package oidctest is a small OpenID provider for tests.
//
// It is a stand-in written for clawhold's tests, because no real identity
// provider can be reached from where they run. It auto-approves one
// configured user and implements just enough, strictly, to exercise a
// relying party:
//
//   - OpenID Connect Discovery 1.0 §3 and §4: the provider metadata at
//     /.well-known/openid-configuration.
//   - RFC 7517: the JSON Web Key Set (one ECDSA P-256 key, ES256) at /jwks.
//   - OpenID Connect Core 1.0 §3.1.2 and RFC 6749 §4.1.1-4.1.2: /authorize
//     (GET or POST) with response_type=code, the openid scope, an exactly
//     registered redirect_uri, state and nonce, answering with code, state
//     and iss (RFC 9207); errors as in RFC 6749 §4.1.2.1.
//   - RFC 7636 §4.3-4.6: PKCE is mandatory and only S256 is accepted.
//   - OpenID Connect Core 1.0 §3.1.3 and §9, RFC 6749 §4.1.3, §2.3.1 and
//     §5: /token with client_secret_basic or client_secret_post, single-use
//     codes that expire after a minute, the redirect_uri and code_verifier
//     checked, errors as JSON.
//   - OpenID Connect Core 1.0 §2 and §3.1.3.6, RFC 7515/7519: a signed ID
//     token with iss, sub, aud, exp, iat, auth_time, nonce, at_hash, email,
//     email_verified, name, groups and any extra claims.
//
// It does not implement userinfo, refresh tokens, consent, prompt/max_age,
// request objects, dynamic registration or logout. Tests reach failure
// paths through MutateIDToken, SignWithUnknownKey and FailAuthorize, and
// inspect what the relying party sent through AuthorizeRequests and
// TokenRequests.
package oidctest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// User is who /authorize approves.
type User struct {
	Subject       string
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string // omitted from the token when nil
	// Claims are merged into the ID token last (a tenant claim, say); they
	// may override the standard ones.
	Claims map[string]any
}

// Config configures a Server.
type Config struct {
	ClientID     string
	ClientSecret string
	// RedirectURIs are the registered callbacks (exact match). More can be
	// added with AddRedirectURI once the relying party's address is known.
	RedirectURIs []string
	User         User
	// TLS serves HTTPS with httptest's certificate; use Client to trust it.
	TLS bool
	// AuthMethod is the one client authentication method advertised and
	// accepted: "client_secret_basic" (default) or "client_secret_post".
	AuthMethod string
	// CodeTTL bounds how long a code can be redeemed (default 1 minute).
	CodeTTL time.Duration
}

// AuthorizeRequest is what the relying party sent to /authorize.
type AuthorizeRequest struct {
	Params url.Values
}

// TokenRequest is what the relying party sent to /token and how it went.
type TokenRequest struct {
	Form url.Values // client_secret (post method) removed
	// AuthMethod is how the client authenticated: client_secret_basic,
	// client_secret_post or "" (none).
	AuthMethod string
	// SecretOK reports whether the client presented the right secret.
	SecretOK bool
	// Error is the RFC 6749 error code returned, or "" on success.
	Error string
}

type grant struct {
	redirectURI string
	nonce       string
	challenge   string
	scope       string
	user        User
	expires     time.Time
	used        bool
}

// Server is a running test provider. Its URL is the issuer.
type Server struct {
	URL string

	srv        *httptest.Server
	key        *ecdsa.PrivateKey
	kid        string
	clientID   string
	secret     string
	authMethod string
	codeTTL    time.Duration

	mu           sync.Mutex
	redirectURIs []string
	user         User
	codes        map[string]*grant
	mutate       func(claims map[string]any)
	rogue        *ecdsa.PrivateKey // signs instead of key when set
	authorizeErr string
	authorizes   []AuthorizeRequest
	tokens       []TokenRequest
}

// New starts a provider on a loopback port. Call Close when done.
func New(cfg Config) (*Server, error) {
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, fmt.Errorf("oidctest: client ID and secret are required")
	}
	switch cfg.AuthMethod {
	case "":
		cfg.AuthMethod = "client_secret_basic"
	case "client_secret_basic", "client_secret_post":
	default:
		return nil, fmt.Errorf("oidctest: unsupported auth method %q", cfg.AuthMethod)
	}
	if cfg.CodeTTL == 0 {
		cfg.CodeTTL = time.Minute
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("oidctest: generating key: %w", err)
	}
	s := &Server{
		key:          key,
		kid:          randString(8),
		clientID:     cfg.ClientID,
		secret:       cfg.ClientSecret,
		authMethod:   cfg.AuthMethod,
		codeTTL:      cfg.CodeTTL,
		redirectURIs: slices.Clone(cfg.RedirectURIs),
		user:         cfg.User,
		codes:        make(map[string]*grant),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("GET /jwks", s.jwks)
	mux.HandleFunc("/authorize", s.authorize)
	mux.HandleFunc("/token", s.token)
	// Unstarted, so URL (read by the handlers) is set before they can run.
	s.srv = httptest.NewUnstartedServer(mux)
	if cfg.TLS {
		s.URL = "https://" + s.srv.Listener.Addr().String()
		s.srv.StartTLS()
	} else {
		s.URL = "http://" + s.srv.Listener.Addr().String()
		s.srv.Start()
	}
	return s, nil
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Client returns an HTTP client that trusts the server (and any other
// httptest TLS server: they share one certificate).
func (s *Server) Client() *http.Client { return s.srv.Client() }

// AddRedirectURI registers another callback.
func (s *Server) AddRedirectURI(uri string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.redirectURIs = append(s.redirectURIs, uri)
}

// SetUser changes who the next /authorize approves.
func (s *Server) SetUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user = u
}

// MutateIDToken installs f to edit the claims of every ID token just before
// signing (a wrong nonce, audience or expiry); nil removes it.
func (s *Server) MutateIDToken(f func(claims map[string]any)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mutate = f
}

// SignWithUnknownKey makes /token sign ID tokens with a fresh key that is
// not in the JWKS (same kid), or restores the real key.
func (s *Server) SignWithUnknownKey(on bool) error {
	var k *ecdsa.PrivateKey
	if on {
		var err error
		if k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return fmt.Errorf("oidctest: generating key: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rogue = k
	return nil
}

// FailAuthorize makes /authorize redirect back with error=code instead of
// a code ("" restores approval), as when the user denies consent.
func (s *Server) FailAuthorize(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authorizeErr = code
}

// AuthorizeRequests returns the /authorize requests seen so far.
func (s *Server) AuthorizeRequests() []AuthorizeRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.authorizes)
}

// TokenRequests returns the /token requests seen so far.
func (s *Server) TokenRequests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tokens)
}

func (s *Server) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                s.URL,
		"authorization_endpoint":                s.URL + "/authorize",
		"token_endpoint":                        s.URL + "/token",
		"jwks_uri":                              s.URL + "/jwks",
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(jose.ES256)},
		"scopes_supported":                      []string{"openid", "email", "profile", "groups"},
		"token_endpoint_auth_methods_supported": []string{s.authMethod},
		"code_challenge_methods_supported":      []string{"S256"},
		"claims_supported": []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce",
			"email", "email_verified", "name", "groups"},
		"authorization_response_iss_parameter_supported": true,
	})
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key:       &s.key.PublicKey,
		KeyID:     s.kid,
		Algorithm: string(jose.ES256),
		Use:       "sig",
	}}})
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	q := r.Form
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authorizes = append(s.authorizes, AuthorizeRequest{Params: cloneValues(q)})

	// RFC 6749 §4.1.2.1: with a bad client or redirect_uri, never redirect.
	redirect := q.Get("redirect_uri")
	if q.Get("client_id") != s.clientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	if !slices.Contains(s.redirectURIs, redirect) {
		http.Error(w, "redirect_uri not registered", http.StatusBadRequest)
		return
	}
	back := func(params url.Values) {
		u, _ := url.Parse(redirect) // registered, so parseable
		v := u.Query()
		for k, vs := range params {
			v[k] = vs
		}
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		v.Set("iss", s.URL)
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	fail := func(code, desc string) {
		back(url.Values{"error": {code}, "error_description": {desc}})
	}
	switch {
	case s.authorizeErr != "":
		fail(s.authorizeErr, "refused by test configuration")
		return
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code")
		return
	case !slices.Contains(strings.Fields(q.Get("scope")), "openid"):
		fail("invalid_scope", "the openid scope is required")
		return
	case q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
		return
	case !isB64(q.Get("code_challenge"), 43):
		fail("invalid_request", "code_challenge must be base64url SHA-256")
		return
	}
	code := randString(32)
	s.codes[code] = &grant{
		redirectURI: redirect,
		nonce:       q.Get("nonce"),
		challenge:   q.Get("code_challenge"),
		scope:       q.Get("scope"),
		user:        s.user,
		expires:     time.Now().Add(s.codeTTL),
	}
	back(url.Values{"code": {code}})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "unparseable form")
		return
	}
	// Only the body counts (RFC 6749 §3.2: parameters in the query of a
	// token request are not to be relied on).
	form := cloneValues(r.PostForm)
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := TokenRequest{Form: form}
	defer func() { s.tokens = append(s.tokens, rec) }()
	fail := func(status int, code, desc string) {
		rec.Error = code
		tokenError(w, status, code, desc)
	}

	// Client authentication (RFC 6749 §2.3.1, OIDC Core §9).
	id, secret, basic := r.BasicAuth()
	if basic {
		rec.AuthMethod = "client_secret_basic"
		// The header carries form-urlencoded values.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else if form.Has("client_secret") {
		rec.AuthMethod = "client_secret_post"
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	form.Del("client_secret")
	rec.SecretOK = id == s.clientID && subtle.ConstantTimeCompare([]byte(secret), []byte(s.secret)) == 1
	if rec.AuthMethod != s.authMethod || !rec.SecretOK {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="oidctest"`)
		}
		fail(http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	if form.Get("grant_type") != "authorization_code" {
		fail(http.StatusBadRequest, "unsupported_grant_type", "only authorization_code")
		return
	}
	g := s.codes[form.Get("code")]
	switch {
	case g == nil:
		fail(http.StatusBadRequest, "invalid_grant", "unknown code")
		return
	case g.used:
		// RFC 6749 §4.1.2: a code is good once.
		fail(http.StatusBadRequest, "invalid_grant", "code already used")
		return
	}
	g.used = true
	switch {
	case time.Now().After(g.expires):
		fail(http.StatusBadRequest, "invalid_grant", "code expired")
		return
	case form.Get("redirect_uri") != g.redirectURI:
		fail(http.StatusBadRequest, "invalid_grant", "redirect_uri differs from the authorization request")
		return
	case !pkceOK(form.Get("code_verifier"), g.challenge):
		fail(http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
		return
	}

	access := randString(32)
	idToken, err := s.idToken(g, access)
	if err != nil {
		fail(http.StatusInternalServerError, "server_error", "signing failed")
		return
	}
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"expires_in":   300,
		"scope":        g.scope,
		"id_token":     idToken,
	})
}

// idToken signs the ID token for g; s.mu is held.
func (s *Server) idToken(g *grant, accessToken string) (string, error) {
	now := time.Now()
	// at_hash: left half of SHA-256 of the access token (OIDC Core §3.1.3.6).
	sum := sha256.Sum256([]byte(accessToken))
	u := g.user
	claims := map[string]any{
		"iss":            s.URL,
		"sub":            u.Subject,
		"aud":            s.clientID,
		"exp":            now.Add(5 * time.Minute).Unix(),
		"iat":            now.Unix(),
		"auth_time":      now.Unix(),
		"at_hash":        base64.RawURLEncoding.EncodeToString(sum[:16]),
		"email":          u.Email,
		"email_verified": u.EmailVerified,
	}
	if g.nonce != "" {
		claims["nonce"] = g.nonce
	}
	if u.Name != "" {
		claims["name"] = u.Name
	}
	if u.Groups != nil {
		claims["groups"] = u.Groups
	}
	maps.Copy(claims, u.Claims)
	if s.mutate != nil {
		s.mutate(claims)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	key := s.key
	if s.rogue != nil {
		key = s.rogue
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// pkceOK checks RFC 7636 §4.6 for S256.
func pkceOK(verifier, challenge string) bool {
	if len(verifier) < 43 || len(verifier) > 128 {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

func isB64(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := base64.RawURLEncoding.Strict().DecodeString(s)
	return err == nil
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func randString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}
