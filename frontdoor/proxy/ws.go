package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// tracker is the context key under which serveUpgrade passes its wsConn to
// modifyResponse, which learns the upstream side of the connection.
type tracker struct{}

// wsConn is one proxied WebSocket: its request context and, once they
// exist, the hijacked client connection and the upstream connection.
type wsConn struct {
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	client  net.Conn
	backend io.Closer
}

func (c *wsConn) setClient(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		conn.Close() // closed during the handshake: end it at once
		return
	}
	c.client = conn
}

func (c *wsConn) setBackend(b io.Closer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		b.Close()
		return
	}
	c.backend = b
}

// close ends the connection on both sides. It is safe to call more than
// once and from any goroutine. Closing both conns directly (rather than only
// canceling the context, which httputil also honours) makes both copy loops
// fail at once.
func (c *wsConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.cancel()
	if c.client != nil {
		c.client.Close()
	}
	if c.backend != nil {
		c.backend.Close()
	}
}

// hijackWriter records the connection httputil.ReverseProxy hijacks for a
// 101 response. Unwrap keeps http.ResponseController (flush, deadlines)
// working on the underlying writer.
type hijackWriter struct {
	http.ResponseWriter
	c        *wsConn
	activity func() // may be nil
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.c.setClient(conn)
		if w.activity != nil {
			conn = &activityConn{Conn: conn, mark: w.activity}
		}
	}
	return conn, brw, err
}

// activityConn reports the client's traffic on a proxied WebSocket, so
// that a user active only over a socket keeps their session alive.
type activityConn struct {
	net.Conn
	mark func()
}

func (c *activityConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mark()
	}
	return n, err
}

func (w *hijackWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serveUpgrade proxies a WebSocket upgrade, registered under the session
// from before the upstream dial until both sides are closed.
func (p *Proxy) serveUpgrade(w http.ResponseWriter, r *http.Request, id Identity) {
	ctx, cancel := context.WithCancel(r.Context())
	c := &wsConn{cancel: cancel}
	ctx = context.WithValue(ctx, tracker{}, c)
	if p.register != nil {
		if unregister := p.register(id.SessionID, c.close); unregister != nil {
			defer unregister()
		}
	}
	defer c.close()
	var activity func()
	if p.touch != nil {
		var mu sync.Mutex
		var last time.Time
		activity = func() {
			mu.Lock()
			due := time.Since(last) >= touchEvery
			if due {
				last = time.Now()
			}
			mu.Unlock()
			if due {
				go p.touch(id.SessionID)
			}
		}
	}
	p.rp.ServeHTTP(&hijackWriter{ResponseWriter: w, c: c, activity: activity}, r.WithContext(ctx))
}

// touchEvery bounds how often a busy WebSocket reports its session active.
const touchEvery = 30 * time.Second
