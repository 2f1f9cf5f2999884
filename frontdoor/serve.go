package frontdoor

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/frontdoor/oidc"
	"github.com/clawhold/clawhold/frontdoor/proxy"
	"github.com/clawhold/clawhold/frontdoor/session"
	"github.com/clawhold/clawhold/frontdoor/tlsconf"
	"github.com/clawhold/clawhold/frontdoor/web"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// ServeOptions are what `clawhold frontdoor serve` (and later `up`) hand
// to Serve.
type ServeOptions struct {
	Config  config.Frontdoor
	DataDir string
	// DB and Keyring are the system database and keyring.
	DB      *store.DB
	Keyring *keys.Keyring
	// Secret reads a secret of the system tenant (the OIDC client secret).
	Secret func(ctx context.Context, name string) ([]byte, error)
	// Cells, when set, routes users to their tenant's cell (clawhold up);
	// Config.Upstream is then unused.
	Cells Cells
	// Out receives what the operator must see once: the certificate
	// fingerprint and the first-admin setup link.
	Out    io.Writer
	Logger *slog.Logger
}

// Serve runs the front door until ctx ends: HTTPS on Config.Listen, the
// redirect on Config.HTTPListen, and the session hub.
func Serve(ctx context.Context, o ServeOptions) error {
	cfg := o.Config
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return fmt.Errorf("frontdoor.public_url: %w", err)
	}
	acc, err := Accounts(ctx, cfg, o.DB, o.Keyring)
	if err != nil {
		return err
	}
	sm := Sessions(cfg, o.DB, o.Keyring, "frontdoor", log)
	hub := &session.Hub{Manager: sm}
	geo, err := NewLocator(cfg.GeoIPCityDB)
	if err != nil {
		return err
	}
	defer geo.Close()
	opts := Options{PublicOrigin: cfg.PublicURL, Accounts: acc, Sessions: sm, Hub: hub,
		Upstream: cfg.Upstream, UserHeader: cfg.UserHeader, Cells: o.Cells, Geo: geo, Logger: log}
	if oc := cfg.OIDC; oc.Issuer != "" {
		key := make([]byte, 32) // flow cookies live 10 minutes: a per-start key is enough
		rand.Read(key)
		p, err := oidc.New(ctx, oidc.Config{
			Issuer: oc.Issuer, ClientID: oc.ClientID,
			ClientSecret: func(ctx context.Context) ([]byte, error) { return o.Secret(ctx, oc.ClientSecret) },
			RedirectURL:  cfg.PublicURL + web.Prefix + "oidc/callback",
			Scopes:       oc.Scopes, AllowedEmailDomains: oc.AllowedEmailDomains, AllowedGroups: oc.AllowedGroups,
			GroupsClaim: oc.GroupsClaim, TenantClaim: oc.TenantClaim, DefaultTenant: oc.DefaultTenant,
			RoleMap: oc.RoleMap, DefaultRole: oc.DefaultRole, CookieKey: key,
		})
		if err != nil {
			return err
		}
		opts.OIDC, opts.OIDCName = p, pub.Hostname()
	}
	srv, err := New(opts)
	if err != nil {
		return err
	}
	defer srv.Close()

	tlsCfg, redirect, err := tlsSetup(cfg, o.DataDir, pub, o.Out, log)
	if err != nil {
		return err
	}
	if err := firstAdmin(ctx, acc, cfg.PublicURL, o.Out); err != nil {
		return err
	}

	hs := proxy.NewServer(srv.Handler())
	hs.TLSConfig = tlsCfg
	hs.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("frontdoor.listen: %w", err)
	}
	errc := make(chan error, 3)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	var rs *http.Server
	if cfg.HTTPListen != "" {
		_, port, _ := net.SplitHostPort(cfg.Listen)
		if pub.Port() != "" {
			port = pub.Port()
		}
		n, _ := strconv.Atoi(port)
		rs = &http.Server{Addr: cfg.HTTPListen, Handler: redirect(tlsconf.RedirectHandler(pub.Hostname(), n)),
			ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}
		rln, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("frontdoor.http_listen: %w", err)
		}
		go func() { errc <- rs.Serve(rln) }()
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { errc <- srv.Run(runCtx) }()
	upstream := cfg.Upstream
	if o.Cells != nil {
		upstream = "one cell per tenant"
	}
	fmt.Fprintf(o.Out, "clawhold frontdoor: serving %s on %s, OpenClaw at %s\n", cfg.PublicURL, ln.Addr(), upstream)

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	if rs != nil {
		rs.Shutdown(sctx)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("frontdoor: %w", err)
	}
	return nil
}

// Accounts returns the account service cfg describes over the system
// database and keyring: MFA as frontdoor.mfa_required says, failures
// budgeted by frontdoor.lockout.
func Accounts(ctx context.Context, cfg config.Frontdoor, db *store.DB, kr *keys.Keyring) (*account.Service, error) {
	lim := account.NewLimiter(account.LimiterConfig{
		MaxFailures: cfg.Lockout.MaxFailures, Window: time.Duration(cfg.Lockout.Window),
		BanTime: time.Duration(cfg.Lockout.Ban), MaxBanTime: time.Duration(cfg.Lockout.MaxBan),
	})
	return account.New(ctx, db, kr, account.Config{MFAOptional: !cfg.MFARequired, Limiter: lim})
}

// Sessions returns the session manager cfg describes over the system
// database. kr may be nil for callers that only list and revoke (the CLI).
func Sessions(cfg config.Frontdoor, db *store.DB, kr *keys.Keyring, actor string, log *slog.Logger) *session.Manager {
	return &session.Manager{DB: db, Keyring: kr, IdleTimeout: time.Duration(cfg.Sessions.IdleTimeout),
		AbsoluteTimeout: time.Duration(cfg.Sessions.AbsoluteTimeout), Actor: actor, Logger: log}
}

// tlsSetup returns the TLS configuration for cfg.TLS.Mode and a wrapper for
// the plain-HTTP handler (ACME answers its HTTP-01 challenges there).
func tlsSetup(cfg config.Frontdoor, dataDir string, pub *url.URL, out io.Writer, log *slog.Logger) (*tls.Config, func(http.Handler) http.Handler, error) {
	same := func(h http.Handler) http.Handler { return h }
	switch cfg.TLS.Mode {
	case "files":
		fc, err := tlsconf.LoadFileCert(cfg.TLS.CertFile, cfg.TLS.KeyFile, tlsconf.FileCertOptions{Logger: log})
		if err != nil {
			return nil, nil, err
		}
		return tlsconf.NewConfig(fc.GetCertificate), same, nil
	case "acme":
		m, err := tlsconf.ACME(tlsconf.ACMEConfig{Hosts: cfg.TLS.ACMEHosts, CacheDir: filepath.Join(dataDir, "acme"), Email: cfg.TLS.ACMEEmail})
		if err != nil {
			return nil, nil, err
		}
		return tlsconf.ACMETLSConfig(m), m.HTTPHandler, nil
	default: // self-signed
		sc, err := tlsconf.SelfSigned(filepath.Join(dataDir, "frontdoor-tls"), []string{pub.Hostname()})
		if err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(out, "clawhold frontdoor: self-signed certificate for %s, SHA-256 fingerprint %s\n"+
			"  (check it in the browser on first visit; set frontdoor.tls for a real certificate)\n", pub.Hostname(), sc.Fingerprint)
		return tlsconf.NewConfig(sc.GetCertificate), same, nil
	}
}

// firstAdmin prints a one-time setup link when no user exists yet: the
// first administrator is created through it, never with a default
// password.
func firstAdmin(ctx context.Context, acc *account.Service, publicURL string, out io.Writer) error {
	users, err := acc.List(ctx, account.ListOptions{})
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return nil
	}
	tok, exp, err := acc.CreateSetupToken(ctx, account.Meta{Actor: "frontdoor"})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "clawhold frontdoor: no users yet. Open this link once, before %s, to create the first administrator:\n  %s%ssetup?token=%s\n",
		exp.Format(time.RFC3339), publicURL, web.Prefix, url.QueryEscape(tok))
	return nil
}
