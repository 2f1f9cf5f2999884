package egress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
)

// handler serves one listener's connections, all from client.
type handler struct {
	p      *Proxy
	pol    *policyState
	client Client

	maxHeader  int           // limits.max_header_bytes, or net/http's default
	readHeader time.Duration // limits.read_header_timeout, or the default
	handoff    *handoffListener
}

func (h *handler) event(r *http.Request, start time.Time) Event {
	return Event{Time: start, Policy: h.pol.Name, Tenant: h.client.Tenant, Cell: h.client.Cell, Method: r.Method}
}

// badRequest answers 400 for a request the proxy cannot act on.
func (h *handler) badRequest(w http.ResponseWriter, r *http.Request, start time.Time, msg string) {
	e := h.event(r, start)
	e.Action, e.Reason, e.Status = Deny, msg, http.StatusBadRequest
	e.Duration = time.Since(start)
	h.p.emit(e)
	w.Header().Set("Connection", "close")
	http.Error(w, "clawhold egress: "+msg, http.StatusBadRequest)
}

// refuse answers a denied request with 403 and the reason.
func (h *handler) refuse(w http.ResponseWriter, e Event, d Decision, status int) {
	h.deny(&e, d, status)
	w.Header().Set("X-Clawhold-Deny-Reason", oneLine(d.Reason))
	http.Error(w, d.Error(), status)
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var (
		host string
		port uint16
		err  error
	)
	if r.Method == http.MethodConnect {
		host, port, err = hostPort(r.Host, 0)
	} else {
		switch {
		case r.URL.Host == "" || !r.URL.IsAbs():
			h.badRequest(w, r, start, "this is a forward proxy: send absolute-form requests (GET http://host/path) or CONNECT host:port")
			return
		case r.URL.Scheme != "http":
			h.badRequest(w, r, start, fmt.Sprintf("scheme %q is not forwarded: use CONNECT host:443 for https", r.URL.Scheme))
			return
		}
		host, port, err = hostPort(r.URL.Host, 80)
	}
	if err != nil {
		h.badRequest(w, r, start, err.Error())
		return
	}
	e := h.event(r, start)
	e.Host, e.Port = normalizeHost(host), port

	release, ok := h.pol.acquire()
	if !ok {
		h.refuse(w, e, h.maxConnsDecision(e), http.StatusServiceUnavailable)
		return
	}
	defer release()

	ctx, cancel := h.withTotalTimeout(r.Context())
	defer cancel()
	d := h.decide(ctx, r.Method, host, port, &e)
	if d.Action != Allow {
		h.refuse(w, e, d, http.StatusForbidden)
		return
	}
	e.Action, e.Rule, e.Reason = Allow, d.Rule, d.Reason
	if r.Method == http.MethodConnect {
		h.connect(ctx, w, r, d, e)
		return
	}
	h.forward(ctx, w, r, d, e)
}

// withTotalTimeout bounds ctx by the policy's limits.total_timeout.
func (h *handler) withTotalTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if t := h.pol.Limits.TotalTimeout; t > 0 {
		return context.WithTimeout(ctx, t)
	}
	return ctx, func() {}
}

// decide decides host:port under the handler's policy, asking the approver
// when an ask rule matches (and recording how in e.Asked).
func (h *handler) decide(ctx context.Context, method, host string, port uint16, e *Event) Decision {
	d := h.p.decide(ctx, h.pol, host, port)
	if d.Action == Ask {
		d, e.Asked = h.p.ask(ctx, h.client, method, d)
	}
	return d
}

// hopHeaders are removed in both directions (RFC 9110 §7.6.1), as are all
// Proxy-* headers and the headers that Connection names.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "TE", "Trailer",
	"Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(hdr http.Header) {
	for _, v := range hdr.Values("Connection") {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				hdr.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		hdr.Del(k)
	}
	for k := range hdr {
		if strings.HasPrefix(k, "Proxy-") {
			delete(hdr, k)
		}
	}
}

// forward sends a plain-HTTP request on to the checked address and
// streams the response back.
func (h *handler) forward(ctx context.Context, w http.ResponseWriter, r *http.Request, d Decision, e Event) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var activity atomic.Int64
	activity.Store(time.Now().UnixNano())
	idled := watchIdle(ctx, h.pol.Limits.IdleTimeout, &activity, cancel)
	out := r.Clone(context.WithValue(ctx, dialKey{}, dialTarget{addrs: d.Addrs, port: d.Port}))
	out.RequestURI = ""
	out.Host = r.URL.Host
	// The client's Connection: close concerns its own hop; keep upstream
	// connections pooled (as httputil.ReverseProxy does).
	out.Close = false
	removeHopHeaders(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = nil // do not add Go's
	}
	up := &countingReader{r: r.Body, lim: h.pol.limiter, ctx: ctx, activity: &activity}
	if r.Body != nil && r.Body != http.NoBody {
		out.Body = struct {
			io.Reader
			io.Closer
		}{up, r.Body}
	}
	resp, err := h.pol.transport.RoundTrip(out)
	e.BytesUp = up.n.Load()
	if len(d.Addrs) > 0 {
		e.IP = d.Addrs[0]
	}
	if err != nil {
		e.Status = http.StatusBadGateway
		e.Reason = "upstream: " + err.Error()
		switch {
		case idled.Load():
			e.Status, e.Reason = http.StatusGatewayTimeout, fmt.Sprintf("upstream idle for %s (limits.idle_timeout)", h.pol.Limits.IdleTimeout)
		case errors.Is(err, context.DeadlineExceeded):
			e.Status, e.Reason = http.StatusGatewayTimeout, "limits.total_timeout reached"
		}
		e.Duration = time.Since(e.Time)
		h.p.emit(e)
		http.Error(w, "clawhold egress: "+oneLine(e.Reason), e.Status)
		return
	}
	defer resp.Body.Close()
	removeHopHeaders(resp.Header)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	e.Status = resp.StatusCode
	rc := http.NewResponseController(w)
	n, err := copyStream(ctx, flushWriter{w, rc}, resp.Body, h.pol.limiter, &activity, &h.p.bufs)
	e.BytesDn = n
	e.BytesUp = up.n.Load()
	switch {
	case idled.Load():
		e.Reason = fmt.Sprintf("response cut: idle for %s (limits.idle_timeout)", h.pol.Limits.IdleTimeout)
	case err != nil:
		e.Reason = "response interrupted: " + err.Error()
	}
	e.Duration = time.Since(e.Time)
	h.p.emit(e)
}

// flushWriter flushes after every write so that streamed responses (SSE,
// chunked) reach the client as they arrive.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// intercept serves a CONNECT to a host the policy binds a credential to:
// the Injector terminates the client's TLS (client has already been
// answered "200 Connection established"), swaps the placeholder for the
// secret and speaks verified TLS to the real host. It redials the same
// checked address upstream was dialled to, so it can reconnect on
// keep-alive; upstream itself is closed. Other hosts are not handled and
// go through the plain tunnel untouched.
func (p *Proxy) intercept(ctx context.Context, client, upstream net.Conn, d Decision) (handled bool, st InjectStats, err error) {
	ps := p.policies[d.Policy]
	if ps == nil || ps.injector == nil {
		return false, st, nil
	}
	b, ok := ps.binding(d.Host)
	if !ok {
		return false, st, nil
	}
	addr, err := netip.ParseAddrPort(upstream.RemoteAddr().String())
	if err != nil {
		return true, st, fmt.Errorf("upstream address: %w", err)
	}
	upstream.Close()
	st, err = ps.injector.Serve(ctx, client, b, netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port()))
	return true, st, err
}

// binding returns the credential bound to host, if any.
func (ps *policyState) binding(host string) (Binding, bool) {
	for _, in := range ps.Inject {
		if strings.EqualFold(in.Host, host) {
			return Binding{Host: in.Host, Header: in.Header, Placeholder: in.Placeholder, Secret: in.Secret}, true
		}
	}
	return Binding{}, false
}

// connect opens a tunnel to the checked address and copies bytes both
// ways until both sides have finished.
func (h *handler) connect(ctx context.Context, w http.ResponseWriter, r *http.Request, d Decision, e Event) {
	upstream, err := h.p.dial(ctx, d.Addrs, d.Port)
	if err != nil {
		e.Status, e.Reason = http.StatusBadGateway, err.Error()
		e.Duration = time.Since(e.Time)
		h.p.emit(e)
		http.Error(w, "clawhold egress: "+oneLine(err.Error()), http.StatusBadGateway)
		return
	}
	defer upstream.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		e.Status, e.Reason = http.StatusInternalServerError, "cannot take over the connection: "+err.Error()
		h.p.emit(e)
		http.Error(w, "clawhold egress: "+e.Reason, e.Status)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	// Bytes the client sent after the CONNECT request (a TLS ClientHello,
	// typically) may already be buffered.
	var buffered []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		buffered = append(buffered, b...)
	}
	if hc, ok := conn.(*handoffConn); ok {
		var rest []byte
		conn, rest = hc.unwrap()
		buffered = append(buffered, rest...)
	}
	h.established(ctx, conn, buffered, upstream, d, e)
}

// established answers a CONNECT whose upstream is connected with 200 and
// runs the tunnel (or the credential injector) until it ends. buffered
// holds bytes the client sent after the request.
func (h *handler) established(ctx context.Context, conn net.Conn, buffered []byte, upstream net.Conn, d Decision, e Event) {
	if ap, err := netip.ParseAddrPort(upstream.RemoteAddr().String()); err == nil {
		e.IP = ap.Addr().Unmap()
	}
	e.Status = http.StatusOK
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		e.Reason = "client went away"
		e.Duration = time.Since(e.Time)
		h.p.emit(e)
		return
	}
	if h.pol.injector != nil {
		client := conn
		if len(buffered) > 0 {
			client = &prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(buffered), conn)}
		}
		if handled, st, err := h.p.intercept(ctx, client, upstream, d); handled {
			e.BytesUp, e.BytesDn = st.BytesUp, st.BytesDown
			e.Reason = fmt.Sprintf("intercepted for credential injection: %d request(s)", st.Requests)
			if err != nil {
				e.Reason = "credential injection: " + err.Error()
			}
			e.Duration = time.Since(e.Time)
			h.p.emit(e)
			return
		}
	}
	client := conn
	switch {
	case len(buffered) == 0:
	case h.pol.limiter != nil:
		// Through the tunnel's copy, so that the limit applies to them.
		client = &prefixConn{Conn: conn, r: io.MultiReader(bytes.NewReader(buffered), conn)}
	default:
		// Send them on first, so that the tunnel copies between the
		// connections themselves (which lets it splice).
		upstream.SetWriteDeadline(time.Now().Add(30 * time.Second))
		n, err := upstream.Write(buffered)
		upstream.SetWriteDeadline(time.Time{})
		e.BytesUp = int64(n)
		if err != nil {
			e.Reason = "upstream: " + err.Error()
			e.Duration = time.Since(e.Time)
			h.p.emit(e)
			return
		}
	}
	up, down, err := tunnel(ctx, client, upstream, h.pol.limiter, h.pol.Limits.IdleTimeout, &h.p.bufs)
	e.BytesUp += up
	e.BytesDn = down
	if err != nil {
		e.Reason = err.Error()
	}
	e.Duration = time.Since(e.Time)
	h.p.emit(e)
}

// prefixConn reads from r (buffered bytes, then the connection).
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(b []byte) (int, error) { return c.r.Read(b) }

func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
