package frontdoor

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/frontdoor/web"
	"github.com/clawhold/clawhold/frontdoor/web/browsertest"
)

// TestBrowserSignInToControlUI drives Debian's headless chromium: open the
// door, get sent to sign in, sign in with a password, enrol TOTP from the
// page's key, confirm with a code, and land in OpenClaw's Control UI
// served through the door by the real gateway.
func TestBrowserSignInToControlUI(t *testing.T) {
	d := newDoor(t)
	d.addUser("carol", account.RoleAdmin)
	ctx := browsertest.Chromium(t, d.srv.Certificate())

	var mu sync.Mutex
	var problems []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			problems = append(problems, e.ExceptionDetails.Text)
		}
	})

	var loginURL, secret string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(d.srv.URL+"/"),
		chromedp.WaitVisible(`input[id="user"]`, chromedp.ByQuery),
		chromedp.Location(&loginURL),
		chromedp.SendKeys(`input[id="user"]`, "carol", chromedp.ByQuery),
		chromedp.SendKeys(`input[id="password"]`, password("carol"), chromedp.ByQuery),
		chromedp.Click(`button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`code.secret`, chromedp.ByQuery),
		chromedp.Text(`code.secret`, &secret, chromedp.ByQuery),
	); err != nil {
		t.Fatalf("sign-in and enrolment page: %v", err)
	}
	if !strings.Contains(loginURL, web.Prefix+"login") {
		t.Errorf("the door did not send the browser to sign in first: %s", loginURL)
	}
	code, err := totp.GenerateCode(strings.TrimSpace(secret), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var codes int
	var title, where string
	if err := chromedp.Run(ctx,
		chromedp.SendKeys(`input[id="code"]`, code, chromedp.ByQuery),
		chromedp.Click(`button[type="submit"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`ul.codes`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelectorAll("ul.codes li").length`, &codes),
		chromedp.Click(`a.button`, chromedp.ByQuery),
		chromedp.WaitReady(`body`, chromedp.ByQuery),
		chromedp.Sleep(2*time.Second), // the SPA's scripts run and it connects its WebSocket
		chromedp.Title(&title),
		chromedp.Location(&where),
	); err != nil {
		t.Fatalf("confirming the code and opening OpenClaw: %v", err)
	}
	if codes != account.RecoveryCodes {
		t.Errorf("%d recovery codes shown, want %d", codes, account.RecoveryCodes)
	}
	if strings.Contains(where, web.Prefix) || !strings.Contains(strings.ToLower(title), "openclaw") {
		t.Errorf("after sign-in the browser is at %s, title %q: want OpenClaw's Control UI", where, title)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Logf("browser console: %s", p)
	}
}
