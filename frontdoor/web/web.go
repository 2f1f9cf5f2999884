// Package web renders the front door's own pages: sign-in, two-step
// verification and enrolment, first-admin setup, the account page and
// errors. Server-rendered HTML with no scripts and no third-party assets,
// so the strict CSP of the door holds for its own pages; everything under
// Prefix is the door's, everything else goes to OpenClaw.
package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is the path under which the door serves its own pages and assets.
// A dot-directory, so no OpenClaw route can collide with it.
const Prefix = "/.clawhold/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Page is what every template may use. Fields a page does not need stay
// empty; html/template escapes every value.
type Page struct {
	Title  string
	Error  string // shown in an alert
	Notice string
	CSRF   string // the form token of the session or login flow
	Next   string // where to go after the form; the door validates it
	User   string
	Tenant string
	Role   string
	MFA    bool
	OIDC   string // provider name for the "Sign in with" button; empty: none
	Token  string // the one-time setup token (setup page)
	Secret string // the TOTP key in base32 (enrolment)
	// RecoveryCodes are shown once, right after enrolment.
	RecoveryCodes []string
}

// Renderer holds one parsed template set per page.
type Renderer struct {
	pages map[string]*template.Template
}

// Pages the renderer knows.
const (
	PageLogin   = "login"
	PageMFA     = "mfa"
	PageEnroll  = "enroll"
	PageSetup   = "setup"
	PageAccount = "account"
	PageError   = "error"
	// PageStarting is shown while the user's cell starts.
	PageStarting = "starting"
)

// NewRenderer parses the embedded templates.
func NewRenderer() (*Renderer, error) {
	r := &Renderer{pages: make(map[string]*template.Template)}
	for _, name := range []string{PageLogin, PageMFA, PageEnroll, PageSetup, PageAccount, PageError, PageStarting} {
		t, err := template.New(name).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parsing page %s: %w", name, err)
		}
		r.pages[name] = t
	}
	return r, nil
}

// Render writes page with status. It renders into a buffer first, so a
// template error never leaves half a page behind.
func (r *Renderer) Render(w http.ResponseWriter, status int, page string, p Page) error {
	t, ok := r.pages[page]
	if !ok {
		return fmt.Errorf("no page %q", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return fmt.Errorf("rendering %s: %w", page, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}

// Static serves the embedded stylesheet under Prefix+"static/".
func Static() http.Handler {
	sub, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix(Prefix+"static/", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") { // no directory listings
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// SafeNext returns next when it is a local path of this site ("/..." but
// not "//host" or "/\host", which browsers treat as another origin), else
// "/": a login form must never become an open redirect.
func SafeNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") ||
		strings.ContainsAny(next, "\r\n\t\\") {
		return "/"
	}
	return next
}
