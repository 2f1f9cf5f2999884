package kms

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Real servers for the remote backends are built by
// `scripts/kms-servers.sh install` into .cache/bin at the repository root.
// A test finds one through its environment variable, then .cache/bin, then
// PATH. Without it the test skips, except under CI=true, where it fails.

// serverBin returns the path of the server binary name, or skips (fails
// under CI) when it cannot be found.
func serverBin(t *testing.T, envVar, name string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", envVar, p, err)
		}
		return p
	}
	if p, err := filepath.Abs(filepath.Join("..", ".cache", "bin", name)); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s server binary not found: run scripts/kms-servers.sh install, or set %s", name, envVar)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a server's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// server is a child process started for one test.
type server struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	out    *lockedBuffer
	redact []string // secrets to hide when the output is shown
}

// startServer runs bin with args and env (added to a minimal environment) and
// stops it when the test ends. On failure its output is logged with the
// redact strings replaced.
func startServer(t *testing.T, bin string, args, env, redact []string) *server {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Dir = t.TempDir()
	s := &server{cmd: cmd, done: make(chan struct{}), out: new(lockedBuffer), redact: redact}
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", filepath.Base(bin), err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), s.output())
		}
	})
	return s
}

func (s *server) output() string {
	out := s.out.String()
	for _, r := range s.redact {
		if r != "" {
			out = strings.ReplaceAll(out, r, "<redacted>")
		}
	}
	return out
}

// waitReady polls url with client until ready reports true for a response or
// 60 seconds pass.
func waitReady(t *testing.T, s *server, client *http.Client, url string, ready func(*http.Response) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			ok := ready(resp)
			resp.Body.Close()
			if ok {
				return
			}
		}
		select {
		case <-s.done:
			t.Fatalf("%s exited before it was ready", filepath.Base(s.cmd.Path))
		case <-ctx.Done():
			t.Fatalf("%s not ready at %s after 60s: last error %v", filepath.Base(s.cmd.Path), url, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
