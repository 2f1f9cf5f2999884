package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func egressConfig(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clawhold.yaml")
	body := `egress:
  policies:
    default:
      profile: openclaw
    local:
      rules:
        - {action: allow, host: 127.0.0.1, cidrs: [127.0.0.0/8]}
        - {action: ask, host: 127.0.0.2, cidrs: [127.0.0.0/8]}
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestEgressCheck(t *testing.T) {
	cfg := egressConfig(t)
	var d struct {
		Action, Reason, Rule string
		Addrs                []string
	}
	out := mustRun(t, "", "--config", cfg, "--json", "egress", "check", "127.0.0.1:8080", "--policy", "local")
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if d.Action != "allow" || len(d.Addrs) != 1 || d.Addrs[0] != "127.0.0.1" {
		t.Errorf("check = %s", out)
	}
	out = mustRun(t, "", "--config", cfg, "egress", "check", "10.0.0.1")
	if !strings.HasPrefix(out, "deny 10.0.0.1:443 (policy default)") || !strings.Contains(out, "add an allow rule to egress.policies.default") {
		t.Errorf("check 10.0.0.1 = %q", out)
	}
	out = mustRun(t, "", "--config", cfg, "egress", "check", "metadata.google.internal:80")
	if !strings.HasPrefix(out, "deny") || !strings.Contains(out, "always blocked") {
		t.Errorf("check metadata = %q", out)
	}
	if _, _, err := run(t, "", "--config", cfg, "egress", "check", "a.com", "--policy", "nope"); err == nil {
		t.Error("check with an unknown policy succeeded")
	}
}

func TestEgressServe(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "upstream ok") }))
	defer up.Close()
	cfg := egressConfig(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "egress.sock")
	eventsFile := filepath.Join(dir, "events.jsonl")

	t.Setenv("CLAWHOLD_CONFIG", "")
	ctx, cancel := context.WithCancel(context.Background())
	var out, errb bytes.Buffer
	cmd := newRoot(strings.NewReader(""), &out, &errb)
	cmd.SetArgs([]string{"--config", cfg, "egress", "serve", "--listen", "unix:" + sock, "--policy", "local", "--tenant", "acme", "--events", eventsFile})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "egress.sock"}),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	get := func(u string) (int, string) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := client.Get(u)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				return resp.StatusCode, string(b)
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %v (stderr %s)", u, err, errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if code, body := get(up.URL + "/"); code != 200 || body != "upstream ok" {
		t.Errorf("allowed: %d %q", code, body)
	}
	if code, body := get("http://10.0.0.1/"); code != 403 || !strings.Contains(body, "egress.policies.local") {
		t.Errorf("denied: %d %q", code, body)
	}
	if code, body := get("http://127.0.0.2:1/"); code != 403 || !strings.Contains(body, "no approver is configured") {
		t.Errorf("ask: %d %q", code, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	data, err := os.ReadFile(eventsFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 3 {
		t.Fatalf("events file has %d lines, want 3:\n%s", len(lines), data)
	}
	var e struct {
		Action, Tenant, Policy, Host, IP, Method string
		Status                                   int
		BytesDown                                int64 `json:"bytes_down"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatal(err)
	}
	if e.Action != "allow" || e.Tenant != "acme" || e.Policy != "local" || e.IP != "127.0.0.1" || e.Method != "GET" || e.Status != 200 || e.BytesDown != 11 {
		t.Errorf("event = %s", lines[0])
	}
	if !strings.Contains(lines[1], `"action":"deny"`) {
		t.Errorf("second event = %s", lines[1])
	}
	if fi, err := os.Stat(eventsFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("events file mode %v, %v", fi.Mode(), err)
	}
}
