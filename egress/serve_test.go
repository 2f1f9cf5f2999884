package egress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := port(t, ln.Addr())
	ln.Close()
	return p
}

// TestFirstRequestEvent: a first request that cannot be read gets the
// answer net/http's server gives, and now an event too, whose reason never
// quotes the request.
func TestFirstRequestEvent(t *testing.T) {
	tests := []struct {
		name, raw  string
		wantStatus int
		wantReason string
	}{
		{"garbage", "\x00\x01\x02 garbage\r\n\r\n", 400, "malformed request"},
		{"HTTP/0.9", "GET /\r\n\r\n", 400, "malformed request"},
		{"partial line", "CONNECT upstream.te", 400, "malformed request"},
		{"NUL in header", "CONNECT upstream.test:443 HTTP/1.1\r\nX-Key: sk-secret\x00value\r\n\r\n", 400, "malformed request"},
		{"huge header", "CONNECT upstream.test:443 HTTP/1.1\r\nX-Key: sk-secret" + strings.Repeat("x", 20000) + "\r\n\r\n", 431, "limits.max_header_bytes"},
		{"unsupported transfer encoding", "CONNECT upstream.test:443 HTTP/1.1\r\nHost: upstream.test:443\r\nTransfer-Encoding: sk-secret\r\n\r\n", 501, "unsupported transfer encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := startProxy(t, withLimits(Limits{MaxHeaderBytes: 4096}))
			got := exchange(t, tp.addr, []byte(tt.raw))
			if want := fmt.Sprintf("HTTP/1.1 %d ", tt.wantStatus); !strings.HasPrefix(got, want) {
				t.Errorf("response %.80q, want %s", got, want)
			}
			e := tp.events.wait(t, 1)[0]
			if e.Method != "" || e.Action != Deny || e.Status != tt.wantStatus || !strings.Contains(e.Reason, tt.wantReason) {
				t.Errorf("event %+v, want method \"\", deny, %d, reason with %q", e, tt.wantStatus, tt.wantReason)
			}
			if e.Tenant != "t1" || e.Cell != "c1" || e.Policy != "p" {
				t.Errorf("event identity %q/%q/%q", e.Tenant, e.Cell, e.Policy)
			}
			if strings.Contains(e.Reason, "secret") {
				t.Errorf("event reason quotes the request: %q", e.Reason)
			}
			tp.noDial(t)
		})
	}
}

// TestFirstRequestNoEvent: a client that leaves before sending a request,
// or never finishes its headers, gets no answer and no event.
func TestFirstRequestNoEvent(t *testing.T) {
	tp := startProxy(t, withLimits(Limits{ReadHeaderTimeout: 200 * time.Millisecond}))
	if got := exchange(t, tp.addr, nil); got != "" {
		t.Errorf("empty connection answered %q", got)
	}
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT upstream.test:443 HTTP/1.1\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); err != nil || len(b) > 0 {
		t.Errorf("slow client: read %q, %v; want a silent close", b, err)
	}
	time.Sleep(50 * time.Millisecond)
	tp.events.mu.Lock()
	defer tp.events.mu.Unlock()
	if len(tp.events.events) > 0 {
		t.Errorf("events %+v, want none", tp.events.events)
	}
}

// TestConnectFastPathErrors: the answers to refused CONNECTs carry the
// status, headers and body the handler always sent, and a refusal on a
// keep-alive connection leaves it usable.
func TestConnectFastPathErrors(t *testing.T) {
	_, httpUp := upstream(t)
	up := rawUpstream(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	closed := closedPort(t)
	tests := []struct {
		name, target string
		limits       Limits
		hold         bool // hold a tunnel open first
		extra        string
		wantStatus   int
		wantBody     string
		wantDeny     string // X-Clawhold-Deny-Reason
		wantClose    bool
	}{
		{name: "denied", target: "public.test:443", wantStatus: 403, wantBody: "is not allowed by policy p", wantDeny: "loopback"},
		{name: "denied, client closes", target: "public.test:443", extra: "Connection: close\r\n", wantStatus: 403, wantBody: "is not allowed", wantDeny: "loopback", wantClose: true},
		{name: "no port", target: "upstream.test", wantStatus: 400, wantBody: "has no port", wantClose: true},
		{name: "port 0", target: "upstream.test:0", wantStatus: 400, wantBody: "1 to 65535", wantClose: true},
		{name: "unreachable", target: fmt.Sprintf("upstream.test:%d", closed), wantStatus: 502, wantBody: "connecting"},
		{name: "max conns", target: fmt.Sprintf("upstream.test:%d", up), limits: Limits{MaxConns: 1}, hold: true, wantStatus: 503, wantBody: "limits.max_conns", wantDeny: "limits.max_conns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := startProxy(t, withLimits(tt.limits))
			if tt.hold {
				if _, _, resp := tp.connect(t, tt.target); resp.StatusCode != 200 {
					t.Fatalf("first tunnel: %d", resp.StatusCode)
				}
			}
			c, err := net.Dial("tcp", tp.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", tt.target, tt.target, tt.extra)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("got %d %q, want %d with %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if got := resp.Header.Get("X-Clawhold-Deny-Reason"); !strings.Contains(got, tt.wantDeny) || (tt.wantDeny == "") != (got == "") {
				t.Errorf("X-Clawhold-Deny-Reason %q, want %q", got, tt.wantDeny)
			}
			if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Date") == "" {
				t.Errorf("headers %v", resp.Header)
			}
			if resp.Close != tt.wantClose {
				t.Errorf("Connection: close %v, want %v", resp.Close, tt.wantClose)
			}
			e := tp.events.wait(t, 1)[len(tp.events.wait(t, 1))-1]
			if e.Method != http.MethodConnect || e.Status != tt.wantStatus {
				t.Errorf("event %+v, want CONNECT %d", e, tt.wantStatus)
			}
			if tt.wantClose {
				if b, _ := io.ReadAll(br); len(b) > 0 {
					t.Errorf("after close: %q", b)
				}
				return
			}
			// Still a proxy connection: a forwarded request goes through.
			fmt.Fprintf(c, "GET http://upstream.test:%d/again HTTP/1.1\r\nHost: upstream.test\r\n\r\n", httpUp)
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("second request: %v", err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case tt.hold: // the slot is still taken: refused again, on the same connection
				if resp.StatusCode != 503 {
					t.Errorf("second request: %d %q, want 503", resp.StatusCode, body)
				}
			case resp.StatusCode != 200 || !strings.Contains(string(body), "path=/again"):
				t.Errorf("second request: %d %q", resp.StatusCode, body)
			}
		})
	}
}

// TestTunnelBytes: what the event counts is what crossed, whether the
// tunnel spliced (bulk) or copied (small), including bytes the client
// sent right behind the CONNECT request.
func TestTunnelBytes(t *testing.T) {
	tests := []struct {
		name       string
		up, down   int
		pipelined  int // sent in the same write as the CONNECT request
		idle       time.Duration
		bps        int64
		overUnix   bool
		viaHandoff bool // a forwarded request first, then CONNECT on the same connection
	}{
		{name: "small", up: 10, down: 20},
		{name: "bulk", up: 3 << 20, down: 9 << 20},
		{name: "bulk with idle limit", up: 3 << 20, down: 9 << 20, idle: 2 * time.Second},
		{name: "pipelined", up: 1 << 20, down: 100, pipelined: 517},
		{name: "pipelined, rate limited", up: 1 << 20, down: 1 << 20, pipelined: 517, bps: 100 << 20, idle: 2 * time.Second},
		{name: "unix client", up: 3 << 20, down: 5 << 20, idle: 2 * time.Second, overUnix: true},
		{name: "after a forwarded request", up: 2 << 20, down: 2 << 20, pipelined: 100, viaHandoff: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The upstream reads the client's bytes to EOF, then answers
			// with its own and closes.
			want := make([]byte, tt.down)
			rand.Read(want)
			got := make(chan int, 1)
			up := rawUpstream(t, func(c net.Conn) {
				n, _ := io.Copy(io.Discard, c)
				got <- int(n)
				c.Write(want)
			})
			_, httpUp := upstream(t)
			cfg := withLimits(Limits{IdleTimeout: tt.idle, BytesPerSecond: tt.bps})
			ev := &eventLog{}
			cfg.Events = ev.add
			p, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			network, addr := "tcp", "127.0.0.1:0"
			if tt.overUnix {
				network, addr = "unix", filepath.Join(t.TempDir(), "s")
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Serve(ctx, ln, Client{Policy: "p"}) }()
			defer func() {
				cancel()
				<-done
			}()

			c, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(c)
			wantEvents := 1
			if tt.viaHandoff {
				fmt.Fprintf(c, "GET http://upstream.test:%d/first HTTP/1.1\r\nHost: upstream.test\r\n\r\n", httpUp)
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("forwarded request: %v %v", resp, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				wantEvents++
			}
			payload := make([]byte, tt.up)
			target := fmt.Sprintf("upstream.test:%d", up)
			head := append([]byte(fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)), payload[:tt.pipelined]...)
			if _, err := c.Write(head); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			writeErr := make(chan error, 1)
			go func() {
				_, err := c.Write(payload[tt.pipelined:])
				if err == nil {
					err = c.(interface{ CloseWrite() error }).CloseWrite()
				}
				writeErr <- err
			}()
			back, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-writeErr; err != nil {
				t.Fatal(err)
			}
			if n := <-got; n != tt.up {
				t.Errorf("upstream got %d bytes, want %d", n, tt.up)
			}
			if !bytes.Equal(back, want) {
				t.Errorf("client got %d bytes back, want %d (equal: false)", len(back), len(want))
			}
			e := ev.wait(t, wantEvents)[wantEvents-1]
			if e.Method != http.MethodConnect || e.BytesUp != int64(tt.up) || e.BytesDn != int64(tt.down) || e.Reason != "" {
				t.Errorf("event %s up %d down %d reason %q, want CONNECT up %d down %d", e.Method, e.BytesUp, e.BytesDn, e.Reason, tt.up, tt.down)
			}
		})
	}
}

// TestTunnelIdleAfterBulk: a tunnel that carried bulk data (spliced) and
// then went quiet ends between idle and 2×idle after its last byte, with
// the bytes counted; one that keeps trickling in one direction only
// stays open.
func TestTunnelIdleAfterBulk(t *testing.T) {
	const idle = 300 * time.Millisecond
	tests := []struct {
		name    string
		trickle time.Duration // the upstream sends a byte this often after the bulk, for 4×idle; 0: silence
		bulk    int
	}{
		{name: "silent after bulk", bulk: 4 << 20},
		{name: "silent after small", bulk: 100},
		{name: "trickle keeps it open", bulk: 4 << 20, trickle: idle / 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := rawUpstream(t, func(c net.Conn) {
				c.Write(make([]byte, tt.bulk))
				if tt.trickle > 0 {
					for end := time.Now().Add(4 * idle); time.Now().Before(end); {
						time.Sleep(tt.trickle)
						if _, err := c.Write([]byte{1}); err != nil {
							return
						}
					}
				}
				io.Copy(io.Discard, c) // then silent, never closes
			})
			tp := startProxy(t, withLimits(Limits{IdleTimeout: idle}))
			c, br, resp := tp.connect(t, fmt.Sprintf("upstream.test:%d", up))
			if resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %d", resp.StatusCode)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			var n int64
			var last time.Time
			buf := make([]byte, 64<<10)
			for {
				k, err := br.Read(buf)
				if k > 0 {
					n += int64(k)
					last = time.Now()
				}
				if err != nil {
					break
				}
			}
			after := time.Since(last)
			wantN := int64(tt.bulk)
			if tt.trickle > 0 {
				if n < wantN+6 {
					t.Errorf("got %d bytes, want the bulk and the trickle (tunnel cut while active?)", n)
				}
			} else if n != wantN {
				t.Errorf("got %d bytes, want %d", n, wantN)
			}
			if after < idle-50*time.Millisecond || after > 2*idle+time.Second {
				t.Errorf("tunnel ended %s after the last byte, want between %s and %s", after, idle, 2*idle)
			}
			e := tp.events.wait(t, 1)[0]
			if !strings.Contains(e.Reason, "idle") || e.BytesDn != n || e.BytesUp != 0 {
				t.Errorf("event reason %q down %d up %d, want idle, %d, 0", e.Reason, e.BytesDn, e.BytesUp, n)
			}
		})
	}
}

// TestTunnelIdleStalledReader: a client that stops reading while the
// upstream floods the tunnel is cut off too (its writes stall), not held
// forever.
func TestTunnelIdleStalledReader(t *testing.T) {
	const idle = 200 * time.Millisecond
	up := rawUpstream(t, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	tp := startProxy(t, withLimits(Limits{IdleTimeout: idle}))
	_, _, resp := tp.connect(t, fmt.Sprintf("upstream.test:%d", up))
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %d", resp.StatusCode)
	}
	start := time.Now()
	e := tp.events.wait(t, 1)[0] // the client never reads
	if d := time.Since(start); d > 3*idle+time.Second {
		t.Errorf("stalled tunnel ended after %s", d)
	}
	if !strings.Contains(e.Reason, "idle") {
		t.Errorf("event reason %q, want idle", e.Reason)
	}
}

// TestServeShutdown: when ctx ends, Serve returns nil and closes every
// connection: one still sending its first request, a kept-alive one the
// HTTP server holds, and a tunnel.
func TestServeShutdown(t *testing.T) {
	_, httpUp := upstream(t)
	up := rawUpstream(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	p, err := New(loopbackConfig())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, Client{Policy: "p"}) }()
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, bufio.NewReader(c)
	}
	partial, _ := dial()
	io.WriteString(partial, "CONNECT upstream.test:443 HTTP/1.1\r\n")
	kept, keptR := dial()
	fmt.Fprintf(kept, "GET http://upstream.test:%d/ HTTP/1.1\r\nHost: upstream.test\r\n\r\n", httpUp)
	resp, err := http.ReadResponse(keptR, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("forwarded request: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	tun, tunR := dial()
	fmt.Fprintf(tun, "CONNECT upstream.test:%d HTTP/1.1\r\n\r\n", up)
	if resp, err := http.ReadResponse(tunR, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	for name, r := range map[string]io.Reader{"partial": partial, "kept-alive": keptR, "tunnel": tunR} {
		if _, err := io.ReadAll(r); err != nil && !strings.Contains(err.Error(), "reset") {
			t.Errorf("%s connection not closed: %v", name, err)
		}
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("listener still accepting")
	}
}
