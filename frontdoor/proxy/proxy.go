// Package proxy is the front door's reverse proxy to one OpenClaw gateway
// in trusted-proxy auth mode (gateway.auth.mode "trusted-proxy"). It serves
// only requests the front door has already authenticated: the identity
// travels in the request context, and the proxy turns it into the headers
// OpenClaw trusts, after removing every header a client could have used to
// claim an identity, an address or scopes of its own.
//
// Reference: OpenClaw 2026.9.6 docs/gateway/trusted-proxy-auth.md, summarised
// in the integration brief §1 (openclaw-integration.md) and verified in
// openclaw-experiments.md §3.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Identity is who the front door authenticated.
type Identity struct {
	User      string // sent to OpenClaw in the user header; matched by allowUsers
	Tenant    string
	Role      string // RoleViewer, RoleOperator or RoleAdmin
	SessionID string // front-door session; live WebSockets are registered under it
}

// Roles the front door knows. Anything else is refused.
const (
	RoleViewer   = "viewer"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

type identityKey struct{}

// WithIdentity returns ctx carrying id for ServeHTTP.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity WithIdentity stored in ctx.
func IdentityFrom(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// ScopesHeader is the header OpenClaw reads operator scopes from in an
// identity-bearing auth mode (trusted-proxy-auth.md#operator-scopes-header).
const ScopesHeader = "X-Openclaw-Scopes"

// ScopesForRole maps a front-door role to the operator scopes sent in
// ScopesHeader on every request. OpenClaw's closed scope set is operator.read,
// .write, .admin, .approvals, .questions, .pairing, .talk, .talk.secrets
// (docs/gateway/protocol/handshake.md#roles-and-scopes; brief §1.3).
//
//	role      scopes
//	viewer    operator.read
//	operator  operator.read, operator.write
//	admin     all eight
//
// The header is always sent, because on HTTP an absent header means the
// full default set including operator.admin, and an empty one means none.
// On a WebSocket upgrade OpenClaw treats it only as a cap: session scopes
// come from device pairing and gateway.auth.identityScopes (brief §1.4).
func ScopesForRole(role string) ([]string, bool) {
	switch role {
	case RoleViewer:
		return []string{"operator.read"}, true
	case RoleOperator:
		return []string{"operator.read", "operator.write"}, true
	case RoleAdmin:
		return []string{
			"operator.read", "operator.write", "operator.admin", "operator.approvals",
			"operator.questions", "operator.pairing", "operator.talk", "operator.talk.secrets",
		}, true
	}
	return nil, false
}

// Defaults for Config's zero values.
const (
	DefaultUserHeader            = "x-forwarded-user"
	DefaultDialTimeout           = 5 * time.Second
	DefaultResponseHeaderTimeout = 5 * time.Minute // a non-streaming agent run answers only when done
	DefaultBodyReadTimeout       = time.Minute
)

// Config configures New.
type Config struct {
	// Upstream is the gateway: "http://127.0.0.1:18789" or
	// "unix:/path/gateway.sock".
	Upstream string

	// Dial, when set, routes each request to the gateway of its identity's
	// tenant (clawhold up: one cell per tenant) and Upstream is unused.
	Dial func(ctx context.Context, tenant string) (net.Conn, error)

	// UserHeader is gateway.auth.trustedProxy.userHeader; default
	// DefaultUserHeader.
	UserHeader string

	// PublicOrigin is the front door's origin as browsers send it, such as
	// "https://door.example:8443". A default port is dropped, so
	// "https://door.example:443" is compared as "https://door.example".
	// OpenClaw's gateway.controlUi.allowedOrigins must list the same value:
	// the Origin header is passed on.
	PublicOrigin string

	// Register, if set, is called for every WebSocket upgrade with the
	// session id and a func that closes the connection on both sides. The
	// returned unregister is called once the connection has ended.
	Register func(sessionID string, closeFn func()) (unregister func())

	// Touch, if set, is called (in its own goroutine, at most every 30 s
	// per socket) while a client sends on a proxied WebSocket: activity
	// that keeps the session from idling out.
	Touch func(sessionID string)

	// Logger receives upstream errors and refused requests; nil means
	// slog.Default().
	Logger *slog.Logger

	// DialTimeout, ResponseHeaderTimeout and BodyReadTimeout (how long a
	// client may take to send a request body) default to the constants
	// above.
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	BodyReadTimeout       time.Duration
}

// Proxy is an http.Handler proxying authenticated requests to one gateway.
type Proxy struct {
	target      *url.URL
	perTenant   bool
	userHeader  string // canonical form
	origin      string // normalised PublicOrigin
	fwdProto    string // X-Forwarded-Proto, from PublicOrigin
	fwdHost     string // X-Forwarded-Host, from PublicOrigin
	register    func(string, func()) func()
	touch       func(string)
	logger      *slog.Logger
	bodyTimeout time.Duration
	transport   *http.Transport
	rp          *httputil.ReverseProxy
}

// New returns a Proxy for cfg.
func New(cfg Config) (*Proxy, error) {
	p := &Proxy{
		register:    cfg.Register,
		touch:       cfg.Touch,
		logger:      cfg.Logger,
		bodyTimeout: cfg.BodyReadTimeout,
	}
	if p.logger == nil {
		p.logger = slog.Default()
	}
	if p.bodyTimeout <= 0 {
		p.bodyTimeout = DefaultBodyReadTimeout
	}
	uh := cfg.UserHeader
	if uh == "" {
		uh = DefaultUserHeader
	}
	if !validHeaderName(uh) || reservedHeaders[normName(uh)] {
		return nil, fmt.Errorf("proxy: invalid user header name %q", uh)
	}
	p.userHeader = http.CanonicalHeaderKey(uh)

	origin, err := normaliseOrigin(cfg.PublicOrigin)
	if err != nil {
		return nil, fmt.Errorf("proxy: PublicOrigin: %w", err)
	}
	p.origin = origin.String()
	p.fwdProto, p.fwdHost = origin.Scheme, origin.Host

	dialTimeout := cfg.DialTimeout
	if dialTimeout <= 0 {
		dialTimeout = DefaultDialTimeout
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                  nil, // never an environment proxy: the gateway is local
		DialContext:            dialer.DialContext,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		MaxIdleConns:           64,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      false, // the gateway speaks HTTP/1.1; WebSocket needs it
		MaxResponseHeaderBytes: 1 << 20,
	}
	if tr.ResponseHeaderTimeout <= 0 {
		tr.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	switch {
	case cfg.Dial != nil:
		// The connection pool is keyed by host: one per tenant, so a
		// connection to one tenant's cell is never reused for another's.
		tr.DialContext = func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			tenant, ok := strings.CutSuffix(host, cellHostSuffix)
			if !ok || tenant == "" {
				return nil, fmt.Errorf("proxy: no cell for %q", addr)
			}
			return cfg.Dial(ctx, tenant)
		}
		p.perTenant = true
	case strings.HasPrefix(cfg.Upstream, "unix:"):
		path := strings.TrimPrefix(cfg.Upstream, "unix:")
		if path == "" || !strings.HasPrefix(path, "/") {
			return nil, fmt.Errorf("proxy: upstream %q: unix socket path must be absolute", cfg.Upstream)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", path)
		}
		// The Host the gateway sees; it listens on loopback behind the socket.
		p.target = &url.URL{Scheme: "http", Host: "127.0.0.1"}
	default:
		u, err := url.Parse(cfg.Upstream)
		if err != nil {
			return nil, fmt.Errorf("proxy: upstream: %w", err)
		}
		if u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("proxy: upstream %q: want http://host:port or unix:/path", cfg.Upstream)
		}
		p.target = &url.URL{Scheme: u.Scheme, Host: u.Host}
	}
	p.transport = tr
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      tr,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       slog.NewLogLogger(p.logger.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// Close closes idle upstream connections. Live WebSockets are closed
// through the funcs given to Register.
func (p *Proxy) Close() { p.transport.CloseIdleConnections() }

// ServeHTTP proxies r to the gateway as the identity in r's context.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, ok := IdentityFrom(r.Context())
	if !ok || !validUser(id.User) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if _, ok := ScopesForRole(id.Role); !ok {
		p.logger.Warn("proxy: refused unknown role", "user", id.User, "role", id.Role)
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	upgrade := isUpgrade(r.Header)
	if upgrade && !isWebSocketUpgrade(r.Header) {
		http.Error(w, "unsupported upgrade", http.StatusBadRequest)
		return
	}
	if !p.originAllowed(r, upgrade) {
		p.logger.Warn("proxy: refused request origin", "user", id.User, "method", r.Method,
			"path", r.URL.Path, "origin", r.Header.Get("Origin"), "upgrade", upgrade)
		http.Error(w, "forbidden: bad origin", http.StatusForbidden)
		return
	}
	if upgrade {
		p.serveUpgrade(w, r, id)
		return
	}
	// A slow body must not hold a connection (and an upstream request)
	// forever; the server has no ReadTimeout because WebSockets live long.
	if r.Body != nil && r.Body != http.NoBody {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(p.bodyTimeout))
		// httputil hands errorHandler its outbound request, whose body
		// wraps this one, so the context carries it.
		b := &clientBody{ReadCloser: r.Body}
		r = r.WithContext(context.WithValue(r.Context(), bodyKey{}, b))
		r.Body = b
	}
	p.rp.ServeHTTP(w, r)
}

// originAllowed is the cross-site request check ("ClawJacked"): a page on
// another origin must not drive the gateway with the user's session, so
// upgrades and every method other than GET and HEAD need an Origin equal to
// PublicOrigin. A present but different Origin is refused on any method.
func (p *Proxy) originAllowed(r *http.Request, upgrade bool) bool {
	origins := r.Header.Values("Origin")
	if len(origins) > 1 {
		return false
	}
	if len(origins) == 1 {
		return origins[0] == p.origin
	}
	if upgrade {
		return false
	}
	return r.Method == http.MethodGet || r.Method == http.MethodHead
}

// cellHostSuffix marks a per-tenant upstream host: "<tenant>.cell".
const cellHostSuffix = ".cell"

// LocalClientAddr stands in for a client on the door's own host in
// X-Forwarded-For. OpenClaw refuses a loopback client address from a
// trusted proxy (proxy_attribution_required), but a browser on the same
// laptop is a real user. 192.0.0.8 is the IPv4 dummy address (RFC 7600),
// reserved for a host with no address of its own to give.
const LocalClientAddr = "192.0.0.8"

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	id, _ := IdentityFrom(pr.In.Context())
	if p.perTenant {
		// A tenant with no valid name gets no host, and so no cell.
		host := ""
		if validTenant(id.Tenant) {
			host = id.Tenant + cellHostSuffix
		}
		pr.SetURL(&url.URL{Scheme: "http", Host: host})
		pr.Out.Host = "127.0.0.1" // what the gateway, on loopback, expects
	} else {
		pr.SetURL(p.target)
	}
	h := pr.Out.Header
	stripClientHeaders(h, p.userHeader)

	// ServeHTTP has checked both; a request reaching here without them
	// would be a bug, so it goes upstream with no identity at all.
	scopes, ok := ScopesForRole(id.Role)
	if !ok || !validUser(id.User) {
		return
	}
	h.Set(p.userHeader, id.User)
	h.Set(ScopesHeader, strings.Join(scopes, ","))
	// Overwrite, never append (brief §1.5): the chain is just the peer.
	if ip := clientIP(pr.In.RemoteAddr); ip != "" {
		if addr := net.ParseIP(ip); addr.IsLoopback() {
			ip = LocalClientAddr
		}
		h.Set("X-Forwarded-For", ip)
	}
	h.Set("X-Forwarded-Proto", p.fwdProto)
	h.Set("X-Forwarded-Host", p.fwdHost)
}

func (p *Proxy) modifyResponse(resp *http.Response) error {
	// The gateway is untrusted: it must not set cookies on the front door's
	// origin (a session fixation or overwrite of the front door's cookie).
	resp.Header.Del("Set-Cookie")
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if t, ok := resp.Request.Context().Value(tracker{}).(*wsConn); ok {
			t.setBackend(resp.Body)
		}
	}
	return nil
}

// clientBody remembers a failed read of the client's request body, so that
// errorHandler can blame the client (slow, truncated) and not the gateway.
type clientBody struct {
	io.ReadCloser

	mu  sync.Mutex // the transport may still be reading when errorHandler runs
	err error      // the first read error other than io.EOF
}

type bodyKey struct{}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *clientBody) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (p *Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	if b, ok := r.Context().Value(bodyKey{}).(*clientBody); ok && b.failed() != nil {
		p.logger.Info("proxy: client request body failed", "method", r.Method, "path", r.URL.Path, "err", b.failed())
		w.Header().Set("Connection", "close")
		http.Error(w, "request body timeout or error", http.StatusRequestTimeout)
		return
	}
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client left or the session was closed; nobody to answer.
		p.logger.Debug("proxy: request canceled", "path", r.URL.Path, "err", err)
	default:
		p.logger.Warn("proxy: upstream error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	// Short and generic: upstream addresses and errors stay in the log.
	http.Error(w, "bad gateway", http.StatusBadGateway)
}

// normaliseOrigin parses s as scheme://host[:port] and drops a default port.
func normaliseOrigin(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q is not an origin (scheme://host[:port])", s)
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (u.Scheme == "https" && port == "443") || (u.Scheme == "http" && port == "80") {
		port = ""
	}
	hp := host
	if strings.Contains(host, ":") {
		hp = "[" + host + "]"
	}
	if port != "" {
		hp = net.JoinHostPort(host, port)
	}
	return &url.URL{Scheme: u.Scheme, Host: hp}, nil
}

// clientIP is the peer address of RemoteAddr, without port or zone.
func clientIP(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	host, _, _ = strings.Cut(host, "%")
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return ""
}

// validTenant accepts what store.ValidTenantName does, which is always a
// DNS label.
func validTenant(t string) bool {
	if t == "" || len(t) > 63 || t[0] < 'a' || t[0] > 'z' {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validUser rejects what cannot be a header value or would be trimmed into
// another user by OpenClaw's allowUsers comparison.
func validUser(u string) bool {
	if u == "" || strings.TrimSpace(u) != u {
		return false
	}
	for _, c := range u {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// reservedHeaders cannot carry the identity: they frame the request, are
// hop-by-hop, or are checked here for something else.
var reservedHeaders = map[string]bool{
	"host": true, "connection": true, "upgrade": true, "content-length": true,
	"transfer-encoding": true, "te": true, "trailer": true, "keep-alive": true,
	"proxy-connection": true, "proxy-authorization": true, "origin": true, "cookie": true,
	"authorization": true, "x-openclaw-scopes": true, "x-forwarded-for": true,
	"x-forwarded-proto": true, "x-forwarded-host": true,
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)
		if !ok {
			return false
		}
	}
	return true
}
