// Package oidc is the front door's OpenID Connect login: the authorization
// code flow with PKCE (S256), state and nonce, against any conforming
// provider found by discovery.
//
// Begin starts a login and keeps everything the callback needs (state,
// nonce, PKCE verifier) in one short-lived, encrypted and authenticated
// cookie, so there is no server-side state per attempt. Finish checks the
// callback, exchanges the code, verifies the ID token and turns its claims
// into an Identity (tenant and role), refusing users the configuration does
// not allow. Sessions are the caller's business.
package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/clawhold/clawhold/store"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Roles, lowest to highest. Names match config and frontdoor/account.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// roleRank orders roles so a user in several mapped groups gets the highest.
func roleRank(r string) int {
	switch r {
	case RoleViewer:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// Config configures one provider. Fields mirror frontdoor.oidc in the YAML
// file, plus the things only the caller has (the secret, the cookie key).
type Config struct {
	// Issuer is the provider's issuer URL; discovery reads
	// Issuer + "/.well-known/openid-configuration". https, or http on a
	// loopback address (tests, local development).
	Issuer   string
	ClientID string
	// ClientSecret fetches the client secret (from the secret store) each
	// time a code is exchanged, so it is never held in a config struct or
	// a long-lived string. The returned slice is not retained.
	ClientSecret func(ctx context.Context) ([]byte, error)
	// RedirectURL is the callback registered with the provider, where the
	// caller serves Finish. https, or http on a loopback address.
	RedirectURL string
	// Scopes requested; "openid" is always added. Default: openid email profile.
	Scopes []string
	// AllowedEmailDomains, if set, admits only emails in these domains
	// (exact, case-insensitive; subdomains are not implied).
	AllowedEmailDomains []string
	// AllowedGroups, if set, admits only members of at least one of them.
	AllowedGroups []string
	// GroupsClaim names the ID token claim listing groups (default "groups").
	GroupsClaim string
	// TenantClaim names a string claim holding the tenant. When empty, or
	// absent from a token, DefaultTenant is used; one of them must be set.
	TenantClaim   string
	DefaultTenant string
	// RoleMap maps a group to viewer, operator or admin; a user in several
	// mapped groups gets the highest. Users with no mapped group get
	// DefaultRole, or are refused if it is empty.
	RoleMap     map[string]string
	DefaultRole string
	// RequireEmailVerified refuses tokens whose email_verified is not true.
	// nil means true: turning it off must be explicit.
	RequireEmailVerified *bool
	// CookieKey is 32 secret bytes; the flow cookie's AES-256-GCM key is
	// derived from it (HKDF-SHA256, bound to Issuer and ClientID). Keep it
	// stable across restarts and replicas or logins in flight fail.
	CookieKey []byte
	// HTTPClient reaches the provider (discovery, JWKS, token endpoint).
	// Default: a client with a 30s timeout.
	HTTPClient *http.Client
	// Now is the clock (default time.Now); for tests.
	Now func() time.Time
}

// Identity is an authenticated, authorized user.
type Identity struct {
	// Issuer and Subject together identify the user; Subject alone is
	// unique only within one issuer.
	Issuer  string
	Subject string
	Email   string
	Name    string
	Groups  []string
	Tenant  string
	Role    string
}

// Provider runs logins against one OpenID provider. It is safe for
// concurrent use.
type Provider struct {
	cfg      Config // with defaults filled in; slices and map are copies
	client   *http.Client
	oauth    oauth2.Config // without the client secret
	verifier *oidc.IDTokenVerifier
	codec    flowCodec
	domains  map[string]bool // lowercase
	verified bool            // RequireEmailVerified resolved
	now      func() time.Time
}

// New validates cfg and discovers the provider's endpoints and keys.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	p, err := newProvider(cfg)
	if err != nil {
		return nil, err
	}
	cfg = p.cfg
	ctx = oidc.ClientContext(ctx, p.client)
	op, err := oidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, newError(KindDiscovery, "", fmt.Errorf("issuer %s: %w", cfg.Issuer, err))
	}
	var meta struct {
		AuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
		ChallengeMethods []string `json:"code_challenge_methods_supported"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, newError(KindDiscovery, "", fmt.Errorf("issuer %s: reading metadata: %w", cfg.Issuer, err))
	}
	// PKCE is not optional here: a provider that advertises challenge
	// methods without S256 would ignore or reject ours.
	if meta.ChallengeMethods != nil && !slices.Contains(meta.ChallengeMethods, "S256") {
		return nil, newError(KindDiscovery, "", fmt.Errorf("issuer %s does not support PKCE S256 (code_challenge_methods_supported: %q)", cfg.Issuer, meta.ChallengeMethods))
	}
	ep := op.Endpoint()
	// Pick the client authentication explicitly (OIDC Core §9): oauth2's
	// auto-detection would retry a refused exchange, spending the code.
	// client_secret_basic is the default when the provider does not say.
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if meta.AuthMethods != nil && !slices.Contains(meta.AuthMethods, "client_secret_basic") {
		if !slices.Contains(meta.AuthMethods, "client_secret_post") {
			return nil, newError(KindDiscovery, "", fmt.Errorf("issuer %s supports neither client_secret_basic nor client_secret_post (token_endpoint_auth_methods_supported: %q)", cfg.Issuer, meta.AuthMethods))
		}
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	p.oauth = oauth2.Config{
		ClientID:    cfg.ClientID,
		Endpoint:    ep,
		RedirectURL: cfg.RedirectURL,
		Scopes:      cfg.Scopes,
	}
	p.verifier = op.VerifierContext(ctx, &oidc.Config{ClientID: cfg.ClientID, Now: p.now})
	return p, nil
}

// newProvider is New without the network: checked configuration, cookie
// codec and authorization rules.
func newProvider(cfg Config) (*Provider, error) {
	cfg, err := normalize(cfg)
	if err != nil {
		return nil, newError(KindConfig, "", err)
	}
	p := &Provider{cfg: cfg, client: cfg.HTTPClient, now: cfg.Now, verified: true}
	if p.client == nil {
		p.client = &http.Client{Timeout: 30 * time.Second}
	}
	if p.now == nil {
		p.now = time.Now
	}
	if cfg.RequireEmailVerified != nil {
		p.verified = *cfg.RequireEmailVerified
	}
	p.domains = make(map[string]bool, len(cfg.AllowedEmailDomains))
	for _, d := range cfg.AllowedEmailDomains {
		p.domains[d] = true
	}
	if p.codec, err = newFlowCodec(cfg.CookieKey, cfg.Issuer, cfg.ClientID); err != nil {
		return nil, newError(KindConfig, "", err)
	}
	p.cfg.CookieKey = nil // only the derived key is needed from here on
	return p, nil
}

// normalize checks cfg and fills in defaults, copying what it changes so the
// caller's slices and map stay theirs.
func normalize(cfg Config) (Config, error) {
	if err := checkURL("issuer", cfg.Issuer); err != nil {
		return cfg, err
	}
	if err := checkURL("redirect URL", cfg.RedirectURL); err != nil {
		return cfg, err
	}
	if cfg.ClientID == "" {
		return cfg, errors.New("client ID is empty")
	}
	if cfg.ClientSecret == nil {
		return cfg, errors.New("no client secret source")
	}
	if len(cfg.CookieKey) != 32 {
		return cfg, fmt.Errorf("cookie key is %d bytes, want 32", len(cfg.CookieKey))
	}
	scopes := []string{oidc.ScopeOpenID}
	if len(cfg.Scopes) == 0 {
		scopes = append(scopes, "email", "profile")
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			return cfg, fmt.Errorf("invalid scope %q", s)
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	cfg.Scopes = scopes
	domains := make([]string, 0, len(cfg.AllowedEmailDomains))
	for _, d := range cfg.AllowedEmailDomains {
		d = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(d), "@"))
		if d == "" || strings.ContainsAny(d, "@ \t") {
			return cfg, fmt.Errorf("invalid allowed email domain %q", d)
		}
		domains = append(domains, d)
	}
	cfg.AllowedEmailDomains = domains
	cfg.AllowedGroups = slices.Clone(cfg.AllowedGroups)
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = "groups"
	}
	if cfg.TenantClaim == "" && cfg.DefaultTenant == "" {
		return cfg, errors.New("neither a tenant claim nor a default tenant is set: every login would be refused")
	}
	if cfg.DefaultTenant != "" {
		if err := store.ValidTenantName(cfg.DefaultTenant); err != nil {
			return cfg, fmt.Errorf("default tenant: %w", err)
		}
	}
	if cfg.DefaultRole != "" && roleRank(cfg.DefaultRole) == 0 {
		return cfg, fmt.Errorf("default role %q: want viewer, operator or admin", cfg.DefaultRole)
	}
	rm := make(map[string]string, len(cfg.RoleMap))
	for g, r := range cfg.RoleMap {
		if roleRank(r) == 0 {
			return cfg, fmt.Errorf("role map: group %q maps to %q: want viewer, operator or admin", g, r)
		}
		rm[g] = r
	}
	cfg.RoleMap = rm
	return cfg, nil
}

// checkURL requires an absolute https URL, or http on loopback: the flow
// cookie is Secure and the code and tokens must not cross a network in
// clear.
func checkURL(what, s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return fmt.Errorf("%s %q: want an absolute https URL", what, s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("%s %q: want https (plain http only on loopback)", what, s)
}

// randToken returns 256 random bits, unpadded base64url (randLen characters).
func randToken() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Begin starts a login: it sets the flow cookie and redirects the browser
// to the provider's authorization endpoint.
func (p *Provider) Begin(w http.ResponseWriter, r *http.Request) {
	f := flow{
		State:    randToken(),
		Nonce:    randToken(),
		Verifier: oauth2.GenerateVerifier(),
		Created:  p.now(),
	}
	http.SetCookie(w, flowCookie(p.codec.seal(f)))
	u := p.oauth.AuthCodeURL(f.State, oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u, http.StatusFound)
}

// Finish completes a login at the redirect URL. It always clears the flow
// cookie: an attempt is good for one callback, successful or not. The
// caller creates the session and redirects on success, or shows
// Error.Reason and offers to start again.
func (p *Provider) Finish(w http.ResponseWriter, r *http.Request) (Identity, error) {
	w.Header().Set("Cache-Control", "no-store")
	c, cerr := r.Cookie(FlowCookieName)
	clearFlowCookie(w)
	if cerr != nil {
		return Identity{}, newError(KindFlowCookie, "no login in progress in this browser (cookie missing or expired): start again", nil)
	}
	f, err := p.codec.open(c.Value, p.now())
	if err != nil {
		return Identity{}, newError(KindFlowCookie, "login attempt invalid or expired: start again", err)
	}

	q := r.URL.Query()
	// RFC 9207: a provider that names itself must be the one we asked
	// (mix-up defence when several providers are configured).
	if q.Has("iss") && q.Get("iss") != p.cfg.Issuer {
		return Identity{}, newError(KindIssuerMismatch, "", nil)
	}
	state := q.Get("state")
	if state == "" {
		return Identity{}, newError(KindState, "state missing from the callback", nil)
	}
	if subtle.ConstantTimeCompare([]byte(state), []byte(f.State)) != 1 {
		return Identity{}, newError(KindState, "state does not match this browser's login attempt", nil)
	}
	if e := q.Get("error"); e != "" {
		return Identity{}, newError(KindProviderError, "identity provider refused the login: "+errorCode(e), nil)
	}
	code := q.Get("code")
	if code == "" {
		return Identity{}, newError(KindMissingCode, "", nil)
	}

	ctx := oidc.ClientContext(r.Context(), p.client)
	tok, err := p.exchange(ctx, code, f.Verifier)
	if err != nil {
		return Identity{}, err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, newError(KindIDToken, "token response has no ID token", nil)
	}
	idt, err := p.verifier.Verify(ctx, raw)
	if err != nil {
		if _, ok := errors.AsType[*oidc.TokenExpiredError](err); ok {
			return Identity{}, newError(KindIDTokenExpired, "", err)
		}
		return Identity{}, newError(KindIDToken, "ID token failed verification", err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return Identity{}, newError(KindNonce, "ID token nonce does not match this login attempt", nil)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return Identity{}, newError(KindIDToken, "ID token at_hash does not match the access token", nil)
		}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, newError(KindClaims, "ID token claims unreadable", nil)
	}
	// OIDC Core §3.1.3.7 items 4-5: with several audiences, azp must be us;
	// if present at all, it must be us.
	azp, _ := claims["azp"].(string)
	if (len(idt.Audience) > 1 || azp != "") && azp != p.cfg.ClientID {
		return Identity{}, newError(KindIDToken, "ID token issued to another client (azp)", nil)
	}
	id, err := p.authorize(idt.Subject, claims)
	if err != nil {
		return Identity{}, err
	}
	id.Issuer = p.cfg.Issuer
	return id, nil
}

// exchange redeems the code at the token endpoint with the PKCE verifier.
// Errors carry neither the secret nor the provider's response body.
func (p *Provider) exchange(ctx context.Context, code, verifier string) (*oauth2.Token, error) {
	secret, err := p.cfg.ClientSecret(ctx)
	if err != nil {
		return nil, newError(KindClientSecret, "", err)
	}
	if len(secret) == 0 {
		return nil, newError(KindClientSecret, "client secret is empty", nil)
	}
	oc := p.oauth
	oc.ClientSecret = string(secret)
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err == nil {
		return tok, nil
	}
	if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		return nil, newError(KindExchange, "identity provider refused the code: "+errorCode(re.ErrorCode),
			fmt.Errorf("token endpoint answered HTTP %d", status))
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return nil, newError(KindExchange, "identity provider unreachable", ue)
	}
	// Anything else is a response oauth2 could not parse; its message may
	// quote the body, so say only that.
	return nil, newError(KindExchange, "token endpoint response unusable", nil)
}

// errorCode reduces a provider-supplied RFC 6749 error code to
// [A-Za-z0-9_.-] and 64 bytes: it comes from a query string or response
// body an attacker may shape, and ends up in logs and on the error page.
func errorCode(s string) string {
	if s == "" {
		return "(no error code)"
	}
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 64; i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}

// authorize applies the email, domain, group, role and tenant rules to a
// verified token's claims.
func (p *Provider) authorize(subject string, claims map[string]any) (Identity, error) {
	if subject == "" {
		return Identity{}, newError(KindClaims, "ID token has no subject", nil)
	}
	id := Identity{Subject: subject}

	email, ok := claims["email"].(string)
	if !ok || email == "" {
		return Identity{}, newError(KindClaims, "ID token has no email (is the email scope granted?)", nil)
	}
	at := strings.LastIndexByte(email, '@')
	if at < 1 || at == len(email)-1 || len(email) > 320 || strings.ContainsFunc(email, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return Identity{}, newError(KindClaims, "ID token email is malformed", nil)
	}
	id.Email = email
	if p.verified && !isTrue(claims["email_verified"]) {
		return Identity{}, newError(KindEmailUnverified, "email "+email+" is not verified by the identity provider", nil)
	}
	if domain := strings.ToLower(email[at+1:]); len(p.domains) > 0 && !p.domains[domain] {
		return Identity{}, newError(KindEmailDomain, "email domain "+domain+" is not allowed", nil)
	}

	id.Name, _ = claims["name"].(string)
	if id.Name == "" {
		id.Name, _ = claims["preferred_username"].(string)
	}

	groups, err := stringList(claims[p.cfg.GroupsClaim])
	if err != nil {
		return Identity{}, newError(KindClaims, "claim "+p.cfg.GroupsClaim+" is not a list of strings", nil)
	}
	id.Groups = groups
	if len(p.cfg.AllowedGroups) > 0 && !slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(p.cfg.AllowedGroups, g) }) {
		return Identity{}, newError(KindGroup, "not a member of an allowed group", nil)
	}

	for _, g := range groups {
		if r := p.cfg.RoleMap[g]; roleRank(r) > roleRank(id.Role) {
			id.Role = r
		}
	}
	if id.Role == "" {
		id.Role = p.cfg.DefaultRole
	}
	if id.Role == "" {
		return Identity{}, newError(KindRole, "no group of this user maps to a role and there is no default role", nil)
	}

	id.Tenant = p.cfg.DefaultTenant
	if p.cfg.TenantClaim != "" {
		switch v := claims[p.cfg.TenantClaim].(type) {
		case nil:
		case string:
			if err := store.ValidTenantName(v); err != nil {
				return Identity{}, newError(KindTenant, "claim "+p.cfg.TenantClaim+" is not a valid tenant name", nil)
			}
			id.Tenant = v
		default:
			return Identity{}, newError(KindTenant, "claim "+p.cfg.TenantClaim+" is not a string", nil)
		}
	}
	if id.Tenant == "" {
		return Identity{}, newError(KindTenant, "ID token has no "+p.cfg.TenantClaim+" claim and there is no default tenant", nil)
	}
	return id, nil
}

// isTrue accepts email_verified as a JSON boolean or, as some providers
// (e.g. AWS Cognito) send it, the string "true".
func isTrue(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

// stringList reads a groups claim: absent, one string, or an array of
// strings.
func stringList(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, errors.New("not a string")
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, errors.New("not a list")
}
