package plugin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/cell/cellapi"
	"github.com/clawhold/clawhold/cell/plugin"
	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "toolgate")
	for range 2 { // a second Write replaces the files in place
		if err := plugin.Write(dir); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("dir mode %v, want 0755", fi.Mode().Perm())
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o644 {
			t.Errorf("%s: mode %v, want -rw-r--r--", e.Name(), fi.Mode())
		}
	}
	if got := strings.Join(names, ","); got != "index.js,openclaw.plugin.json,package.json" {
		t.Errorf("files %s (no temp files may be left)", got)
	}
	var manifest struct {
		ID         string `json:"id"`
		Activation struct {
			OnStartup bool `json:"onStartup"`
		} `json:"activation"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "openclaw.plugin.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatal(err)
	}
	if manifest.ID != plugin.ID || !manifest.Activation.OnStartup {
		t.Errorf("manifest id %q onStartup %v", manifest.ID, manifest.Activation.OnStartup)
	}
}

func TestConfig(t *testing.T) {
	b, err := json.Marshal(plugin.Config("/p", "/s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"plugins":{"allow":["clawhold-toolgate"],"entries":{"clawhold-toolgate":{"config":{"socket":"/s.sock"},"enabled":true,` +
		`"hooks":{"timeouts":{"after_tool_call":3000,"before_tool_call":11000}}}},"load":{"paths":["/p"]}}}`
	if string(b) != want {
		t.Errorf("Config =\n%s\nwant\n%s", b, want)
	}
}

// policy is the cellapi.Handler's ToolCall func under test control.
type policy struct {
	mu       sync.Mutex
	decision cellapi.Decision
	err      error
	calls    []cellapi.ToolCall
}

func (p *policy) set(d cellapi.Decision, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.decision, p.err, p.calls = d, err, nil
}

func (p *policy) toolCall(_ context.Context, c cellapi.ToolCall) (cellapi.Decision, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, c)
	return p.decision, p.err
}

// waitCalls polls until a call of phase with toolCallID (any when "") has
// been seen, and returns it.
func (p *policy) waitCall(t *testing.T, phase, toolCallID string) cellapi.ToolCall {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p.mu.Lock()
		for _, c := range p.calls {
			if c.Phase == phase && (toolCallID == "" || c.ToolCallID == toolCallID) {
				p.mu.Unlock()
				return c
			}
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no %s tool call seen within 15 s", phase)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// merge deep-merges src into dst.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

const user = "alice@example.com"

// invoke POSTs body to /tools/invoke as the trusted proxy would.
func invoke(t *testing.T, url string, body any) (int, []byte) {
	t.Helper()
	return post(t, url+"/tools/invoke", body)
}

// post POSTs body to url as the trusted proxy would.
func post(t *testing.T, url string, body any) (int, []byte) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-User", user)
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

type invokeAnswer struct {
	OK    bool `json:"ok"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func decode(t *testing.T, b []byte) invokeAnswer {
	t.Helper()
	var a invokeAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("answer %s: %v", b, err)
	}
	return a
}

// TestGateway runs the plugin in a real OpenClaw gateway behind
// trusted-proxy auth, gating /tools/invoke through a cellapi.Handler.
func TestGateway(t *testing.T) {
	inst := openclawtest.Install(t)
	logger := slog.New(slog.NewTextHandler(t.Output(), nil))

	// A short dir: unix socket paths are limited to 108 bytes.
	sockDir, err := os.MkdirTemp("", "cellsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "cell.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	pol := &policy{decision: cellapi.Decision{Allow: true}}
	srv := &http.Server{Handler: &cellapi.Handler{ToolCall: pol.toolCall, Logger: logger}}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stopServer := sync.OnceFunc(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(stopServer)

	dir := filepath.Join(t.TempDir(), "plugins", plugin.ID)
	if err := plugin.Write(dir); err != nil {
		t.Fatal(err)
	}
	// openclawtest.Start gives the gateway its own HOME, and logging.file
	// defaults to HOME/logs/gateway.log (openclaw.GatewayOptions.Config).
	cfg := map[string]any{
		"gateway": map[string]any{
			"mode":           "local",
			"bind":           "loopback",
			"trustedProxies": []any{"127.0.0.1"},
			"auth": map[string]any{
				"mode":           "trusted-proxy",
				"identityScopes": map[string]any{user: []any{"operator.read", "operator.write"}},
				"trustedProxy": map[string]any{
					"userHeader":    "x-forwarded-user",
					"allowUsers":    []any{user},
					"allowLoopback": true,
				},
			},
		},
	}
	merge(cfg, plugin.Config(dir, sock))

	// /tools/invoke does not run after_tool_call hooks (2026.9.6), so an
	// agent run is needed for them: a fake model asks for sessions_list.
	up := httptest.NewServer(toolCallingModel{})
	t.Cleanup(up.Close)
	models, agents := openclawtest.OpenAIProvider(up.URL+"/v1", "sk-cellapi-test")
	merge(cfg, map[string]any{
		"models": models,
		"agents": agents,
		// Tool Search would hide sessions_list behind tool_call.
		"tools": map[string]any{"toolSearch": false},
		"gateway": map[string]any{"http": map[string]any{"endpoints": map[string]any{
			"chatCompletions": map[string]any{"enabled": true},
		}}},
	})
	g := openclawtest.Start(t, inst, cfg)
	logTail := func() string { return g.LogTail(40) }

	t.Run("allow", func(t *testing.T) {
		pol.set(cellapi.Decision{Allow: true}, nil)
		status, body := invoke(t, g.URL(), map[string]any{"tool": "sessions_list", "args": map[string]any{"limit": 1}})
		if status != http.StatusOK {
			t.Fatalf("status %d: %s\n%s", status, body, logTail())
		}
		before := pol.waitCall(t, cellapi.PhaseBefore, "")
		t.Logf("before: %s", mustJSON(before))
		if before.ToolName != "sessions_list" || string(before.Params) != `{"limit":1}` || before.ToolCallID == "" {
			t.Errorf("before call %s", mustJSON(before))
		}
		// OpenClaw 2026.9.6 runs no after_tool_call hook for /tools/invoke
		// (it calls the tool directly); "agent run" covers the after call.
		// Nor does it put a requester in the hook context.
		if before.User != "" || len(before.Requester) != 0 {
			t.Errorf("unexpected identity in a /tools/invoke hook: %s", mustJSON(before))
		}
	})

	t.Run("agent run", func(t *testing.T) {
		pol.set(cellapi.Decision{Allow: true}, nil)
		// before_tool_call comes before the model's sessions_list runs; the
		// after hook reports its result.
		status, body := post(t, g.URL()+"/v1/chat/completions", map[string]any{
			"model":    "openclaw",
			"messages": []any{map[string]any{"role": "user", "content": "list one session"}},
		})
		if status != http.StatusOK || !strings.Contains(string(body), modelDone) {
			t.Fatalf("chat: status %d: %s\n%s", status, body, logTail())
		}
		before := pol.waitCall(t, cellapi.PhaseBefore, "")
		t.Logf("before: %s", mustJSON(before))
		after := pol.waitCall(t, cellapi.PhaseAfter, before.ToolCallID)
		t.Logf("after: %s", mustJSON(after))
		if before.ToolName != "sessions_list" || string(before.Params) != `{"limit":1}` || before.ToolCallID != "call_cellapi_1" || before.RunID == "" {
			t.Errorf("before call %s", mustJSON(before))
		}
		// The trusted proxy's user does not reach the hook: the requester is
		// {"channel":"webchat","senderIsOwner":true}, with no senderId.
		if before.User != "" && before.User != user {
			t.Errorf("before call names user %q, want %q or none", before.User, user)
		}
		if after.ToolName != "sessions_list" || len(after.Result) == 0 || after.Error != "" {
			t.Errorf("after call %s", mustJSON(after))
		}
	})

	t.Run("deny", func(t *testing.T) {
		const reason = "sessions_list is not for you"
		pol.set(cellapi.Decision{Allow: false, Reason: reason}, nil)
		status, body := invoke(t, g.URL(), map[string]any{"tool": "sessions_list", "args": map[string]any{"limit": 1}})
		a := decode(t, body)
		if status != http.StatusForbidden || a.Error.Type != "tool_call_blocked" || a.Error.Message != reason {
			t.Fatalf("status %d: %s", status, body)
		}
	})

	t.Run("truncated params", func(t *testing.T) {
		pol.set(cellapi.Decision{Allow: false, Reason: "no"}, nil)
		pad := strings.Repeat("x", 100<<10)
		status, body := invoke(t, g.URL(), map[string]any{"tool": "sessions_list", "args": map[string]any{"limit": 1, "pad": pad}})
		if status != http.StatusForbidden {
			t.Fatalf("status %d: %s", status, body)
		}
		c := pol.waitCall(t, cellapi.PhaseBefore, "")
		var m struct {
			Truncated     bool   `json:"clawholdTruncated"`
			OriginalBytes int    `json:"originalBytes"`
			JSONPrefix    string `json:"jsonPrefix"`
		}
		if err := json.Unmarshal(c.Params, &m); err != nil {
			t.Fatal(err)
		}
		if len(c.Params) > 64<<10 || !m.Truncated || m.OriginalBytes < 100<<10 || !strings.HasPrefix(m.JSONPrefix, `{"`) {
			t.Errorf("params: %d bytes, truncated %v, original %d", len(c.Params), m.Truncated, m.OriginalBytes)
		}
	})

	t.Run("policy error", func(t *testing.T) {
		pol.set(cellapi.Decision{Allow: true}, errors.New("store down"))
		status, body := invoke(t, g.URL(), map[string]any{"tool": "sessions_list", "args": map[string]any{"limit": 1}})
		a := decode(t, body)
		if status != http.StatusForbidden || a.Error.Type != "tool_call_blocked" || strings.Contains(a.Error.Message, "store down") {
			t.Fatalf("status %d: %s", status, body)
		}
		t.Logf("block reason: %s", a.Error.Message)
	})

	// Last: it takes the handler away.
	t.Run("socket gone", func(t *testing.T) {
		stopServer()
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("socket still present after Close: %v", err)
		}
		status, body := invoke(t, g.URL(), map[string]any{"tool": "sessions_list", "args": map[string]any{"limit": 1}})
		a := decode(t, body)
		if status != http.StatusForbidden || a.Error.Type != "tool_call_blocked" {
			t.Fatalf("status %d: %s", status, body)
		}
		t.Logf("block reason: %s", a.Error.Message)
	})
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// modelDone is the fake model's final answer.
const modelDone = "cellapi-test-done"

// toolCallingModel is an OpenAI-compatible chat completions upstream that
// asks for sessions_list {"limit":1} until the conversation has a tool
// result, then answers modelDone.
type toolCallingModel struct{}

func (toolCallingModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, r)
		return
	}
	var req struct {
		Model    string `json:"model"`
		Stream   bool   `json:"stream"`
		Messages []struct {
			Role string `json:"role"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	haveResult := false
	for _, m := range req.Messages {
		haveResult = haveResult || m.Role == "tool"
	}
	msg := map[string]any{"role": "assistant", "content": modelDone}
	finish := "stop"
	if !haveResult {
		finish = "tool_calls"
		msg = map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
			"index": 0, "id": "call_cellapi_1", "type": "function",
			"function": map[string]any{"name": "sessions_list", "arguments": `{"limit":1}`},
		}}}
	}
	usage := map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
	head := map[string]any{"id": "chatcmpl-cellapi", "created": 1, "model": req.Model}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		out := map[string]any{"object": "chat.completion", "usage": usage,
			"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}}}
		maps.Copy(out, head)
		json.NewEncoder(w).Encode(out)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, chunk := range []map[string]any{
		{"choices": []any{map[string]any{"index": 0, "delta": msg, "finish_reason": nil}}},
		{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": finish}}, "usage": usage},
	} {
		chunk["object"] = "chat.completion.chunk"
		maps.Copy(chunk, head)
		b, _ := json.Marshal(chunk)
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}
