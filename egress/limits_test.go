package egress

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// rawUpstream accepts loopback TCP connections and runs serve on each.
func rawUpstream(t *testing.T, serve func(net.Conn)) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return port(t, ln.Addr())
}

func withLimits(l Limits) Config {
	cfg := loopbackConfig()
	p := cfg.Policies["p"]
	p.Limits = l
	cfg.Policies["p"] = p
	return cfg
}

func TestHeaderTooLarge(t *testing.T) {
	tp := startProxy(t, withLimits(Limits{MaxHeaderBytes: 1024}))
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET http://upstream.test/ HTTP/1.1\r\nHost: upstream.test\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 64<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
	tp.noDial(t)
}

func TestIdleTimeoutClosesTunnel(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	tp := startProxy(t, withLimits(Limits{IdleTimeout: 200 * time.Millisecond}))
	c, br, resp := tp.connect(t, fmt.Sprintf("upstream.test:%d", up))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := br.ReadByte()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("idle tunnel still open after 5s")
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("tunnel closed after %s, before the idle timeout", d)
	}
	if e := tp.events.wait(t, 1)[0]; !strings.Contains(e.Reason, "idle") {
		t.Errorf("event reason %q, want idle", e.Reason)
	}
}

func TestTotalTimeout(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		for {
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond) // busy, never idle
		}
	})
	tp := startProxy(t, withLimits(Limits{IdleTimeout: time.Second, TotalTimeout: 300 * time.Millisecond}))
	c, br, resp := tp.connect(t, fmt.Sprintf("upstream.test:%d", up))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, br)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("tunnel outlived its total timeout")
	}
}

func TestMaxConns(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) { io.Copy(c, c) })
	tp := startProxy(t, withLimits(Limits{MaxConns: 1}))
	target := fmt.Sprintf("upstream.test:%d", up)
	c1, _, resp := tp.connect(t, target)
	if resp.StatusCode != 200 {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	_, _, resp = tp.connect(t, target)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Header.Get("X-Clawhold-Deny-Reason"), "max_conns") {
		t.Errorf("second: %d %q, want 503 max_conns", resp.StatusCode, resp.Header.Get("X-Clawhold-Deny-Reason"))
	}
	c1.Close()
	// The slot is released when the tunnel ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, resp = tp.connect(t, target)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot never released: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestBytesPerSecond(t *testing.T) {
	const size = 3000
	up := rawUpstream(t, func(c net.Conn) { c.Write(make([]byte, size)) })
	tp := startProxy(t, withLimits(Limits{BytesPerSecond: 2000}))
	_, br, resp := tp.connect(t, fmt.Sprintf("upstream.test:%d", up))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	start := time.Now()
	n, _ := io.Copy(io.Discard, br)
	// 2000 bytes of burst, then 1000 more at 2000 B/s: at least ~0.5s.
	if d := time.Since(start); n != size || d < 400*time.Millisecond {
		t.Errorf("read %d bytes in %s: want %d, rate-limited to 2000 B/s", n, d, size)
	}
}

// TestTunnelHalfClose: the client finishes sending, the upstream still
// answers, as a WebSocket close or request/response over TLS needs.
func TestTunnelHalfClose(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		b, _ := io.ReadAll(c) // until the client's half-close
		fmt.Fprintf(c, "got %d bytes", len(b))
	})
	tp := startProxy(t, loopbackConfig())
	c, br, resp := tp.connect(t, fmt.Sprintf("upstream.test:%d", up))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	io.WriteString(c, "hello world")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "got 11 bytes" {
		t.Errorf("read %q, %v", got, err)
	}
	e := tp.events.wait(t, 1)[0]
	if e.BytesUp != 11 || e.BytesDn != 12 {
		t.Errorf("bytes up %d down %d, want 11 and 12", e.BytesUp, e.BytesDn)
	}
}

func TestIdleTimeoutCutsStalledResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer srv.Close()
	tp := startProxy(t, withLimits(Limits{IdleTimeout: 200 * time.Millisecond}))
	start := time.Now()
	resp, err := tp.client().Get(fmt.Sprintf("http://upstream.test:%d/", port(t, srv.Listener.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "partial" || time.Since(start) > 3*time.Second {
		t.Errorf("body %q after %s: want the stalled response cut by the idle timeout", body, time.Since(start))
	}
	if e := tp.events.wait(t, 1)[0]; !strings.Contains(e.Reason, "idle") {
		t.Errorf("event reason %q", e.Reason)
	}
}
