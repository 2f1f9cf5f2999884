package frontdoor

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/frontdoor/session"
)

// BenchmarkDoorRequest is one authenticated keep-alive request through the
// door (TLS, session lookup, proxy) to a trivial upstream, for profiling;
// bench/frontdoor.sh compares the door with nginx and oauth2-proxy.
func BenchmarkDoorRequest(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("0123456789abcdef")) }))
	defer up.Close()
	srv := httptest.NewUnstartedServer(nil)
	srv.EnableHTTP2 = false
	srv.StartTLS()
	defer srv.Close()
	d := assemble(b, srv, srv.URL, func(o *Options) { o.Upstream = up.URL })
	if _, err := d.accounts.Create(b.Context(), account.Meta{Actor: "bench"}, account.NewUser{Name: "bench", Tenant: "default", Role: account.RoleOperator, Password: []byte(password("bench"))}); err != nil {
		b.Fatal(err)
	}
	tok, _, err := d.sessions.Create(b.Context(), session.Login{User: "bench", Tenant: "default", Role: "operator", IP: testClientIP})
	if err != nil {
		b.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 64}}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
			req.AddCookie(&http.Cookie{Name: session.CookieName, Value: tok})
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}
