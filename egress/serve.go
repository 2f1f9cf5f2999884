package egress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// defaultReadHeaderTimeout bounds a client that never finishes its headers,
// so that it cannot hold a goroutine forever.
const defaultReadHeaderTimeout = 30 * time.Second

// Serve accepts connections on ln until ctx is done, every one of them from
// client c. It closes ln and returns nil when ctx is done.
//
// The first request on each connection is read here: a CONNECT is answered
// and tunnelled on the connection directly (the common case, and the one
// whose cost per tunnel matters), anything else is handed, with the bytes
// already read, to a net/http Server that serves it and any later requests
// on that connection.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener, c Client) error {
	pol, ok := p.policies[c.Policy]
	if !ok {
		return fmt.Errorf("egress: no policy %q", c.Policy)
	}
	h := &handler{p: p, pol: pol, client: c}
	h.maxHeader = pol.Limits.MaxHeaderBytes
	if h.maxHeader <= 0 {
		h.maxHeader = http.DefaultMaxHeaderBytes
	}
	h.readHeader = pol.Limits.ReadHeaderTimeout
	if h.readHeader <= 0 {
		h.readHeader = defaultReadHeaderTimeout
	}
	h.handoff = newHandoffListener(ln.Addr())
	srv := &http.Server{
		Handler: h,
		// "OPTIONS *" is for the proxy, not a destination: let the
		// handler refuse it like any other origin-form request.
		DisableGeneralOptionsHandler: true,
		MaxHeaderBytes:               pol.Limits.MaxHeaderBytes,
		ReadHeaderTimeout:            h.readHeader,
		IdleTimeout:                  pol.Limits.IdleTimeout,
		BaseContext:                  func(net.Listener) context.Context { return ctx },
		ErrorLog:                     slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		srv.Serve(h.handoff) // returns only once srv is closed below
	}()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var delay time.Duration // backoff after temporary accept errors, as net/http does
	var err error
	for {
		var conn net.Conn
		conn, err = ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				err = nil
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() { //nolint:staticcheck // as net/http: EMFILE and the like pass
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				p.log.Warn("egress: accept failed; retrying", "err", err, "delay", delay)
				select {
				case <-time.After(delay):
				case <-ctx.Done():
				}
				continue
			}
			err = fmt.Errorf("egress: serving %s: %w", ln.Addr(), err)
			break
		}
		delay = 0
		go h.serveConn(ctx, conn)
	}
	// Closes the handoff listener and the connections the server holds;
	// tunnels end through ctx. The listener is closed here too in case the
	// server had not started serving it yet, so that no give blocks.
	srv.Close()
	h.handoff.Close()
	<-srvDone
	ln.Close()
	return err
}

// connReader reads a connection's first request: a bufio.Reader over a
// recorder (the bytes read, to replay them to the server when the request
// is not a CONNECT) over a limit (MaxHeaderBytes plus net/http's 4 KiB of
// slack, so that the 431 threshold is the server's).
type connReader struct {
	lim io.LimitedReader
	rec recorder
	br  *bufio.Reader
}

type recorder struct {
	r   io.Reader
	buf []byte
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.buf = append(r.buf, b[:n]...)
	return n, err
}

// maxPooledRecord keeps a connection that sent huge headers from pinning
// its buffer in the pool.
const maxPooledRecord = 64 << 10

func (h *handler) getReader(c net.Conn) *connReader {
	cr, ok := h.p.readers.Get().(*connReader)
	if !ok {
		cr = &connReader{}
		cr.rec.r = &cr.lim
		cr.br = bufio.NewReaderSize(&cr.rec, 4096)
	}
	cr.lim.R, cr.lim.N = c, int64(h.maxHeader)+4096
	return cr
}

func (h *handler) putReader(cr *connReader) {
	cr.lim.R = nil
	cr.br.Reset(&cr.rec)
	if cap(cr.rec.buf) > maxPooledRecord {
		cr.rec.buf = nil
	}
	cr.rec.buf = cr.rec.buf[:0]
	h.p.readers.Put(cr)
}

// serveConn reads the first request on c. A CONNECT is handled here; any
// other request goes to the net/http server, replayed from the bytes read.
func (h *handler) serveConn(ctx context.Context, c net.Conn) {
	defer func() {
		if v := recover(); v != nil {
			h.p.log.Error("egress: panic serving a connection", "remote", c.RemoteAddr().String(), "panic", fmt.Sprint(v))
			c.Close()
		}
	}()
	// Close the connection when the proxy stops; tunnels have their own
	// hook, and the server closes what it was handed.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	start := time.Now()
	c.SetReadDeadline(start.Add(h.readHeader))
	cr := h.getReader(c)
	req, err := http.ReadRequest(cr.br)
	if err != nil {
		tooLarge := cr.lim.N <= 0
		h.putReader(cr)
		stop()
		h.firstRequestError(c, start, err, tooLarge)
		return
	}
	if req.Method != http.MethodConnect || !serverWouldAccept(req) {
		// The server reads the request again from the recorded bytes
		// and applies its own checks; nothing has been answered yet.
		prefix := bytes.Clone(cr.rec.buf)
		h.putReader(cr)
		c.SetReadDeadline(time.Time{})
		if stop() {
			h.handoff.give(&handoffConn{Conn: c, prefix: prefix})
		}
		return
	}
	var buffered []byte
	if n := cr.br.Buffered(); n > 0 {
		b, _ := cr.br.Peek(n)
		buffered = bytes.Clone(b)
	}
	h.putReader(cr)
	c.SetReadDeadline(time.Time{})
	keep := h.connectDirect(ctx, c, req, buffered, start)
	if !stop() {
		c.Close()
		return
	}
	if !keep {
		c.Close()
		return
	}
	// A refused CONNECT on a keep-alive connection: the server reads
	// whatever the client sends next.
	h.handoff.give(&handoffConn{Conn: c, prefix: buffered})
}

// serverWouldAccept reports whether net/http's server would pass req to
// the handler (its checks after parsing); requests it would refuse are
// handed to it so that it answers them exactly as it always has.
func serverWouldAccept(req *http.Request) bool {
	if req.ProtoMajor != 1 {
		return false
	}
	hosts := req.Header["Host"]
	if len(hosts) > 1 || len(hosts) == 1 && !httpguts.ValidHostHeader(hosts[0]) {
		return false
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// firstRequestError answers a first request that could not be read, as
// net/http's server does, and reports it. A connection closed or timed
// out before a request was complete gets no answer and no event.
func (h *handler) firstRequestError(c net.Conn, start time.Time, err error, tooLarge bool) {
	defer c.Close()
	var ne net.Error
	var oe *net.OpError
	switch {
	case tooLarge:
	case errors.Is(err, io.EOF), errors.As(err, &ne) && ne.Timeout(), errors.As(err, &oe) && oe.Op == "read":
		return
	}
	// Reasons never quote the request: a malformed header line would put
	// a header value (a credential, perhaps) in the event.
	status, reason := http.StatusBadRequest, "malformed request"
	switch {
	case tooLarge:
		status, reason = http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request headers exceed %d bytes (limits.max_header_bytes)", h.maxHeader)
	case strings.HasPrefix(err.Error(), "unsupported transfer encoding"):
		status, reason = http.StatusNotImplemented, "unsupported transfer encoding"
	}
	e := Event{Time: start, Policy: h.pol.Name, Tenant: h.client.Tenant, Cell: h.client.Cell,
		Action: Deny, Reason: reason, Status: status, Duration: time.Since(start)}
	h.p.emit(e)
	// The same bytes net/http's server sends.
	const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		io.WriteString(c, "HTTP/1.1 431 Request Header Fields Too Large"+errorHeaders+"431 Request Header Fields Too Large")
		// Let the client read the answer before the close resets a
		// connection it is still writing to.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.CopyN(io.Discard, c, 256<<10)
	case http.StatusNotImplemented:
		io.WriteString(c, "HTTP/1.1 501 Not Implemented"+errorHeaders+"Unsupported transfer encoding")
	default:
		io.WriteString(c, "HTTP/1.1 400 Bad Request"+errorHeaders+"400 Bad Request")
	}
}

// connectDirect serves a CONNECT read by serveConn. It reports whether the
// connection may carry another request (a refusal on a keep-alive
// connection); after a tunnel it never may.
func (h *handler) connectDirect(ctx context.Context, c net.Conn, req *http.Request, buffered []byte, start time.Time) (keep bool) {
	e := Event{Time: start, Policy: h.pol.Name, Tenant: h.client.Tenant, Cell: h.client.Cell, Method: req.Method}
	// As the server would: a refused request whose body (unusual on a
	// CONNECT) is unread, or that asked to close, ends the connection.
	keep = !req.Close && req.ContentLength == 0 && len(req.TransferEncoding) == 0
	host, port, err := hostPort(req.Host, 0)
	if err != nil {
		e.Action, e.Reason, e.Status = Deny, err.Error(), http.StatusBadRequest
		e.Duration = time.Since(start)
		h.p.emit(e)
		writeError(c, req, http.StatusBadRequest, "clawhold egress: "+err.Error(), "", true)
		return false
	}
	e.Host, e.Port = normalizeHost(host), port
	release, ok := h.pol.acquire()
	if !ok {
		d := h.maxConnsDecision(e)
		h.deny(&e, d, http.StatusServiceUnavailable)
		writeError(c, req, http.StatusServiceUnavailable, d.Error(), d.Reason, !keep)
		return keep
	}
	defer release()
	ctx, cancel := h.withTotalTimeout(ctx)
	defer cancel()
	d := h.decide(ctx, req.Method, host, port, &e)
	if d.Action != Allow {
		h.deny(&e, d, http.StatusForbidden)
		writeError(c, req, http.StatusForbidden, d.Error(), d.Reason, !keep)
		return keep
	}
	e.Action, e.Rule, e.Reason = Allow, d.Rule, d.Reason
	upstream, err := h.p.dial(ctx, d.Addrs, d.Port)
	if err != nil {
		e.Status, e.Reason = http.StatusBadGateway, err.Error()
		e.Duration = time.Since(e.Time)
		h.p.emit(e)
		writeError(c, req, http.StatusBadGateway, "clawhold egress: "+oneLine(err.Error()), "", !keep)
		return keep
	}
	defer upstream.Close()
	h.established(ctx, c, buffered, upstream, d, e)
	return false
}

// maxConnsDecision is the refusal for a full limits.max_conns.
func (h *handler) maxConnsDecision(e Event) Decision {
	return Decision{Policy: h.pol.Name, Host: e.Host, Port: e.Port,
		Reason: fmt.Sprintf("policy %s already has %d connections open (limits.max_conns)", h.pol.Name, h.pol.Limits.MaxConns)}
}

// deny completes and emits the event of a refused request.
func (h *handler) deny(e *Event, d Decision, status int) {
	e.Action, e.Reason, e.Rule, e.Status = Deny, d.Reason, d.Rule, status
	e.Duration = time.Since(e.Time)
	h.p.emit(*e)
}

// writeError sends c the answer http.Error gives through net/http's server:
// a plain-text body msg, with the deny reason (if any) in
// X-Clawhold-Deny-Reason, in one write.
func writeError(c net.Conn, req *http.Request, status int, msg, denyReason string, close bool) error {
	var b bytes.Buffer
	proto := "HTTP/1.1 "
	if !req.ProtoAtLeast(1, 1) {
		proto = "HTTP/1.0 "
	}
	body := msg + "\n"
	b.WriteString(proto + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	if close {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n")
	if denyReason != "" {
		b.WriteString("X-Clawhold-Deny-Reason: " + oneLine(denyReason) + "\r\n")
	}
	b.WriteString("X-Content-Type-Options: nosniff\r\n\r\n")
	b.WriteString(body)
	c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := c.Write(b.Bytes())
	c.SetWriteDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("answering %d: %w", status, err)
	}
	return nil
}

// handoffListener is the net/http server's listener: serveConn gives it
// the connections whose first request is not a CONNECT.
type handoffListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closer sync.Once
	addr   net.Addr
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{ch: make(chan net.Conn), done: make(chan struct{}), addr: addr}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closer.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// give passes c to the server, or closes it if the server has stopped.
func (l *handoffListener) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// handoffConn is a connection whose first bytes were already read: Read
// returns them first.
type handoffConn struct {
	net.Conn
	prefix []byte
}

func (c *handoffConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

func (c *handoffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// unwrap returns the connection and the bytes not yet read from prefix,
// so that a tunnel can copy from the connection itself.
func (c *handoffConn) unwrap() (net.Conn, []byte) {
	p := c.prefix
	c.prefix = nil
	return c.Conn, p
}
