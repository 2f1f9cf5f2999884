// Package openclawtest provides what tests need to run a real OpenClaw
// gateway: the pinned install, a started gateway cleaned up with the test,
// and a fake model provider upstream that records the credentials it is sent
// (the only stand-in: no real model provider is reachable from here).
package openclawtest

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
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/openclaw"
)

// Install returns the OpenClaw install for tests: $CLAWHOLD_OPENCLAW_DIR
// or <repo>/.cache/openclaw. Outside CI a missing install skips the test;
// with CI=true it fails it.
func Install(t *testing.T) *openclaw.Install {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := openclaw.LocateInstallDir(wd)
	if err == nil {
		var inst *openclaw.Install
		if inst, err = openclaw.FindInstall(dir); err == nil {
			return inst
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("OpenClaw %s is required when CI=true: %v", openclaw.Version, err)
	}
	t.Skipf("OpenClaw %s not available: %v", openclaw.Version, err) // err says to run scripts/install-openclaw.sh
	return nil
}

func RandomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Start starts a gateway with cfg in a fresh home, waits until it
// is healthy and registers its Stop as a cleanup.
func Start(t *testing.T, inst *openclaw.Install, cfg map[string]any) *openclaw.Gateway {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	start := time.Now()
	g, err := openclaw.StartGateway(t.Context(), inst, openclaw.GatewayOptions{
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

func Do(t *testing.T, method, url, bearer string, body any) (int, []byte) {
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

// Upstream is an OpenAI-compatible model provider that records the
// Authorization header of each chat completion request.
type Upstream struct {
	Reply string

	mu    sync.Mutex
	auths []string
}

func (f *Upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	msg := map[string]any{"role": "assistant", "content": f.Reply}
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

func (f *Upstream) Authorizations() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auths...)
}

// DescribeAuth describes an Authorization value without revealing it.
func DescribeAuth(v string) string {
	if v == "" {
		return "(none)"
	}
	scheme, cred, _ := strings.Cut(v, " ")
	sum := sha256.Sum256([]byte(cred))
	return fmt.Sprintf("%q + %d-byte credential sha256:%x", scheme, len(cred), sum[:6])
}

// FilesContaining lists the regular files under root that contain s.
func FilesContaining(t *testing.T, root, s string) []string {
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

// UpstreamModel is the model id OpenAIProvider declares.
const UpstreamModel = "clawhold-test-model"

// OpenAIProvider returns a models.providers.openai entry that sends chat
// completions to baseURL (an Upstream) with apiKey, which may be a
// plaintext string or a SecretRef object; and the agents.defaults entry
// that routes the gateway's default agent to it. Measured on OpenClaw
// 2026.9.6: a configured baseUrl origin is trusted without
// request.allowPrivateNetwork.
func OpenAIProvider(baseURL string, apiKey any) (models, agents map[string]any) {
	models = map[string]any{"providers": map[string]any{"openai": map[string]any{
		"baseUrl": baseURL,
		"api":     "openai-completions",
		"apiKey":  apiKey,
		"models": []any{map[string]any{
			"id": UpstreamModel, "name": "clawhold test model", "reasoning": false,
			"input": []string{"text"}, "contextWindow": 128000, "maxTokens": 4096,
		}},
	}}}
	agents = map[string]any{"defaults": map[string]any{"model": "openai/" + UpstreamModel}}
	return models, agents
}

// Chat posts one message to the gateway's OpenAI-compatible endpoint
// (gateway.http.endpoints.chatCompletions.enabled must be true) and returns
// the status and the assistant's reply.
func Chat(t *testing.T, g *openclaw.Gateway, bearer, message string) (int, string) {
	t.Helper()
	code, body := Do(t, http.MethodPost, g.URL()+"/v1/chat/completions", bearer, map[string]any{
		"model":    "openclaw",
		"messages": []any{map[string]any{"role": "user", "content": message}},
	})
	var res struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if json.Unmarshal(body, &res) != nil || len(res.Choices) == 0 {
		return code, ""
	}
	return code, res.Choices[0].Message.Content
}
