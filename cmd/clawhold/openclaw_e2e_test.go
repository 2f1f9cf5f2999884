package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// buildBinary builds clawhold into a private directory. OpenClaw requires
// its exec provider to be owned by the gateway's uid and not group- or
// world-writable, which a fresh build by the test's own user satisfies.
func buildBinary(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "clawhold")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func runBin(t *testing.T, bin, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // nothing from the test's environment
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("clawhold %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// TestOpenClawResolvesThroughClawhold is the end-to-end proof: a real
// OpenClaw gateway (the pinned version) starts with gateway.auth.token and
// its model API key both as exec SecretRefs served by `clawhold secrets
// provider`; a request with the resolved token succeeds, a wrong one fails,
// the model provider receives exactly the stored key, and clawhold recorded
// the gateway's reads. The model provider is a local stand-in (no real one
// is reachable here); everything else is real.
func TestOpenClawResolvesThroughClawhold(t *testing.T) {
	inst := openclawtest.Install(t)
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	token := "gw-" + openclawtest.RandomHex(t, 24)
	apiKey := "sk-clawhold-e2e-" + openclawtest.RandomHex(t, 16)

	runBin(t, bin, "", "--data-dir", data, "init")
	runBin(t, bin, token, "--data-dir", data, "secrets", "set", "gateway/auth/token")
	runBin(t, bin, apiKey, "--data-dir", data, "secrets", "set", "models/providers/openai/apiKey")
	var pc struct {
		Secrets struct {
			Providers map[string]map[string]any `json:"providers"`
		} `json:"secrets"`
	}
	if err := json.Unmarshal([]byte(runBin(t, bin, "", "--data-dir", data, "secrets", "provider-config")), &pc); err != nil {
		t.Fatal(err)
	}
	if pc.Secrets.Providers["clawhold"]["command"] != bin {
		t.Fatalf("provider-config command = %v, want %s", pc.Secrets.Providers["clawhold"]["command"], bin)
	}

	upstream := &openclawtest.Upstream{Reply: "upstream-reply-" + openclawtest.RandomHex(t, 8)}
	srv := httptest.NewServer(upstream)
	defer srv.Close()
	ref := func(id string) map[string]any {
		return map[string]any{"source": "exec", "provider": "clawhold", "id": id}
	}
	models, agents := openclawtest.OpenAIProvider(srv.URL+"/v1", ref("models/providers/openai/apiKey"))
	g := openclawtest.Start(t, inst, map[string]any{
		"gateway": map[string]any{
			"auth": map[string]any{"mode": "token", "token": ref("gateway/auth/token")},
			"http": map[string]any{"endpoints": map[string]any{"chatCompletions": map[string]any{"enabled": true}}},
		},
		"secrets": map[string]any{"providers": pc.Secrets.Providers},
		"models":  models,
		"agents":  agents,
	})

	if code, body := openclawtest.Do(t, http.MethodPost, g.URL()+"/tools/invoke", token, map[string]any{"tool": "sessions_list"}); code != http.StatusOK {
		t.Fatalf("/tools/invoke with the token clawhold served: %d %.300s\n%s", code, body, g.LogTail(30))
	}
	if code, _ := openclawtest.Do(t, http.MethodPost, g.URL()+"/tools/invoke", token+"x", map[string]any{"tool": "sessions_list"}); code != http.StatusUnauthorized {
		t.Fatalf("/tools/invoke with a wrong token: %d, want 401", code)
	}
	code, reply := openclawtest.Chat(t, g, token, "ping")
	if code != http.StatusOK || !strings.Contains(reply, upstream.Reply) {
		t.Errorf("chat completion: %d, reply has upstream marker: %v\n%s", code, strings.Contains(reply, upstream.Reply), g.LogTail(30))
	}
	auths := upstream.Authorizations()
	if len(auths) == 0 {
		t.Fatalf("the model provider was never called\n%s", g.LogTail(30))
	}
	for i, got := range auths {
		if got != "Bearer "+apiKey {
			t.Errorf("upstream request %d carried %s, not the key stored in clawhold", i, openclawtest.DescribeAuth(got))
		}
	}
	// Resolved values live in the gateway's memory only.
	for _, v := range []string{token, apiKey} {
		if leaks := openclawtest.FilesContaining(t, g.Home(), v); len(leaks) > 0 {
			t.Errorf("a resolved secret was written under the gateway's HOME: %v", leaks)
		}
	}

	// clawhold recorded the gateway's reads, with the provider as actor.
	in, err := instance.Open(context.Background(), instance.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	db, err := in.DB(context.Background(), "default")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := events.List(context.Background(), db, events.Filter{Type: events.SecretRead})
	if err != nil {
		t.Fatal(err)
	}
	read := map[string]bool{}
	for _, ev := range evs {
		if strings.HasPrefix(ev.Actor, "openclaw-provider(") && ev.Detail["found"] == true {
			read[ev.Subject] = true
		}
	}
	if !read["gateway/auth/token"] || !read["models/providers/openai/apiKey"] {
		t.Errorf("provider reads recorded: %v, want both ids", read)
	}
}
