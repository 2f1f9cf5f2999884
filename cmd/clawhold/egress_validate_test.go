package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// TestOpenClawProxyValidate runs OpenClaw's own proxy validator against
// `clawhold egress serve`: a locally served allowed URL must get through,
// and OpenClaw's loopback canary (a per-run server on 127.0.0.1 it expects
// the proxy to block) must not. The policy allows exactly the allowed URL's
// address and port, so everything else on loopback stays blocked.
func TestOpenClawProxyValidate(t *testing.T) {
	inst := openclawtest.Install(t)
	bin := buildBinary(t)
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer allowed.Close()
	ap := netip.MustParseAddrPort(allowed.Listener.Addr().String())

	dir := t.TempDir()
	cfg := filepath.Join(dir, "clawhold.yaml")
	os.WriteFile(cfg, []byte(`egress:
  policies:
    validate:
      rules:
        - action: allow
          host: "127.0.0.1"
          ports: [`+strconv.Itoa(int(ap.Port()))+`]
          cidrs: ["127.0.0.1/32"]
`), 0o600)
	port := freePort(t)
	events := filepath.Join(dir, "events.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := exec.CommandContext(ctx, bin, "--config", cfg, "--data-dir", filepath.Join(dir, "data"),
		"egress", "serve", "--policy", "validate", "--listen", "127.0.0.1:"+strconv.Itoa(port), "--events", events)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Wait()
	defer cancel()
	waitListening(t, "127.0.0.1:"+strconv.Itoa(port))

	home := filepath.Join(dir, "home")
	os.MkdirAll(home, 0o700)
	out, err := inst.Command(ctx, home, "proxy", "validate", "--json",
		"--proxy-url", "http://127.0.0.1:"+strconv.Itoa(port),
		"--allowed-url", allowed.URL+"/ok", "--timeout-ms", "10000").Output()
	var res struct {
		OK     bool `json:"ok"`
		Checks []struct {
			Kind, URL string
			OK        bool
		} `json:"checks"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("openclaw proxy validate: %v / %v\n%s", err, jerr, out)
	}
	kinds := map[string]bool{}
	for _, c := range res.Checks {
		kinds[c.Kind] = c.OK
	}
	if !res.OK || err != nil || !kinds["allowed"] || !kinds["denied"] {
		t.Fatalf("openclaw proxy validate failed (exit %v):\n%s", err, out)
	}
	// The decision log shows both checks.
	f, _ := os.Open(events)
	defer f.Close()
	var allowedSeen, deniedSeen bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			Action, Host string
			Port         uint16
		}
		json.Unmarshal(sc.Bytes(), &e)
		if e.Action == "allow" && e.Port == ap.Port() {
			allowedSeen = true
		}
		if e.Action == "deny" && e.Host == "127.0.0.1" && e.Port != ap.Port() {
			deniedSeen = true
		}
	}
	if !allowedSeen || !deniedSeen {
		b, _ := os.ReadFile(events)
		t.Fatalf("events: allowed seen %v, canary denied %v\n%s", allowedSeen, deniedSeen, strings.TrimSpace(string(b)))
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("nothing listens on %s", addr)
}
