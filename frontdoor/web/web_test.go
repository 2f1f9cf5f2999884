package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRenderEscapes(t *testing.T) {
	r, err := NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	hostile := `"><script>alert(1)</script>`
	for _, page := range []string{PageLogin, PageMFA, PageEnroll, PageSetup, PageAccount, PageError} {
		rec := httptest.NewRecorder()
		err := r.Render(rec, http.StatusOK, page, Page{Title: "T", Error: hostile, User: hostile, Next: hostile, CSRF: "tok", Tenant: hostile})
		if err != nil {
			t.Fatalf("%s: %v", page, err)
		}
		body := rec.Body.String()
		if strings.Contains(body, "<script>") {
			t.Errorf("%s: unescaped input in the page", page)
		}
		if !strings.Contains(body, `lang="en"`) || !strings.Contains(body, `role="alert"`) {
			t.Errorf("%s: missing lang or the alert role", page)
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q", page, got)
		}
		if strings.Contains(body, "http://") || strings.Contains(body, "https://") {
			t.Errorf("%s: references an external asset", page)
		}
	}
	if err := r.Render(httptest.NewRecorder(), 200, "nope", Page{}); err == nil {
		t.Error("unknown page rendered")
	}
}

func TestFormsCarryCSRF(t *testing.T) {
	r, _ := NewRenderer()
	for _, page := range []string{PageLogin, PageMFA, PageEnroll, PageAccount} {
		rec := httptest.NewRecorder()
		r.Render(rec, 200, page, Page{CSRF: "csrf-token-value"})
		body := rec.Body.String()
		if n, m := strings.Count(body, "<form method=\"post\""), strings.Count(body, `name="csrf" value="csrf-token-value"`); n != m {
			t.Errorf("%s: %d post forms but %d csrf fields", page, n, m)
		}
	}
}

func TestStatic(t *testing.T) {
	h := Static()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", Prefix+"static/door.css", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "--accent") {
		t.Fatalf("door.css: %d", rec.Code)
	}
	for _, p := range []string{Prefix + "static/", Prefix + "static/../web.go", Prefix + "static/nope.css"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code == 200 {
			t.Errorf("%s served", p)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"": "/", "/": "/", "/chat?x=1": "/chat?x=1", "//evil.com": "/", "/\\evil.com": "/",
		"https://evil.com": "/", "javascript:alert(1)": "/", "/ok\r\nSet-Cookie: x": "/", "evil": "/",
	} {
		if got := SafeNext(in); got != want {
			t.Errorf("SafeNext(%q) = %q, want %q", in, got, want)
		}
	}
}
