package main

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawhold/clawhold/frontdoor/tlsconf"
)

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFrontdoorServeCLI runs the built binary: first start prints the
// self-signed certificate's fingerprint and a one-time setup link, the
// link creates the first administrator exactly once, plain HTTP redirects
// to HTTPS, every answer carries the security headers, and SIGTERM stops
// it cleanly. (The door in front of a real gateway is tested in package
// frontdoor.)
func TestFrontdoorServeCLI(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	https, httpPort := freePort(t), freePort(t)
	cfg := filepath.Join(dir, "clawhold.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`frontdoor:
  listen: 127.0.0.1:%d
  http_listen: 127.0.0.1:%d
  public_url: https://127.0.0.1:%d
  upstream: http://127.0.0.1:1
`, https, httpPort, https)), 0o600)
	env := []string{"PATH=/usr/bin:/bin", "CLAWHOLD_DATA_DIR=" + data, "CLAWHOLD_CONFIG=" + cfg}
	initCmd := exec.Command(bin, "init")
	initCmd.Env = env
	if out, err := initCmd.CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "frontdoor", "serve")
	cmd.Env = env
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", https))

	out := stderr.String()
	fp := regexp.MustCompile(`fingerprint ([0-9A-F:]{95})`).FindStringSubmatch(out)
	link := regexp.MustCompile(`(https://\S+/\.clawhold/setup\?token=\S+)`).FindStringSubmatch(out)
	if fp == nil || link == nil {
		t.Fatalf("no fingerprint or setup link on first start:\n%s", out)
	}

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second,
		// The operator compares the printed fingerprint; the test does too.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
			if got := tlsconf.Fingerprint(cs.PeerCertificates[0].Raw); got != fp[1] {
				return fmt.Errorf("certificate fingerprint %s, printed %s", got, fp[1])
			}
			return nil
		}}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(link[1])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, h := range []string{"Strict-Transport-Security", "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("setup page without %s", h)
		}
	}
	u, _ := url.Parse(link[1])
	setup := func() int {
		form := url.Values{"token": {u.Query().Get("token")}, "user": {"root-admin"}, "password": {"a long passphrase 4 tests"}, "password2": {"a long passphrase 4 tests"}}
		req, _ := http.NewRequest("POST", fmt.Sprintf("https://127.0.0.1:%d/.clawhold/setup", https), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", fmt.Sprintf("https://127.0.0.1:%d", https))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := setup(); code != 200 {
		t.Fatalf("setup link: %d\n%s", code, stderr.String())
	}
	if code := setup(); code != 400 {
		t.Errorf("setup link used twice: %d, want 400", code)
	}

	resp, err = client.Get(fmt.Sprintf("http://127.0.0.1:%d/x?y=1", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := fmt.Sprintf("https://127.0.0.1:%d/x?y=1", https); resp.StatusCode != 301 || resp.Header.Get("Location") != want {
		t.Errorf("plain HTTP: %d %q, want 301 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("frontdoor serve after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("frontdoor serve did not stop on SIGTERM")
	}
	if strings.Contains(stderr.String(), "a long passphrase") {
		t.Error("the password reached the log")
	}
}
