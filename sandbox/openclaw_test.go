package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// TestOpenClawGateway runs the real pinned gateway under the built-in
// openclaw profile. It must answer /readyz through the unix socket
// clawhold owns (nothing listens on a host port), and its outbound traffic
// must reach only the egress proxy: the model call (to a local stand-in
// provider, the one stand-in here) is allowed there by the rule naming
// it, everything else it tries is denied there, and each decision names
// this sandbox.
func TestOpenClawGateway(t *testing.T) {
	needRoot(t)
	inst := openclawtest.Install(t)
	up := &openclawtest.Upstream{Reply: "sandbox-e2e-" + openclawtest.RandomHex(t, 6)}
	us := httptest.NewServer(up)
	defer us.Close()
	upPort := netip.MustParseAddrPort(us.Listener.Addr().String()).Port()

	var mu sync.Mutex
	var decisions []egress.Event
	proxy, err := egress.New(egress.Config{
		Policies: map[string]egress.Policy{"cell": {Rules: []egress.Rule{{
			Action: egress.Allow, Host: "127.0.0.1", Ports: []uint16{upPort},
			CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		}}}},
		Resolver: staticResolver{},
		Events:   func(e egress.Event) { mu.Lock(); decisions = append(decisions, e); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	egressSock := filepath.Join(dir, "egress.sock")
	ln, err := egress.Listen(context.Background(), "unix", egressSock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chown(egressSock, NobodyID, NobodyID)
	pctx, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	go proxy.Serve(pctx, ln, egress.Client{Tenant: "acme", Cell: "acme-1", Policy: "cell"})

	// The cell's state dir and workspace belong to the sandbox's uid.
	state, work := filepath.Join(dir, "state"), filepath.Join(dir, "work")
	for _, d := range []string{state, filepath.Join(state, ".openclaw"), filepath.Join(state, "logs"), filepath.Join(state, "tmp"), work} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.Chown(d, NobodyID, NobodyID)
	}
	token := "tok-" + openclawtest.RandomHex(t, 20)
	models, agents := openclawtest.OpenAIProvider(us.URL+"/v1", "sk-sandbox-test")
	cfg := map[string]any{
		"gateway": map[string]any{
			"mode": "local", "port": 18789,
			"auth": map[string]any{"mode": "token", "token": token},
			"http": map[string]any{"endpoints": map[string]any{"chatCompletions": map[string]any{"enabled": true}}},
		},
		"logging":   map[string]any{"file": filepath.Join(state, "logs", "gateway.log")},
		"update":    map[string]any{"checkOnStart": false},
		"discovery": map[string]any{"mdns": map[string]any{"mode": "off"}},
		"proxy":     map[string]any{"enabled": true, "proxyUrl": "http://127.0.0.1:3128", "loopbackMode": "proxy"},
		"models":    models,
		"agents":    agents,
	}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(state, ".openclaw", "openclaw.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(cfgPath, NobodyID, NobodyID)

	p, err := LoadProfile("openclaw")
	if err != nil {
		t.Fatal(err)
	}
	if p, err = Expand(p, map[string]string{"OPENCLAW_DIR": inst.Dir, "STATE_DIR": state, "WORKSPACE": work}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "gateway.sock")
	var out bytes.Buffer
	var outMu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var code int
	var runErr error
	go func() {
		defer close(done)
		code, runErr = Run(ctx, Options{
			ID: "acme-1", Profile: p,
			Argv:   []string{inst.Node, inst.CLI, "gateway", "run", "--port", "18789"},
			Env:    []string{"PATH=" + filepath.Dir(inst.Node) + ":/usr/bin:/bin", "TMPDIR=" + filepath.Join(state, "tmp")},
			Stdout: lockedWriter{&outMu, &out}, Stderr: lockedWriter{&outMu, &out},
			EgressSocket: egressSock, ExposeSocket: sock,
		})
	}()
	defer func() {
		cancel()
		<-done
		if runErr != nil {
			t.Errorf("sandbox: %v", runErr)
		}
		t.Logf("gateway exit %d", code)
	}()

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := client.Get("http://gateway/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			outMu.Lock()
			t.Fatalf("the gateway exited before it was ready (err %v):\n%s", runErr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			outMu.Lock()
			t.Fatalf("no /readyz through %s within 90 s (last: %v):\n%s", sock, err, out.String())
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Nothing listens on the host's port 18789.
	if c, err := net.DialTimeout("tcp", "127.0.0.1:18789", time.Second); err == nil {
		c.Close()
		t.Error("the gateway's port is reachable on the host's loopback")
	}

	// A chat makes the gateway call its model provider: only through the proxy.
	body := `{"model":"openclaw","messages":[{"role":"user","content":"ping"}]}`
	req, _ := http.NewRequest(http.MethodPost, "http://gateway/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	client.Timeout = 60 * time.Second
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("chat: %v", err)
	}
	reply, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(reply), up.Reply) {
		logb, _ := os.ReadFile(filepath.Join(state, "logs", "gateway.log"))
		outMu.Lock()
		t.Errorf("chat through the sandbox: %d %s\noutput:\n%s\nlog tail:\n%s", resp.StatusCode, reply, out.String(), tail(string(logb), 40))
		outMu.Unlock()
		mu.Lock()
		for _, e := range decisions {
			t.Logf("decision: %s %s %s:%d %s", e.Action, e.Method, e.Host, e.Port, e.Reason)
		}
		mu.Unlock()
	}
	if len(up.Authorizations()) == 0 {
		t.Fatal("the model provider was never reached")
	}
	mu.Lock()
	defer mu.Unlock()
	var allowed bool
	for _, e := range decisions {
		if e.Cell != "acme-1" {
			t.Errorf("a decision for another client: %+v", e)
		}
		if e.Action == egress.Allow {
			if e.Host != "127.0.0.1" || e.Port != upPort {
				t.Errorf("allowed something the policy does not name: %s:%d", e.Host, e.Port)
			}
			allowed = true
		}
	}
	if !allowed {
		t.Fatalf("the model call never went through the proxy; decisions: %+v", decisions)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
