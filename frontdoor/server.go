// Package frontdoor is clawhold's identity-aware TLS gateway in front of
// OpenClaw: it joins the sign-in pages (web), accounts with a second
// factor (account), sessions (session), single sign-on (oidc) and the
// trusted-proxy reverse proxy (proxy) behind TLS and security headers
// (tlsconf). See docs/frontdoor.md.
//
// Everything under web.Prefix is the door's own; every other path is
// OpenClaw's and is proxied only for a session that has passed both
// factors.
package frontdoor

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/frontdoor/oidc"
	"github.com/clawhold/clawhold/frontdoor/proxy"
	"github.com/clawhold/clawhold/frontdoor/session"
	"github.com/clawhold/clawhold/frontdoor/tlsconf"
	"github.com/clawhold/clawhold/frontdoor/web"
)

// Roles of a session that has passed the password but not yet the second
// factor. The proxy knows no such role, so even a routing mistake could
// not carry one to OpenClaw.
const (
	rolePendingMFA    = "pending:mfa"
	rolePendingEnroll = "pending:enroll"
)

// csrfCookie carries the double-submit token of the sign-in and setup
// forms, which have no session yet.
const csrfCookie = "__Host-clawhold_csrf"

// Options configure a Server.
type Options struct {
	// PublicOrigin is the door's origin as browsers send it
	// (frontdoor.public_url), e.g. "https://claw.example.com".
	PublicOrigin string
	Accounts     *account.Service
	Sessions     *session.Manager
	// Hub closes a session's WebSockets when it ends; Run it for the life
	// of the server.
	Hub *session.Hub
	// Upstream is the OpenClaw gateway (http://127.0.0.1:PORT or
	// unix:/path); UserHeader its trustedProxy.userHeader.
	Upstream   string
	UserHeader string
	// Cells, when set, routes each user to their tenant's cell instead of
	// Upstream (clawhold up).
	Cells Cells
	// OIDC, when set, adds single sign-on; OIDCName labels its button.
	OIDC     *oidc.Provider
	OIDCName string
	// Geo locates client addresses for login events (nil: not recorded).
	Geo    *Locator
	Logger *slog.Logger
}

// Cells starts and reaches the tenants' gateways (package cell).
type Cells interface {
	// Ensure starts tenant's cell unless it runs and reports whether it
	// is ready to serve.
	Ensure(ctx context.Context, tenant string) (bool, error)
	// Dial connects to tenant's gateway.
	Dial(ctx context.Context, tenant string) (net.Conn, error)
	// Enter marks user as talking to tenant's cell until leave is called:
	// the cell attributes tool calls to the users in flight.
	Enter(tenant, user string) (leave func())
}

// Server is the front door's HTTP handler.
type Server struct {
	o      Options
	pages  *web.Renderer
	proxy  *proxy.Proxy
	log    *slog.Logger
	mux    *http.ServeMux
	qrMu   sync.Mutex
	qr     map[string][]byte // session id → enrolment QR code (PNG), until confirmed
	origin string
}

// New builds the server.
func New(o Options) (*Server, error) {
	if o.Accounts == nil || o.Sessions == nil || o.Hub == nil {
		return nil, errors.New("frontdoor: accounts, sessions and hub are required")
	}
	u, err := url.Parse(o.PublicOrigin)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("frontdoor: public origin %q: want https://host[:port]", o.PublicOrigin)
	}
	s := &Server{o: o, log: o.Logger, qr: make(map[string][]byte), origin: canonicalOrigin(u)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.pages, err = web.NewRenderer(); err != nil {
		return nil, err
	}
	pc := proxy.Config{
		Upstream: o.Upstream, UserHeader: o.UserHeader, PublicOrigin: o.PublicOrigin,
		Register: o.Hub.Register, Logger: s.log,
		Touch: func(id string) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := o.Sessions.Touch(ctx, id); err != nil {
				s.log.Warn("frontdoor: session activity", "session", id, "err", err)
			}
		},
	}
	if o.Cells != nil {
		pc.Dial = o.Cells.Dial
	}
	s.proxy, err = proxy.New(pc)
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	p := web.Prefix
	m.Handle(p+"static/", web.Static())
	m.HandleFunc("GET "+p+"login", s.loginPage)
	m.HandleFunc("POST "+p+"login", s.login)
	m.HandleFunc("GET "+p+"mfa", s.mfaPage)
	m.HandleFunc("POST "+p+"mfa", s.mfa)
	m.HandleFunc("GET "+p+"mfa/enroll", s.enrollPage)
	m.HandleFunc("POST "+p+"mfa/enroll", s.enroll)
	m.HandleFunc("GET "+p+"mfa/qr.png", s.qrCode)
	m.HandleFunc("GET "+p+"setup", s.setupPage)
	m.HandleFunc("POST "+p+"setup", s.setup)
	m.HandleFunc("GET "+p+"account", s.accountPage)
	m.HandleFunc("POST "+p+"logout", s.logout)
	m.HandleFunc("GET "+p+"oidc/start", s.oidcStart)
	m.HandleFunc("GET "+p+"oidc/callback", s.oidcCallback)
	m.HandleFunc(p, http.NotFound)
	m.HandleFunc("/", s.forward)
	s.mux = m
	return s, nil
}

// Handler is the door with its security headers on every response.
func (s *Server) Handler() http.Handler { return tlsconf.SecurityHeaders(s.mux) }

// Close releases the proxy's idle upstream connections.
func (s *Server) Close() { s.proxy.Close() }

// canonicalOrigin drops a default port, as browsers do in Origin.
func canonicalOrigin(u *url.URL) string {
	host := u.Host
	if h, port, err := net.SplitHostPort(host); err == nil && port == "443" {
		host = h
	}
	return "https://" + strings.ToLower(host)
}

// sameOrigin reports whether a state-changing request comes from the
// door's own pages: Origin must equal the public origin exactly.
func (s *Server) sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	return o != "" && subtle.ConstantTimeCompare([]byte(o), []byte(s.origin)) == 1
}

func (s *Server) meta(r *http.Request) account.Meta {
	ip := clientIP(r)
	return account.Meta{Actor: "frontdoor", IP: ip, UserAgent: r.UserAgent(), Country: s.o.Geo.Locate(ip)}
}

func clientIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// current returns the request's session and its token, or nil.
func (s *Server) current(r *http.Request) (*session.Session, string) {
	tok, err := session.TokenFromRequest(r)
	if err != nil {
		return nil, ""
	}
	sess, err := s.o.Sessions.Lookup(r.Context(), tok)
	if err != nil {
		if !errors.Is(err, session.ErrNoSession) {
			s.log.Warn("frontdoor: session lookup", "err", err)
		}
		return nil, ""
	}
	return sess, tok
}

func complete(sess *session.Session) bool {
	return sess != nil && !strings.HasPrefix(sess.Role, "pending:")
}

// forward proxies OpenClaw's paths for a complete session; anything else
// is sent to sign in (pages) or refused (API calls and WebSockets).
func (s *Server) forward(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.current(r)
	if !complete(sess) {
		if r.Method == http.MethodGet && r.Header.Get("Upgrade") == "" && strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, web.Prefix+"login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusFound)
			return
		}
		http.Error(w, "sign in first", http.StatusUnauthorized)
		return
	}
	if s.o.Cells != nil {
		if !s.cellReady(w, r, sess) {
			return
		}
		defer s.o.Cells.Enter(sess.Tenant, sess.User)()
	}
	id := proxy.Identity{User: sess.User, Tenant: sess.Tenant, Role: sess.Role, SessionID: sess.ID}
	s.proxy.ServeHTTP(w, r.WithContext(proxy.WithIdentity(r.Context(), id)))
}

// cellReady starts the session's tenant cell if need be. While it starts,
// a page load gets a "starting" page that reloads itself, and anything
// else a 503 with Retry-After — never a proxy error.
func (s *Server) cellReady(w http.ResponseWriter, r *http.Request, sess *session.Session) bool {
	ready, err := s.o.Cells.Ensure(r.Context(), sess.Tenant)
	if err != nil {
		s.log.Warn("frontdoor: tenant cell", "user", sess.User, "tenant", sess.Tenant, "err", err)
		http.Error(w, "your workspace is not available; ask an administrator", http.StatusServiceUnavailable)
		return false
	}
	if ready {
		return true
	}
	w.Header().Set("Retry-After", "2")
	if r.Method == http.MethodGet && r.Header.Get("Upgrade") == "" && strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Refresh", "2")
		s.render(w, http.StatusServiceUnavailable, web.PageStarting, web.Page{
			Title: "Starting OpenClaw", Tenant: sess.Tenant, Next: web.SafeNext(r.URL.RequestURI())})
		return false
	}
	http.Error(w, "starting: retry shortly", http.StatusServiceUnavailable)
	return false
}

// formCSRF returns the double-submit token for the sign-in forms, setting
// its cookie when the browser has none.
func formCSRF(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	b := make([]byte, 32)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: v, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return v
}

func checkFormCSRF(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	got := r.PostFormValue("csrf")
	return err == nil && len(c.Value) == 43 && subtle.ConstantTimeCompare([]byte(c.Value), []byte(got)) == 1
}

func (s *Server) render(w http.ResponseWriter, status int, page string, p web.Page) {
	if err := s.pages.Render(w, status, page, p); err != nil {
		s.log.Error("frontdoor: rendering", "page", page, "err", err)
	}
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	next := web.SafeNext(r.URL.Query().Get("next"))
	if sess, _ := s.current(r); complete(sess) {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	s.render(w, http.StatusOK, web.PageLogin, web.Page{Title: "Sign in", CSRF: formCSRF(w, r), Next: next, OIDC: s.oidcName()})
}

func (s *Server) oidcName() string {
	if s.o.OIDC == nil {
		return ""
	}
	if s.o.OIDCName != "" {
		return s.o.OIDCName
	}
	return "single sign-on"
}

// refuse answers a cross-origin or token-less form post.
func (s *Server) refuse(w http.ResponseWriter) {
	http.Error(w, "request refused: it did not come from this site's own page (Origin or form token mismatch)", http.StatusForbidden)
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !s.sameOrigin(r) || !checkFormCSRF(r) {
		s.refuse(w)
		return
	}
	next := web.SafeNext(r.PostFormValue("next"))
	name := r.PostFormValue("user")
	pw := []byte(r.PostFormValue("password"))
	defer clear(pw)
	page := web.Page{Title: "Sign in", CSRF: formCSRF(w, r), Next: next, User: name, OIDC: s.oidcName()}
	u, err := s.o.Accounts.Authenticate(r.Context(), s.meta(r), name, pw)
	var locked *account.LockedError
	switch {
	case errors.As(err, &locked):
		page.Error = "Too many failed attempts. Try again after " + locked.Until.UTC().Format("15:04 MST") + "."
		s.render(w, http.StatusTooManyRequests, web.PageLogin, page)
		return
	case errors.Is(err, account.ErrInvalidCredentials):
		page.Error = "Wrong user name or password."
		s.render(w, http.StatusUnauthorized, web.PageLogin, page)
		return
	case err != nil:
		s.log.Error("frontdoor: sign-in", "err", err)
		page.Error = "Sign-in failed on the server; try again."
		s.render(w, http.StatusInternalServerError, web.PageLogin, page)
		return
	}
	role, dest := string(u.Role), next
	if s.o.Accounts.MFARequired(u) {
		if u.TOTP {
			role, dest = rolePendingMFA, web.Prefix+"mfa?next="+url.QueryEscape(next)
		} else {
			role, dest = rolePendingEnroll, web.Prefix+"mfa/enroll?next="+url.QueryEscape(next)
		}
	}
	if old, _ := s.current(r); old != nil {
		// A new sign-in ends whatever session this browser had.
		s.o.Sessions.Revoke(r.Context(), old.ID, "signed in again")
	}
	tok, _, err := s.o.Sessions.Create(r.Context(), session.Login{User: u.Name, Tenant: u.Tenant, Role: role,
		IP: clientIP(r), UserAgent: r.UserAgent(), AuthMethod: "password"})
	if err != nil {
		s.log.Error("frontdoor: creating a session", "err", err)
		page.Error = "Sign-in failed on the server; try again."
		s.render(w, http.StatusInternalServerError, web.PageLogin, page)
		return
	}
	if err := session.SetCookie(w, tok); err != nil {
		s.log.Error("frontdoor: session cookie", "err", err)
	}
	http.Redirect(w, r, dest, http.StatusSeeOther)
}

// pending returns the request's session when it waits for role.
func (s *Server) pending(w http.ResponseWriter, r *http.Request, role string) (*session.Session, string, bool) {
	sess, tok := s.current(r)
	if sess == nil || sess.Role != role {
		http.Redirect(w, r, web.Prefix+"login", http.StatusSeeOther)
		return nil, "", false
	}
	return sess, tok, true
}

func (s *Server) mfaPage(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.pending(w, r, rolePendingMFA)
	if !ok {
		return
	}
	s.render(w, http.StatusOK, web.PageMFA, web.Page{Title: "Two-step verification", CSRF: sess.CSRFToken(), Next: web.SafeNext(r.URL.Query().Get("next"))})
}

func (s *Server) mfa(w http.ResponseWriter, r *http.Request) {
	sess, tok, ok := s.pending(w, r, rolePendingMFA)
	if !ok {
		return
	}
	if !s.sameOrigin(r) || !sess.VerifyCSRF(r.PostFormValue("csrf")) {
		s.refuse(w)
		return
	}
	next := web.SafeNext(r.PostFormValue("next"))
	var err error
	if code := strings.TrimSpace(r.PostFormValue("recovery")); code != "" {
		err = s.o.Accounts.UseRecoveryCode(r.Context(), s.meta(r), sess.User, code)
	} else {
		err = s.o.Accounts.VerifyTOTP(r.Context(), s.meta(r), sess.User, strings.TrimSpace(r.PostFormValue("code")))
	}
	page := web.Page{Title: "Two-step verification", CSRF: sess.CSRFToken(), Next: next}
	var locked *account.LockedError
	switch {
	case errors.As(err, &locked):
		s.o.Sessions.Revoke(r.Context(), sess.ID, "locked out")
		session.ClearCookie(w)
		page.Error = "Too many failed attempts. Sign in again after " + locked.Until.UTC().Format("15:04 MST") + "."
		s.render(w, http.StatusTooManyRequests, web.PageError, page)
		return
	case err != nil:
		page.Error = "That code did not work."
		s.render(w, http.StatusUnauthorized, web.PageMFA, page)
		return
	}
	s.finishLogin(w, r, sess, tok, next)
}

// finishLogin promotes a session that passed its second factor and sends
// the browser on.
func (s *Server) finishLogin(w http.ResponseWriter, r *http.Request, sess *session.Session, tok, next string) {
	if s.promote(w, r, sess, tok) {
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

// promote gives a session that passed its second factor the user's real
// role under a new id (so a token seen before the second factor is worth
// nothing) and sets its cookie. It answers the request itself and returns
// false when that fails.
func (s *Server) promote(w http.ResponseWriter, r *http.Request, sess *session.Session, tok string) bool {
	u, err := s.o.Accounts.Get(r.Context(), sess.User)
	if err != nil || u.Disabled {
		s.o.Sessions.Revoke(r.Context(), sess.ID, "user unavailable")
		session.ClearCookie(w)
		http.Redirect(w, r, web.Prefix+"login", http.StatusSeeOther)
		return false
	}
	newTok, _, err := s.o.Sessions.RotateRole(r.Context(), tok, string(u.Role))
	if err != nil {
		s.log.Error("frontdoor: rotating the session", "err", err)
		http.Error(w, "sign-in failed on the server; sign in again", http.StatusInternalServerError)
		return false
	}
	session.SetCookie(w, newTok)
	return true
}

func (s *Server) enrollPage(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := s.pending(w, r, rolePendingEnroll)
	if !ok {
		return
	}
	en, err := s.o.Accounts.EnrollTOTP(r.Context(), s.meta(r), sess.User)
	if err != nil {
		s.log.Error("frontdoor: TOTP enrolment", "err", err)
		http.Error(w, "enrolment failed on the server", http.StatusInternalServerError)
		return
	}
	s.qrMu.Lock()
	if len(s.qr) >= 1024 { // abandoned enrolments: start over rather than grow
		clear(s.qr)
	}
	s.qr[sess.ID] = en.QRCode
	s.qrMu.Unlock()
	s.render(w, http.StatusOK, web.PageEnroll, web.Page{Title: "Turn on two-step sign-in", CSRF: sess.CSRFToken(),
		Next: web.SafeNext(r.URL.Query().Get("next")), Secret: en.Secret})
}

func (s *Server) qrCode(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.current(r)
	if sess == nil || sess.Role != rolePendingEnroll {
		http.NotFound(w, r)
		return
	}
	s.qrMu.Lock()
	png := s.qr[sess.ID]
	s.qrMu.Unlock()
	if png == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(png)
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	sess, tok, ok := s.pending(w, r, rolePendingEnroll)
	if !ok {
		return
	}
	if !s.sameOrigin(r) || !sess.VerifyCSRF(r.PostFormValue("csrf")) {
		s.refuse(w)
		return
	}
	next := web.SafeNext(r.PostFormValue("next"))
	codes, err := s.o.Accounts.ConfirmTOTP(r.Context(), s.meta(r), sess.User, strings.TrimSpace(r.PostFormValue("code")))
	if err != nil {
		s.render(w, http.StatusUnauthorized, web.PageEnroll, web.Page{Title: "Turn on two-step sign-in", CSRF: sess.CSRFToken(),
			Next: next, Error: "That code did not work; scan the code again and enter the newest one."})
		return
	}
	s.qrMu.Lock()
	delete(s.qr, sess.ID)
	s.qrMu.Unlock()
	if !s.promote(w, r, sess, tok) {
		return
	}
	s.render(w, http.StatusOK, web.PageEnroll, web.Page{Title: "Two-step sign-in is on", Next: next, RecoveryCodes: codes})
}

func (s *Server) setupPage(w http.ResponseWriter, r *http.Request) {
	formCSRF(w, r)
	s.render(w, http.StatusOK, web.PageSetup, web.Page{Title: "Set up clawhold", Token: r.URL.Query().Get("token")})
}

func (s *Server) setup(w http.ResponseWriter, r *http.Request) {
	if !s.sameOrigin(r) {
		s.refuse(w)
		return
	}
	token, name := r.PostFormValue("token"), r.PostFormValue("user")
	pw, pw2 := []byte(r.PostFormValue("password")), []byte(r.PostFormValue("password2"))
	defer clear(pw)
	defer clear(pw2)
	page := web.Page{Title: "Set up clawhold", Token: token, User: name}
	if subtle.ConstantTimeCompare(pw, pw2) != 1 {
		page.Error = "The passwords differ."
		s.render(w, http.StatusBadRequest, web.PageSetup, page)
		return
	}
	if _, err := s.o.Accounts.RedeemSetupToken(r.Context(), s.meta(r), token, name, pw); err != nil {
		page.Error = setupError(err)
		s.render(w, http.StatusBadRequest, web.PageSetup, page)
		return
	}
	s.render(w, http.StatusOK, web.PageLogin, web.Page{Title: "Sign in", CSRF: formCSRF(w, r), Next: "/", User: name,
		Notice: "Administrator " + name + " created. Sign in, then set up two-step sign-in."})
}

func setupError(err error) string {
	var locked *account.LockedError
	switch {
	case errors.Is(err, account.ErrWeakPassword):
		return "That password is too weak: use at least 12 characters, not your user name and not a common password."
	case errors.As(err, &locked):
		return "Too many attempts; try again later."
	default:
		return "This setup link is invalid, used or expired, or an administrator exists already. Run `clawhold users setup-link` for a new one."
	}
}

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.current(r)
	if !complete(sess) {
		http.Redirect(w, r, web.Prefix+"login?next="+url.QueryEscape(web.Prefix+"account"), http.StatusSeeOther)
		return
	}
	p := web.Page{Title: "Account", User: sess.User, Tenant: sess.Tenant, Role: sess.Role, CSRF: sess.CSRFToken()}
	if u, err := s.o.Accounts.Get(r.Context(), sess.User); err == nil {
		p.MFA = u.TOTP
	}
	s.render(w, http.StatusOK, web.PageAccount, p)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.current(r)
	if sess != nil {
		if !s.sameOrigin(r) || !sess.VerifyCSRF(r.PostFormValue("csrf")) {
			s.refuse(w)
			return
		}
		// Revoking through the hub's manager closes the session's
		// WebSockets at once.
		if err := s.o.Sessions.Revoke(r.Context(), sess.ID, "logout"); err != nil {
			s.log.Error("frontdoor: logout", "err", err)
		}
	}
	session.ClearCookie(w)
	s.render(w, http.StatusOK, web.PageLogin, web.Page{Title: "Sign in", CSRF: formCSRF(w, r), Next: "/", Notice: "Signed out.", OIDC: s.oidcName()})
}

func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	if s.o.OIDC == nil {
		http.NotFound(w, r)
		return
	}
	s.o.OIDC.Begin(w, r)
}

func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if s.o.OIDC == nil {
		http.NotFound(w, r)
		return
	}
	id, err := s.o.OIDC.Finish(w, r)
	if err != nil {
		s.log.Info("frontdoor: OIDC sign-in refused", "kind", oidc.KindOf(err), "ip", clientIP(r))
		s.render(w, http.StatusForbidden, web.PageError, web.Page{Title: "Single sign-on failed", Error: oidcError(err)})
		return
	}
	tok, _, err := s.o.Sessions.Create(r.Context(), session.Login{User: id.Email, Tenant: id.Tenant, Role: id.Role,
		IP: clientIP(r), UserAgent: r.UserAgent(), AuthMethod: "oidc"})
	if err != nil {
		s.log.Error("frontdoor: creating a session", "err", err)
		http.Error(w, "sign-in failed on the server", http.StatusInternalServerError)
		return
	}
	session.SetCookie(w, tok)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func oidcError(err error) string {
	var e *oidc.Error
	if errors.As(err, &e) && e.Reason != "" {
		return "Your identity provider's answer was refused: " + e.Reason + "."
	}
	return "Your identity provider's answer was refused."
}

// Run keeps the hub running (closing WebSockets of ended sessions) and
// sweeps long-ended sessions hourly, until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	go func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, err := s.o.Sessions.Sweep(ctx, 7*24*time.Hour); err != nil && ctx.Err() == nil {
					s.log.Warn("frontdoor: sweeping sessions", "err", err)
				}
			}
		}
	}()
	return s.o.Hub.Run(ctx)
}
