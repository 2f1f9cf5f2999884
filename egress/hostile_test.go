package egress

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// panicWatch is a slog handler that records messages mentioning a panic.
type panicWatch struct {
	mu  sync.Mutex
	msg []string
}

func (p *panicWatch) Enabled(context.Context, slog.Level) bool { return true }
func (p *panicWatch) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "panic") {
		p.mu.Lock()
		p.msg = append(p.msg, r.Message)
		p.mu.Unlock()
	}
	return nil
}
func (p *panicWatch) WithAttrs([]slog.Attr) slog.Handler { return p }
func (p *panicWatch) WithGroup(string) slog.Handler      { return p }

func (p *panicWatch) check(t testing.TB) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.msg) > 0 {
		t.Fatalf("the proxy panicked: %s", p.msg)
	}
}

// exchange sends raw to the proxy, half-closes, and returns what came back.
func exchange(t testing.TB, addr string, raw []byte) string {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(raw)
	c.(*net.TCPConn).CloseWrite()
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestHostileInput(t *testing.T) {
	watch := &panicWatch{}
	cfg := withLimits(Limits{MaxHeaderBytes: 4096, ReadHeaderTimeout: 500 * time.Millisecond})
	cfg.Logger = slog.New(watch)
	tp := startProxy(t, cfg)
	_, up := upstream(t)
	tests := []struct {
		name, raw, want string
	}{
		{"garbage", "\x00\x01\x02\xff\xfe garbage\r\n\r\n", "400"},
		{"partial request line", "GET http://upstream.te", ""},
		{"huge header", "GET http://upstream.test/ HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("x", 100000) + "\r\n\r\n", "431"},
		{"many headers", "GET http://upstream.test/ HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: b\r\n", 2000) + "\r\n", "431"},
		{"CONNECT without port", "CONNECT upstream.test HTTP/1.1\r\nHost: upstream.test\r\n\r\n", "400"},
		{"CONNECT port 0", "CONNECT upstream.test:0 HTTP/1.1\r\nHost: upstream.test:0\r\n\r\n", "400"},
		{"CONNECT bad port", "CONNECT upstream.test:99999 HTTP/1.1\r\nHost: upstream.test:99999\r\n\r\n", "400"},
		{"CONNECT empty", "CONNECT  HTTP/1.1\r\n\r\n", "400"},
		{"CONNECT zone", "CONNECT [fe80::1%25eth0]:443 HTTP/1.1\r\nHost: [fe80::1%25eth0]:443\r\n\r\n", "40"},
		{"origin-form", "GET / HTTP/1.1\r\nHost: upstream.test\r\n\r\n", "400"},
		{"https absolute", "GET https://upstream.test/ HTTP/1.1\r\nHost: upstream.test\r\n\r\n", "400"},
		{"ftp", "GET ftp://upstream.test/ HTTP/1.1\r\nHost: upstream.test\r\n\r\n", "400"},
		{"bad host chars", "GET http://up%20stream.test/ HTTP/1.1\r\nHost: x\r\n\r\n", "40"},
		{"HTTP/0.9", "GET /\r\n\r\n", "400"},
		{"OPTIONS star", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "400"},
		{"bad version", "GET http://upstream.test/ HTTP/9.9\r\nHost: a\r\n\r\n", "505"},
		{"smuggling", "POST http://upstream.test/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1"}, // re-serialized, never passed through
		{"bad chunked", fmt.Sprintf("POST http://upstream.test:%d/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", up), "HTTP/1.1"},
		{"NUL in header", "GET http://upstream.test/ HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := exchange(t, tp.addr, []byte(tt.raw))
			if tt.want != "" && !strings.HasPrefix(got, "HTTP/1.1 "+tt.want) && !strings.HasPrefix(got, tt.want) {
				t.Errorf("response %.80q, want status %s", got, tt.want)
			}
			watch.check(t)
		})
	}
	// A client that stops half-way through its headers is cut off by the
	// read-header timeout instead of holding the proxy.
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET http://upstream.test/ HTTP/1.1\r\nHost: a\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("slow client was not cut off: %v", err)
	}
	// Still serving.
	resp, err := tp.client().Get(fmt.Sprintf("http://upstream.test:%d/ok", up))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after hostile input: %d", resp.StatusCode)
	}
	for _, d := range tp.dialer.dialed() {
		if !d.Addr().IsLoopback() {
			t.Errorf("dialled %s", d)
		}
	}
}

// FuzzProxyRequest feeds arbitrary bytes to a proxy connection. The
// resolver knows no names and the dialer only reaches loopback, so nothing
// leaves the machine. The proxy must never panic or hang.
func FuzzProxyRequest(f *testing.F) {
	for _, s := range []string{
		"GET http://upstream.test/ HTTP/1.1\r\nHost: upstream.test\r\n\r\n",
		"CONNECT upstream.test:443 HTTP/1.1\r\nHost: upstream.test:443\r\n\r\n",
		"CONNECT [::ffff:127.0.0.1]:443 HTTP/1.1\r\n\r\n",
		"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"GET http://[64:ff9b::7f00:1]:80/ HTTP/1.1\r\nHost: x\r\nConnection: close, Host\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	watch := &panicWatch{}
	cfg := Config{
		Resolver: newResolver(map[string][]string{"upstream.test": {"127.0.0.1"}}),
		Policies: map[string]Policy{"p": {Rules: []Rule{{Action: Allow, Host: "*"}}, Limits: Limits{MaxHeaderBytes: 8192, ReadHeaderTimeout: time.Second, IdleTimeout: time.Second, TotalTimeout: 2 * time.Second}}},
		Logger:   slog.New(watch),
	}
	tp := startProxy(f, cfg)
	f.Fuzz(func(t *testing.T, raw []byte) {
		before := len(tp.dialer.dialed())
		got := exchange(t, tp.addr, raw)
		watch.check(t)
		if got != "" && !strings.HasPrefix(got, "HTTP/1.") {
			t.Errorf("response does not start with a status line: %.80q", got)
		}
		for _, d := range tp.dialer.dialed()[before:] {
			if Classify(d.Addr()).Special() {
				t.Fatalf("dialled %s", d)
			}
		}
	})
}

// TestWebSocketThroughCONNECT does an HTTP upgrade and exchanges a frame
// through a CONNECT tunnel.
func TestWebSocketThroughCONNECT(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "websocket" {
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", base64.StdEncoding.EncodeToString(h[:]))
		// Read one masked client frame and echo its payload unmasked.
		hdr := make([]byte, 6)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		n := int(hdr[1] & 0x7f)
		payload := make([]byte, n)
		io.ReadFull(br, payload)
		for i := range payload {
			payload[i] ^= hdr[2+i%4]
		}
		c.Write(append([]byte{0x81, byte(n)}, payload...))
	})
	tp := startProxy(t, loopbackConfig())
	c, br, resp := tp.connect(t, fmt.Sprintf("upstream.test:%d", up))
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: upstream.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	wsResp, err := http.ReadResponse(br, nil)
	if err != nil || wsResp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", wsResp, err)
	}
	mask := []byte{1, 2, 3, 4}
	msg := []byte("hello ws")
	frame := append([]byte{0x81, 0x80 | byte(len(msg))}, mask...)
	for i, b := range msg {
		frame = append(frame, b^mask[i%4])
	}
	c.Write(frame)
	got := make([]byte, 2+len(msg))
	if _, err := io.ReadFull(br, got); err != nil || string(got[2:]) != "hello ws" {
		t.Errorf("echo %q, %v", got, err)
	}
}

func TestServeUnixSocket(t *testing.T) {
	_, up := upstream(t)
	ev := &eventLog{}
	cfg := loopbackConfig()
	cfg.Events = ev.add
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "egress.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, Client{Tenant: "t2", Cell: "cell-9", Policy: "p"}) }()
	client := &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyURL(&urlProxy),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := client.Get(fmt.Sprintf("http://upstream.test:%d/", up))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if e := ev.wait(t, 1)[0]; e.Tenant != "t2" || e.Cell != "cell-9" {
		t.Errorf("event identity %q/%q, want the listener's", e.Tenant, e.Cell)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(context.Background(), ln, Client{Policy: "missing"}); err == nil {
		t.Error("Serve with an unknown policy succeeded")
	}
}
