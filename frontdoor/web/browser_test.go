package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/clawhold/clawhold/frontdoor/web/browsertest"
)

// TestPagesInChromium loads every page in a real browser under the door's
// strict CSP: each renders with its stylesheet, logs no console error or
// CSP violation, and its form is usable by label.
func TestPagesInChromium(t *testing.T) {
	r, err := NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(Prefix+"static/", Static())
	var posted sync.Map
	mux.HandleFunc(Prefix+"login", func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodPost {
			req.ParseForm()
			posted.Store("user", req.PostForm.Get("user"))
			posted.Store("csrf", req.PostForm.Get("csrf"))
			http.Redirect(w, req, Prefix+"account", http.StatusSeeOther)
			return
		}
		r.Render(w, 200, PageLogin, Page{Title: "Sign in", CSRF: "csrf-1", Next: "/"})
	})
	mux.HandleFunc(Prefix+"page/", func(w http.ResponseWriter, req *http.Request) {
		page := strings.TrimPrefix(req.URL.Path, Prefix+"page/")
		r.Render(w, 200, page, Page{Title: page, CSRF: "c", User: "alice", Secret: "JBSWY3DPEHPK3PXP", Token: "t"})
	})
	mux.HandleFunc(Prefix+"account", func(w http.ResponseWriter, req *http.Request) {
		r.Render(w, 200, PageAccount, Page{Title: "Account", User: "alice", Tenant: "acme", Role: "admin", CSRF: "c"})
	})
	mux.HandleFunc(Prefix+"mfa/qr.png", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(onePixelPNG)
	})
	mux.HandleFunc("/bad", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Write([]byte(`<!doctype html><title>bad</title><main class="card">x</main><script>document.title="ran"</script>`))
	})
	// The door's headers (frontdoor/tlsconf sets them in production).
	csp := "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		mux.ServeHTTP(w, req)
	}))
	defer srv.Close()

	ctx := browsertest.Chromium(t)
	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.APITypeError || e.Type == runtime.APITypeWarning {
				mu.Lock()
				problems = append(problems, string(e.Type))
				mu.Unlock()
			}
		case *cdplog.EventEntryAdded: // CSP violations, failed loads
			if e.Entry.Level == cdplog.LevelError || e.Entry.Level == cdplog.LevelWarning {
				mu.Lock()
				problems = append(problems, e.Entry.Text)
				mu.Unlock()
			}
		case *runtime.EventExceptionThrown:
			mu.Lock()
			problems = append(problems, e.ExceptionDetails.Text)
			mu.Unlock()
		}
	})

	// The detector works: an inline script is blocked and reported.
	if err := chromedp.Run(ctx, cdplog.Enable(), chromedp.Navigate(srv.URL+"/bad"), chromedp.WaitVisible("main.card", chromedp.ByQuery)); err != nil {
		t.Fatal(err)
	}
	var title string
	chromedp.Run(ctx, chromedp.Title(&title))
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	if title == "ran" || len(problems) == 0 {
		t.Fatalf("CSP detector: inline script ran=%v, problems=%v", title == "ran", problems)
	}
	problems = nil
	mu.Unlock()

	for _, page := range []string{PageMFA, PageEnroll, PageSetup, PageAccount, PageError} {
		var bg string
		if err := chromedp.Run(ctx,
			chromedp.Navigate(srv.URL+Prefix+"page/"+page),
			chromedp.WaitVisible("main.card", chromedp.ByQuery),
			// The stylesheet applied under CSP: the card has its background.
			chromedp.Evaluate(`getComputedStyle(document.querySelector("main.card")).borderRadius`, &bg),
		); err != nil {
			t.Fatalf("%s: %v", page, err)
		}
		if bg != "12px" {
			t.Errorf("%s: stylesheet not applied (border-radius %q)", page, bg)
		}
	}

	// Sign in by label, as a user would, and land on the account page.
	var heading string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(srv.URL+Prefix+"login"),
		chromedp.SendKeys(`input[id="user"]`, "alice", chromedp.ByQuery),
		chromedp.SendKeys(`input[id="password"]`, "correct horse battery", chromedp.ByQuery),
		chromedp.Click(`button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`dl`, chromedp.ByQuery),
		chromedp.Text("h1", &heading, chromedp.ByQuery),
	); err != nil {
		t.Fatal(err)
	}
	if heading != "Account" {
		t.Errorf("after sign-in: heading %q", heading)
	}
	if u, _ := posted.Load("user"); u != "alice" {
		t.Errorf("posted user %v", u)
	}
	if c, _ := posted.Load("csrf"); c != "csrf-1" {
		t.Errorf("posted csrf %v", c)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("console problems (CSP violations or errors): %v", problems)
	}
}

// onePixelPNG stands in for the enrolment QR code, which the door renders.
var onePixelPNG = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82")
