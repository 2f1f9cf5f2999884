package tlsconf

import (
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// securityHeaders are the headers SecurityHeaders sets.
var securityHeaders = [][2]string{
	// Two years; browsers then refuse plain HTTP and certificate
	// click-through for the host and its subdomains.
	{"Strict-Transport-Security", "max-age=63072000; includeSubDomains"},
	{"Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"},
	{"X-Content-Type-Options", "nosniff"},
	// same-origin, not no-referrer: with no-referrer browsers send
	// "Origin: null" on the door's own form posts, and Origin is how the door
	// tells its pages from another site's.
	{"Referrer-Policy", "same-origin"},
	{"X-Frame-Options", "DENY"},
	{"Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"},
	{"Cross-Origin-Opener-Policy", "same-origin"},
}

// SecurityHeaders sets the security headers on every response of next,
// errors included. They are set before next runs and set again when the
// response starts, so a proxied upstream cannot drop or weaken them (its
// own values of these headers are replaced).
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setSecurityHeaders(w.Header())
		next.ServeHTTP(&headerWriter{ResponseWriter: w}, r)
	})
}

func setSecurityHeaders(h http.Header) {
	for _, kv := range securityHeaders {
		h.Set(kv[0], kv[1])
	}
}

// headerWriter re-applies the headers when the response starts. Unwrap
// lets http.ResponseController reach Flush, Hijack and deadlines.
type headerWriter struct {
	http.ResponseWriter
	started bool
}

func (w *headerWriter) WriteHeader(code int) {
	if !w.started && code >= 200 {
		w.started = true
		setSecurityHeaders(w.ResponseWriter.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *headerWriter) Write(b []byte) (int, error) {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *headerWriter) Flush() {
	if !w.started {
		w.WriteHeader(http.StatusOK)
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *headerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// RedirectHandler answers plain-HTTP requests with a 301 to
// https://publicHost[:httpsPort] and the same path and query. The
// request's Host must name publicHost (any port, any case); otherwise it
// gets 400, so a hostile Host header can never choose where the redirect
// goes. The target host is always the configured one.
func RedirectHandler(publicHost string, httpsPort int) http.Handler {
	public := strings.ToLower(strings.Trim(publicHost, "[]"))
	target := public
	if strings.Contains(public, ":") {
		target = "[" + public + "]"
	}
	if httpsPort != 443 && httpsPort != 0 {
		target = net.JoinHostPort(public, strconv.Itoa(httpsPort))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
		if host != public || r.URL.Host != "" && !strings.EqualFold(hostOnly(r.URL.Host), public) {
			http.Error(w, "unknown host", http.StatusBadRequest)
			return
		}
		u := url.URL{Scheme: "https", Host: target, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		if u.Path == "" {
			u.Path = "/"
		}
		http.Redirect(w, r, u.String(), http.StatusMovedPermanently)
	})
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.Trim(h, "[]")
	}
	return strings.Trim(hostport, "[]")
}
