// Package browsertest starts Debian's headless chromium for tests of the
// front door's pages (installed by scripts/chromium.sh).
package browsertest

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium returns a browser tab context that ends with the test. Without
// chromium the test is skipped, or fails when CI=true. The browser trusts
// the given certificates (test servers' self-signed ones) as if a CA had
// issued them — not merely ignoring errors, which would leave the page an
// insecure context where Secure and __Host- cookies do not stick — and
// reaches nothing but the test servers (no background networking).
func Chromium(t testing.TB, trust ...*x509.Certificate) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium not found; scripts/chromium.sh installs it, and CI=true forbids skipping")
		}
		t.Skip("chromium not installed (scripts/chromium.sh)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // as root; the browser only loads this test's loopback pages
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profileDir(t)),
	)
	if len(trust) > 0 {
		var spki []string
		for _, c := range trust {
			sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
			spki = append(spki, base64.StdEncoding.EncodeToString(sum[:]))
		}
		opts = append(opts, chromedp.Flag("ignore-certificate-errors-spki-list", strings.Join(spki, ",")))
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancel3)
	return ctx
}

// profileDir is a fresh browser profile directory, removed after the
// browser: chromium may still be writing to it for a moment after it is
// told to quit, which t.TempDir's cleanup reports as a failure.
func profileDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "clawhold-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 20; i++ {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", dir)
	})
	return dir
}
