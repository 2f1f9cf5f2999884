package openclaw

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testInstall returns the OpenClaw install for tests: $CLAWHOLD_OPENCLAW_DIR
// or <repo>/.cache/openclaw. Outside CI a missing install skips the test;
// with CI=true it fails it.
func testInstall(t *testing.T) *Install {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := LocateInstallDir(wd)
	if err == nil {
		var inst *Install
		if inst, err = FindInstall(dir); err == nil {
			return inst
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("OpenClaw %s is required when CI=true: %v", Version, err)
	}
	t.Skipf("OpenClaw %s not available: %v", Version, err) // err says to run scripts/install-openclaw.sh
	return nil
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startTestGateway starts a gateway with cfg in a fresh home, waits until it
// is healthy and registers its Stop as a cleanup.
func startTestGateway(t *testing.T, inst *Install, cfg map[string]any) *Gateway {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	start := time.Now()
	g, err := StartGateway(t.Context(), inst, GatewayOptions{
		Home:   filepath.Join(t.TempDir(), "home"),
		Config: cfg,
		Logger: logger,
	})
	if err != nil {
		t.Fatalf("StartGateway: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := g.Stop(ctx); err != nil {
			t.Errorf("Stop: %v\n%s", err, g.LogTail(30))
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := g.WaitHealthy(ctx); err != nil {
		t.Fatalf("WaitHealthy: %v\ngateway log:\n%s", err, g.LogTail(40))
	}
	t.Logf("gateway on port %d healthy and ready after %v", g.Port(), time.Since(start).Round(10*time.Millisecond))
	return g
}

func doJSON(t *testing.T, method, url, bearer string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

func TestGatewayTokenAuth(t *testing.T) {
	inst := testInstall(t)
	token := "tok-" + randomHex(t, 24)
	g := startTestGateway(t, inst, map[string]any{
		"gateway": map[string]any{
			"bind": "loopback",
			"auth": map[string]any{"mode": "token", "token": token},
		},
	})

	// Files: private home, private config with our defaults.
	for path, want := range map[string]fs.FileMode{g.Home(): 0o700, filepath.Dir(g.ConfigPath()): 0o700, g.ConfigPath(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}
	if !strings.HasPrefix(g.LogPath(), g.Home()+string(filepath.Separator)) {
		t.Errorf("log path %s is not inside home %s", g.LogPath(), g.Home())
	}
	if fi, err := os.Stat(g.LogPath()); err != nil || fi.Size() == 0 {
		t.Errorf("gateway log %s missing or empty (err %v)", g.LogPath(), err)
	}

	code, body := doJSON(t, http.MethodGet, g.URL()+"/healthz", "", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"ok":true`)) {
		t.Errorf("GET /healthz = %d %s, want 200 ok:true", code, body)
	}

	invoke := map[string]any{"tool": "sessions_list"}
	code, body = doJSON(t, http.MethodPost, g.URL()+"/tools/invoke", token, invoke)
	var res struct {
		OK bool `json:"ok"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &res) != nil || !res.OK {
		t.Errorf("POST /tools/invoke with the gateway token = %d %.300s, want 200 ok:true\n%s", code, body, g.LogTail(20))
	}
	for name, bearer := range map[string]string{"wrong token": "tok-" + randomHex(t, 24), "no token": ""} {
		if code, body := doJSON(t, http.MethodPost, g.URL()+"/tools/invoke", bearer, invoke); code != http.StatusUnauthorized {
			t.Errorf("POST /tools/invoke with %s = %d %.300s, want 401", name, code, body)
		}
	}

	// Stop leaves nothing behind: no process in the group, port closed.
	pgid := g.PID()
	if err := syscall.Kill(-pgid, 0); err != nil {
		t.Fatalf("process group %d not alive before Stop: %v", pgid, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := g.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v\n%s", err, g.LogTail(30))
	}
	t.Logf("Stop took %v", time.Since(start).Round(10*time.Millisecond))
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(-%d, 0) after Stop = %v, want ESRCH (process group gone)", pgid, err)
	}
	select {
	case <-g.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(g.Port())), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still accepts connections after Stop", g.Port())
	}
	if err := g.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// fakeUpstream is an OpenAI-compatible model provider that records the
// Authorization header of each chat completion request.
type fakeUpstream struct {
	reply string

	mu    sync.Mutex
	auths []string
}

func (f *fakeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.Error(w, `{"error":{"message":"not implemented by the fake upstream"}}`, http.StatusNotFound)
		return
	}
	f.mu.Lock()
	f.auths = append(f.auths, r.Header.Get("Authorization"))
	f.mu.Unlock()

	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	msg := map[string]any{"role": "assistant", "content": f.reply}
	usage := map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": "stop"}},
			"usage":   usage,
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, chunk := range []map[string]any{
		{"choices": []any{map[string]any{"index": 0, "delta": msg, "finish_reason": nil}}},
		{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": "stop"}}, "usage": usage},
	} {
		chunk["id"], chunk["object"], chunk["created"], chunk["model"] = "chatcmpl-fake", "chat.completion.chunk", 1, req.Model
		b, _ := json.Marshal(chunk)
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

func (f *fakeUpstream) authorizations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auths...)
}

// describeAuth describes an Authorization value without revealing it.
func describeAuth(v string) string {
	if v == "" {
		return "(none)"
	}
	scheme, cred, _ := strings.Cut(v, " ")
	sum := sha256.Sum256([]byte(cred))
	return fmt.Sprintf("%q + %d-byte credential sha256:%x", scheme, len(cred), sum[:6])
}

// TestGatewayUpstreamAPIKey proves that a POST /v1/chat/completions to the
// gateway reaches the models.providers.openai baseUrl with
// "Authorization: Bearer <apiKey>", for a plaintext key and for a key
// resolved through an exec SecretRef provider.
func TestGatewayUpstreamAPIKey(t *testing.T) {
	inst := testInstall(t)

	for _, tc := range []struct {
		name string
		exec bool
	}{
		{"plaintext", false},
		{"exec-secretref", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			upstream := &fakeUpstream{reply: "fake-upstream-reply-" + randomHex(t, 8)}
			srv := httptest.NewServer(upstream)
			defer srv.Close()

			apiKey := "sk-clawhold-test-" + randomHex(t, 16)
			token := "tok-" + randomHex(t, 24)
			cfg := map[string]any{
				"gateway": map[string]any{
					"auth": map[string]any{"mode": "token", "token": token},
					"http": map[string]any{"endpoints": map[string]any{"chatCompletions": map[string]any{"enabled": true}}},
				},
				"models": map[string]any{"providers": map[string]any{"openai": map[string]any{
					"baseUrl": srv.URL + "/v1",
					"api":     "openai-completions",
					"apiKey":  apiKey,
					"models": []any{map[string]any{
						"id": "clawhold-test-model", "name": "clawhold test model", "reasoning": false,
						"input": []string{"text"}, "contextWindow": 128000, "maxTokens": 4096,
					}},
				}}},
				"agents": map[string]any{"defaults": map[string]any{"model": "openai/clawhold-test-model"}},
			}

			var requestLog string
			if tc.exec {
				// The resolver must be an absolute, non-symlink, owner-only
				// file owned by the gateway's uid; its env is empty.
				binDir := filepath.Join(t.TempDir(), "bin")
				if err := os.Mkdir(binDir, 0o700); err != nil {
					t.Fatal(err)
				}
				requestLog = filepath.Join(binDir, "requests.log")
				resolver := filepath.Join(binDir, "resolver")
				script := fmt.Sprintf("#!/bin/sh\nIFS= read -r req || true\nprintf '%%s\\n' \"$req\" >> '%s'\n"+
					"printf '{\"protocolVersion\":1,\"values\":{\"providers/openai/apiKey\":\"%s\"}}\\n'\n", requestLog, apiKey)
				if err := os.WriteFile(resolver, []byte(script), 0o700); err != nil {
					t.Fatal(err)
				}
				cfg["secrets"] = map[string]any{"providers": map[string]any{"clawhold": map[string]any{
					"source": "exec", "command": resolver, "jsonOnly": true, "timeoutMs": 10000,
				}}}
				openai := cfg["models"].(map[string]any)["providers"].(map[string]any)["openai"].(map[string]any)
				openai["apiKey"] = map[string]any{"source": "exec", "provider": "clawhold", "id": "providers/openai/apiKey"}
			}

			g := startTestGateway(t, inst, cfg)

			start := time.Now()
			code, body := doJSON(t, http.MethodPost, g.URL()+"/v1/chat/completions", token, map[string]any{
				"model":    "openclaw",
				"messages": []any{map[string]any{"role": "user", "content": "ping"}},
			})
			t.Logf("chat completion took %v", time.Since(start).Round(10*time.Millisecond))
			var res struct {
				Choices []struct {
					Message struct {
						Content string `json:"content"`
					} `json:"message"`
				} `json:"choices"`
			}
			if code != http.StatusOK || json.Unmarshal(body, &res) != nil || len(res.Choices) == 0 ||
				!strings.Contains(res.Choices[0].Message.Content, upstream.reply) {
				t.Errorf("POST /v1/chat/completions = %d %.500s, want 200 with the fake upstream's reply\n%s", code, body, g.LogTail(30))
			}

			auths := upstream.authorizations()
			if len(auths) == 0 {
				t.Fatalf("fake upstream got no chat completion request\n%s", g.LogTail(30))
			}
			want := "Bearer " + apiKey
			for i, got := range auths {
				if got != want {
					t.Errorf("upstream request %d: Authorization is %s, want \"Bearer\" + the configured %d-byte key", i, describeAuth(got), len(apiKey))
				}
			}

			logData, err := os.ReadFile(g.LogPath())
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(logData, []byte(apiKey)) {
				t.Errorf("gateway log %s contains the API key", g.LogPath())
			}

			if tc.exec {
				b, err := os.ReadFile(requestLog)
				if err != nil {
					t.Fatalf("resolver never ran: %v", err)
				}
				var req struct {
					ProtocolVersion int      `json:"protocolVersion"`
					Provider        string   `json:"provider"`
					IDs             []string `json:"ids"`
				}
				first, _, _ := strings.Cut(string(b), "\n")
				if err := json.Unmarshal([]byte(first), &req); err != nil || req.ProtocolVersion != 1 ||
					req.Provider != "clawhold" || !strings.Contains(strings.Join(req.IDs, ","), "providers/openai/apiKey") {
					t.Errorf("resolver request = %q (err %v), want protocolVersion 1, provider clawhold, ids with providers/openai/apiKey", first, err)
				}
				// An exec-resolved key lives in memory only: nothing under
				// HOME may hold it.
				if leaks := filesContaining(t, g.Home(), apiKey); len(leaks) > 0 {
					t.Errorf("exec-resolved API key persisted under HOME in %v", leaks)
				}
			}
		})
	}
}

// filesContaining lists the regular files under root that contain s.
func filesContaining(t *testing.T, root, s string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // the running gateway removed it
		}
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) {
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scanning %s: %v", root, err)
	}
	return out
}
