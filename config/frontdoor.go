package config

import (
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Frontdoor configures the identity-aware TLS gateway in front of OpenClaw
// (clawhold frontdoor serve, and clawhold up).
type Frontdoor struct {
	// Listen is the HTTPS address, host:port (default :8443).
	Listen string `yaml:"listen"`
	// HTTPListen serves only a redirect to HTTPS; "" turns it off.
	HTTPListen string `yaml:"http_listen"`
	// PublicURL is the origin browsers use, https://host[:port]: the only
	// Origin accepted on WebSocket upgrades and state-changing requests.
	PublicURL string `yaml:"public_url"`
	// Upstream is the OpenClaw gateway: http://127.0.0.1:PORT or
	// unix:/path (clawhold up sets one per tenant cell).
	Upstream string `yaml:"upstream"`
	// UserHeader carries the authenticated user to OpenClaw
	// (gateway.auth.trustedProxy.userHeader).
	UserHeader  string            `yaml:"user_header"`
	TLS         FrontdoorTLS      `yaml:"tls"`
	Sessions    FrontdoorSessions `yaml:"sessions"`
	Lockout     FrontdoorLockout  `yaml:"lockout"`
	MFARequired bool              `yaml:"mfa_required"`
	OIDC        FrontdoorOIDC     `yaml:"oidc"`
	// GeoIPCityDB is an optional MaxMind-format City database for login
	// events; without it the embedded country table is used.
	GeoIPCityDB string `yaml:"geoip_city_db"`
}

// FrontdoorTLS selects where the certificate comes from.
type FrontdoorTLS struct {
	// Mode is self-signed (default: generated on first start, fingerprint
	// printed), files (CertFile/KeyFile, reloaded when they change) or acme.
	Mode      string   `yaml:"mode"`
	CertFile  string   `yaml:"cert_file"`
	KeyFile   string   `yaml:"key_file"`
	ACMEHosts []string `yaml:"acme_hosts"`
	ACMEEmail string   `yaml:"acme_email"`
}

// FrontdoorSessions bounds session lifetimes.
type FrontdoorSessions struct {
	IdleTimeout     Duration `yaml:"idle_timeout"`
	AbsoluteTimeout Duration `yaml:"absolute_timeout"`
}

// FrontdoorLockout is the login and MFA failure budget, per IP and per
// account: MaxFailures within Window bans for Ban, doubling up to MaxBan.
type FrontdoorLockout struct {
	MaxFailures int      `yaml:"max_failures"`
	Window      Duration `yaml:"window"`
	Ban         Duration `yaml:"ban"`
	MaxBan      Duration `yaml:"max_ban"`
}

// FrontdoorOIDC configures single sign-on; off while Issuer is empty.
type FrontdoorOIDC struct {
	Issuer   string `yaml:"issuer"`
	ClientID string `yaml:"client_id"`
	// ClientSecret names the secret (system tenant) holding the client
	// secret: never the secret itself.
	ClientSecret        string            `yaml:"client_secret"`
	Scopes              []string          `yaml:"scopes"`
	AllowedEmailDomains []string          `yaml:"allowed_email_domains"`
	AllowedGroups       []string          `yaml:"allowed_groups"`
	GroupsClaim         string            `yaml:"groups_claim"`
	TenantClaim         string            `yaml:"tenant_claim"`
	DefaultTenant       string            `yaml:"default_tenant"`
	RoleMap             map[string]string `yaml:"role_map"`
	DefaultRole         string            `yaml:"default_role"`
}

func defaultFrontdoor() Frontdoor {
	return Frontdoor{
		Listen:      ":8443",
		HTTPListen:  ":8080",
		PublicURL:   "https://localhost:8443",
		Upstream:    "http://127.0.0.1:18789",
		UserHeader:  "x-forwarded-user",
		TLS:         FrontdoorTLS{Mode: "self-signed"},
		Sessions:    FrontdoorSessions{IdleTimeout: Duration(30 * time.Minute), AbsoluteTimeout: Duration(12 * time.Hour)},
		Lockout:     FrontdoorLockout{MaxFailures: 3, Window: Duration(2 * time.Minute), Ban: Duration(5 * time.Minute), MaxBan: Duration(24 * time.Hour)},
		MFARequired: true,
		OIDC:        FrontdoorOIDC{Scopes: []string{"openid", "email", "profile"}, GroupsClaim: "groups", DefaultRole: "viewer"},
	}
}

var roles = []string{"viewer", "operator", "admin"}

func (v *validator) frontdoor(f Frontdoor) {
	v.hostPort("frontdoor.listen", f.Listen, false)
	v.hostPort("frontdoor.http_listen", f.HTTPListen, true)
	if u, err := url.Parse(f.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		v.errorf("frontdoor.public_url", "frontdoor.public_url is %q: give the https origin browsers use, e.g. https://claw.example.com or https://localhost:8443", f.PublicURL)
	}
	switch {
	case strings.HasPrefix(f.Upstream, "unix:"):
		v.absPath("frontdoor.upstream", strings.TrimPrefix(f.Upstream, "unix:"))
	default:
		u, err := url.Parse(f.Upstream)
		if err != nil || u.Scheme != "http" || u.Host == "" {
			v.errorf("frontdoor.upstream", "frontdoor.upstream is %q: http://127.0.0.1:PORT or unix:/path/to/gateway.sock", f.Upstream)
		} else if ap, err := netip.ParseAddrPort(u.Host); err != nil || !ap.Addr().IsLoopback() {
			v.errorf("frontdoor.upstream", "frontdoor.upstream is %q: OpenClaw in trusted-proxy mode must be reachable only by the front door: use a loopback address or a unix socket", f.Upstream)
		}
	}
	if f.UserHeader == "" || strings.ContainsAny(f.UserHeader, " :\t\r\n") {
		v.errorf("frontdoor.user_header", "frontdoor.user_header is %q: a header name such as x-forwarded-user", f.UserHeader)
	}
	t := f.TLS
	v.oneOf("frontdoor.tls.mode", t.Mode, "self-signed", "files", "acme")
	switch t.Mode {
	case "files":
		v.required("frontdoor.tls.mode", "files", "frontdoor.tls.cert_file", t.CertFile, "/etc/clawhold/tls/cert.pem")
		v.required("frontdoor.tls.mode", "files", "frontdoor.tls.key_file", t.KeyFile, "/etc/clawhold/tls/key.pem")
	case "acme":
		if len(t.ACMEHosts) == 0 {
			v.errorf("frontdoor.tls.mode", "frontdoor.tls.mode is acme, which needs frontdoor.tls.acme_hosts: the names to get certificates for, e.g. [claw.example.com]")
		}
	}
	v.absPath("frontdoor.tls.cert_file", t.CertFile)
	v.absPath("frontdoor.tls.key_file", t.KeyFile)
	s := f.Sessions
	if s.IdleTimeout < Duration(time.Minute) || s.AbsoluteTimeout < s.IdleTimeout || s.AbsoluteTimeout > Duration(30*Day) {
		v.errorf("frontdoor.sessions.idle_timeout", "frontdoor.sessions: idle_timeout %s and absolute_timeout %s: need 1m <= idle_timeout <= absolute_timeout <= 30d (defaults 30m and 12h)", s.IdleTimeout, s.AbsoluteTimeout)
	}
	l := f.Lockout
	if l.MaxFailures < 1 || l.Window <= 0 || l.Ban <= 0 || l.MaxBan < l.Ban {
		v.errorf("frontdoor.lockout.max_failures", "frontdoor.lockout: max_failures %d, window %s, ban %s, max_ban %s: all positive and max_ban >= ban (defaults 3, 2m, 5m, 24h)", l.MaxFailures, l.Window, l.Ban, l.MaxBan)
	}
	o := f.OIDC
	if o.Issuer != "" {
		v.httpURL("frontdoor.oidc.issuer", o.Issuer)
		v.required("frontdoor.oidc.issuer", o.Issuer, "frontdoor.oidc.client_id", o.ClientID, "clawhold")
		v.required("frontdoor.oidc.issuer", o.Issuer, "frontdoor.oidc.client_secret", o.ClientSecret, "oidc-client-secret (a secret name: clawhold secrets set --tenant system oidc-client-secret)")
	}
	v.oneOf("frontdoor.oidc.default_role", o.DefaultRole, roles...)
	for g, r := range o.RoleMap {
		v.oneOf("frontdoor.oidc.role_map."+g, r, roles...)
	}
	v.absPath("frontdoor.geoip_city_db", f.GeoIPCityDB)
}

// hostPort checks a listen address host:port ("" allowed when optional).
func (v *validator) hostPort(key, addr string, optional bool) {
	if addr == "" && optional {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
		v.errorf(key, "%s is %q: write host:port or :port, e.g. :8443", key, addr)
	}
}
