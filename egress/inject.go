package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

const (
	injectDefaultMaxHeaderBytes = http.DefaultMaxHeaderBytes
	injectDefaultIdleTimeout    = 90 * time.Second
	// injectHandshakeTimeout bounds each TLS handshake and upstream dial.
	injectHandshakeTimeout = 30 * time.Second
	// injectSecretTTL is how long one tunnel reuses a fetched secret.
	injectSecretTTL = time.Minute
	// injectWriteGrace is how long after a complete response the request
	// may still be being written upstream before the connections are
	// closed (the upstream answered without reading the whole body).
	injectWriteGrace = 5 * time.Second
	// injectLinger and injectLingerBytes bound how much of a refused
	// request is read and discarded before the connection is closed.
	injectLinger      = 500 * time.Millisecond
	injectLingerBytes = 256 << 10
)

// Binding says which credential to inject for one host.
type Binding struct {
	// Host is the exact host name (or IP address) the tunnel is for, e.g.
	// api.openai.com. Requests must carry it as their Host.
	Host string
	// Header is the request header that carries the placeholder, e.g.
	// Authorization.
	Header string
	// Placeholder is the token the client sends instead of the credential,
	// e.g. "clawhold:openai" in "Authorization: Bearer clawhold:openai".
	// Every occurrence of it inside the values of Header is replaced by the
	// secret; the rest of the value ("Bearer ") is kept. Occurrences
	// elsewhere (other headers, the URL, the body) are left alone.
	Placeholder string
	// Secret is the name of the secret in the store.
	Secret string
}

// SecretFunc returns the current value of the named secret. It is called
// at most once a minute per tunnel; cache in it if the store is slow.
type SecretFunc func(ctx context.Context, name string) ([]byte, error)

// InjectStats counts what one intercepted tunnel carried. Bytes are HTTP
// bytes (inside TLS) read from and written to the client.
type InjectStats struct {
	BytesUp   int64 // from the client
	BytesDown int64 // to the client
	Requests  int   // requests read from the client
}

// Injector terminates the TLS of tunnels to hosts bound to a secret,
// injects the secret into each request and forwards it to the real
// upstream over verified TLS, scrubbing the secret out of every response.
// An Injector may serve many tunnels concurrently; do not modify it while
// it does.
type Injector struct {
	CA      *CA        // signs the certificate presented to the client
	Secrets SecretFunc // the secret store
	// RootCAs verifies upstream certificates; nil means the system roots.
	// Verification is never skipped.
	RootCAs *x509.CertPool
	// Dial connects to the upstream address exactly as given (no DNS); nil
	// means a net.Dialer. The proxy passes its policy-checked dialer.
	Dial func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error)
	// MaxHeaderBytes bounds a request's line and headers; 0 means
	// http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// IdleTimeout ends the tunnel when no bytes move on the client or the
	// upstream connection for this long while one is awaited (including
	// between requests, and while waiting for a response), and retires an
	// upstream connection left unused for longer; 0 means 90s.
	IdleTimeout time.Duration
	Logger      *slog.Logger // nil discards; secret values are never logged
}

// Serve handles one intercepted tunnel. client is the connection from
// which the proxy has read the CONNECT request and to which it has written
// its "200 Connection Established" response; upstream is the exact,
// policy-checked address of b.Host. Serve closes client and returns when
// the client closes the tunnel, ctx is done, or the connection cannot go
// on.
//
// Serve presents the client a certificate for b.Host signed by CA (ALPN
// http/1.1 only; a ClientHello naming another server is refused) and then
// reads HTTP/1.1 requests, keeping the connection alive. For each:
//   - a Host other than b.Host gets 421 Misdirected Request, and upgrades
//     (WebSocket) and CONNECT get 501; nothing is sent upstream and the
//     tunnel is closed;
//   - every occurrence of b.Placeholder in the values of header b.Header
//     is replaced by the secret; a request without it is forwarded
//     unchanged (the client has no credential to leak, and the upstream
//     will simply refuse it);
//   - hop-by-hop headers, Range and If-Range (partial responses could
//     smuggle the secret out in pieces) are removed and Accept-Encoding is
//     set to identity, so the response can be scrubbed;
//   - the request is sent over TLS to upstream, verified against RootCAs
//     for the name b.Host, reusing the upstream connection while it lasts.
//     A connection or verification failure gets 502 with the reason;
//   - the response is streamed back with every occurrence of the secret in
//     its status line, headers and body replaced by b.Placeholder. If that
//     changes the length, Content-Length is dropped and the body is sent
//     chunked (or, to an HTTP/1.0 client, delimited by closing). A body
//     with a Content-Encoding other than identity cannot be scrubbed and
//     gets 502. Trailers are dropped.
//
// The secret is fetched before the first request is forwarded and again
// after a minute, and every response is scrubbed whether or not its
// request carried the placeholder. If it cannot be fetched, or it
// overlaps the placeholder (so that scrubbing could not be guaranteed),
// the request gets 502.
//
// Serve returns nil when the client ends the tunnel cleanly, and an error
// describing what went wrong otherwise (after telling the client, when
// there was a request to answer). The error never contains the secret.
func (in *Injector) Serve(ctx context.Context, client net.Conn, b Binding, upstream netip.AddrPort) (InjectStats, error) {
	defer client.Close()
	s := &injectSession{in: in, b: b, upstream: upstream, host: caHost(b.Host)}
	if err := injectValidate(in, b, upstream); err != nil {
		return InjectStats{}, err
	}
	s.token = []byte(b.Placeholder)
	s.header = http.CanonicalHeaderKey(b.Header)
	s.log = in.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("host", s.host, "upstream", upstream.String())
	s.idle = in.IdleTimeout
	if s.idle <= 0 {
		s.idle = injectDefaultIdleTimeout
	}
	s.maxHeader = int64(in.MaxHeaderBytes)
	if s.maxHeader <= 0 {
		s.maxHeader = injectDefaultMaxHeaderBytes
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx = ctx
	stop := context.AfterFunc(ctx, func() { client.Close() })
	defer stop()
	defer s.closeUpstream()

	leaf, err := in.CA.Leaf(s.host)
	if err != nil {
		return InjectStats{}, fmt.Errorf("egress: inject %s: %w", s.host, err)
	}
	tc := tls.Server(client, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if hi.ServerName != "" && caHost(hi.ServerName) != s.host {
				return nil, fmt.Errorf("server name %q is not the tunnel's host", hi.ServerName)
			}
			return leaf, nil
		},
	})
	hctx, hcancel := context.WithTimeout(ctx, injectHandshakeTimeout)
	err = tc.HandshakeContext(hctx)
	hcancel()
	if err != nil {
		return InjectStats{}, fmt.Errorf("egress: inject %s: client TLS handshake: %w", s.host, err)
	}
	defer tc.Close()

	s.client = tc
	s.limit = &io.LimitedReader{R: &injectIO{c: tc, idle: s.idle, n: &s.up}, N: s.maxHeader}
	s.cr = bufio.NewReader(s.limit)
	s.cw = bufio.NewWriter(&injectIO{c: tc, idle: s.idle, n: &s.down})
	err = s.loop()
	if s.failed && ctx.Err() == nil {
		// The client may still be sending the request we refused: read
		// it for a moment so that closing does not reset the connection
		// before the client has read the error response.
		tc.CloseWrite()
		tc.SetReadDeadline(time.Now().Add(injectLinger))
		io.CopyN(io.Discard, tc, injectLingerBytes)
	}
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("egress: inject %s: %w", s.host, context.Cause(ctx))
	}
	return InjectStats{BytesUp: s.up.Load(), BytesDown: s.down.Load(), Requests: s.requests}, err
}

// injectValidate checks an Injector and a Binding before use.
func injectValidate(in *Injector, b Binding, upstream netip.AddrPort) error {
	switch {
	case in.CA == nil:
		return errors.New("egress: inject: no CA")
	case in.Secrets == nil:
		return errors.New("egress: inject: no secret store")
	case caHost(b.Host) == "":
		return errors.New("egress: inject: binding has no host")
	case b.Placeholder == "":
		return fmt.Errorf("egress: inject %s: empty placeholder", b.Host)
	case b.Secret == "":
		return fmt.Errorf("egress: inject %s: no secret named", b.Host)
	case !upstream.IsValid():
		return fmt.Errorf("egress: inject %s: invalid upstream address", b.Host)
	}
	if b.Header == "" || strings.IndexFunc(b.Header, func(r rune) bool { return !injectTokenChar(r) }) >= 0 {
		return fmt.Errorf("egress: inject %s: invalid header name %q", b.Host, b.Header)
	}
	if !injectHeaderSafe([]byte(b.Placeholder)) {
		return fmt.Errorf("egress: inject %s: placeholder has control characters", b.Host)
	}
	return nil
}

// injectTokenChar reports whether r may appear in an HTTP header name.
func injectTokenChar(r rune) bool {
	return r < 0x7f && r > ' ' && !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
}

// injectHeaderSafe reports whether v can be put in a header value as is.
func injectHeaderSafe(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// injectIO moves bytes over a connection, counting them, and pushes the
// connection's deadline idle into the future before every read and write,
// so that a connection on which nothing moves for that long fails.
type injectIO struct {
	c    net.Conn
	idle time.Duration
	n    *atomic.Int64 // nil: not counted
	// fixed, while set, leaves the read deadline as the caller set it.
	// Only the goroutine reading sets it.
	fixed bool
}

func (c *injectIO) Read(p []byte) (int, error) {
	if !c.fixed {
		c.c.SetReadDeadline(time.Now().Add(c.idle))
	}
	n, err := c.c.Read(p)
	if c.n != nil {
		c.n.Add(int64(n))
	}
	return n, err
}

func (c *injectIO) Write(p []byte) (int, error) {
	c.c.SetWriteDeadline(time.Now().Add(c.idle))
	n, err := c.c.Write(p)
	if c.n != nil {
		c.n.Add(int64(n))
	}
	return n, err
}

// injectSession is the state of one intercepted tunnel. Apart from the
// counters it is used by one goroutine at a time.
type injectSession struct {
	in       *Injector
	b        Binding
	host     string // normalised b.Host
	header   string // canonical b.Header
	token    []byte // b.Placeholder
	upstream netip.AddrPort
	log      *slog.Logger
	ctx      context.Context
	idle     time.Duration

	maxHeader int64
	client    *tls.Conn
	limit     *io.LimitedReader // under cr; bounds request headers
	cr        *bufio.Reader
	cw        *bufio.Writer

	secret   []byte
	secretAt time.Time

	upConn   *tls.Conn
	upIO     *injectIO
	upStop   func() bool
	ur       *bufio.Reader
	uw       *bufio.Writer
	upIdleAt time.Time

	up, down atomic.Int64
	requests int
	failed   bool // an error response was sent
}

func (s *injectSession) loop() error {
	for {
		s.limit.N = s.maxHeader
		req, err := http.ReadRequest(s.cr)
		if err != nil {
			switch {
			case s.limit.N <= 0:
				s.fail(http.StatusRequestHeaderFieldsTooLarge, "request headers too large")
				return fmt.Errorf("egress: inject %s: request headers exceed %d bytes", s.host, s.maxHeader)
			case errors.Is(err, io.EOF), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, net.ErrClosed):
				return nil // the client closed or left the connection idle
			default:
				s.fail(http.StatusBadRequest, "malformed request")
				return fmt.Errorf("egress: inject %s: reading request: %w", s.host, err)
			}
		}
		s.limit.N = math.MaxInt64
		s.requests++
		keep, err := s.handle(req)
		if err != nil || !keep {
			return err
		}
	}
}

// handle answers one request. keep reports whether the client connection
// may carry another.
func (s *injectSession) handle(req *http.Request) (keep bool, err error) {
	host := req.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	switch {
	case host == "":
		s.fail(http.StatusBadRequest, "missing Host header")
		return false, nil
	case caHost(host) != s.host:
		s.fail(http.StatusMisdirectedRequest, "this tunnel only carries requests for "+s.host)
		return false, fmt.Errorf("egress: inject %s: refused request for host %q", s.host, host)
	case req.Method == http.MethodConnect || req.Header.Get("Upgrade") != "":
		s.fail(http.StatusNotImplemented, "upgrades and CONNECT are not supported on credential-injected hosts")
		return false, nil
	}
	if err := s.fetchSecret(); err != nil {
		s.fail(http.StatusBadGateway, "the credential for "+s.host+" is unavailable")
		return false, err
	}

	injected := false
	for i, v := range req.Header[s.header] {
		if strings.Contains(v, s.b.Placeholder) {
			req.Header[s.header][i] = strings.ReplaceAll(v, s.b.Placeholder, string(s.secret))
			injected = true
		}
	}
	injectStripHopByHop(req.Header)
	req.Header.Del("Range")
	req.Header.Del("If-Range")
	req.Header.Set("Accept-Encoding", "identity")
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header["User-Agent"] = []string{""} // keep Request.Write from adding one
	}
	clientClose := req.Close
	req.Close = false
	log := s.log.With("method", req.Method, "injected", injected)

	if err := s.ensureUpstream(); err != nil {
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			s.fail(http.StatusBadGateway, fmt.Sprintf("upstream %s failed certificate verification: %v", s.host, cv.Err))
		} else {
			s.fail(http.StatusBadGateway, fmt.Sprintf("cannot reach upstream %s: %v", s.host, err))
		}
		log.Warn("egress inject: upstream unavailable", "err", err)
		return false, err
	}

	writeDone := make(chan error, 1)
	uw := s.uw
	go func() {
		err := req.Write(uw)
		if err == nil {
			err = uw.Flush()
		}
		writeDone <- err
	}()
	resp, err := s.readResponse(req)
	if err != nil {
		s.closeUpstream()
		<-writeDone
		if resp == nil {
			s.fail(http.StatusBadGateway, "upstream "+s.host+" did not answer")
		}
		log.Warn("egress inject: upstream response failed", "err", err)
		return false, fmt.Errorf("egress: inject %s: upstream response: %w", s.host, err)
	}
	defer resp.Body.Close()
	keep, err = s.writeResponse(req, resp, clientClose)
	log.Debug("egress inject: request", "status", resp.StatusCode)

	var werr error
	select {
	case werr = <-writeDone:
	case <-time.After(injectWriteGrace):
		// The writer is stuck writing upstream or reading the rest of
		// the body from the client; neither connection can go on.
		s.closeUpstream()
		s.client.Close()
		if werr = <-writeDone; werr == nil {
			werr = errors.New("upstream answered before reading the request")
		}
	}
	if werr != nil {
		s.closeUpstream()
		keep = false // the request body may be half read
		if err == nil {
			err = fmt.Errorf("egress: inject %s: writing request upstream: %w", s.host, werr)
		}
	}
	if err != nil || resp.Close {
		s.closeUpstream()
	} else {
		s.upIdleAt = time.Now()
	}
	return keep && err == nil, err
}

// readResponse reads the upstream's response to req, passing interim
// (1xx) responses on to the client.
func (s *injectSession) readResponse(req *http.Request) (*http.Response, error) {
	for {
		resp, err := http.ReadResponse(s.ur, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				s.fail(http.StatusBadGateway, "upstream switched protocols unasked")
				return resp, errors.New("unexpected 101 Switching Protocols")
			}
			return resp, nil
		}
		h := s.scrubHeader(resp.Header)
		injectStripHopByHop(h)
		s.cw.WriteString("HTTP/1.1 " + scrubString(resp.Status, s.secret, s.token) + "\r\n")
		h.Write(s.cw)
		s.cw.WriteString("\r\n")
		if err := s.cw.Flush(); err != nil {
			return nil, err
		}
	}
}

// writeResponse streams resp, scrubbed, to the client.
func (s *injectSession) writeResponse(req *http.Request, resp *http.Response, clientClose bool) (keep bool, err error) {
	bodyless := req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified
	if ce := resp.Header.Get("Content-Encoding"); !bodyless && ce != "" && !strings.EqualFold(ce, "identity") {
		s.closeUpstream()
		s.fail(http.StatusBadGateway, "upstream sent a "+ce+"-encoded body, which cannot be scrubbed")
		return false, fmt.Errorf("egress: inject %s: upstream sent Content-Encoding %q", s.host, ce)
	}
	h := s.scrubHeader(resp.Header)
	injectStripHopByHop(h)
	h.Del("Trailer")
	sameLen := len(s.secret) == len(s.token)
	chunked := false
	switch {
	case bodyless:
		if !sameLen {
			h.Del("Content-Length")
		}
	case sameLen && resp.ContentLength >= 0:
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	case req.ProtoAtLeast(1, 1):
		h.Del("Content-Length")
		h.Set("Transfer-Encoding", "chunked")
		chunked = true
	default:
		h.Del("Content-Length")
		clientClose = true // the body ends when the connection does
	}
	if clientClose {
		h.Set("Connection", "close")
	}
	s.cw.WriteString("HTTP/1.1 " + scrubString(resp.Status, s.secret, s.token) + "\r\n")
	h.Write(s.cw)
	s.cw.WriteString("\r\n")
	if bodyless {
		return !clientClose, s.cw.Flush()
	}

	var dst io.Writer = s.cw
	var cw io.WriteCloser
	if chunked {
		cw = httputil.NewChunkedWriter(s.cw)
		dst = cw
	}
	src := newScrubReader(resp.Body, s.secret, s.token)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return false, fmt.Errorf("egress: inject %s: writing response: %w", s.host, err)
			}
			if err := s.cw.Flush(); err != nil {
				return false, fmt.Errorf("egress: inject %s: writing response: %w", s.host, err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			s.closeUpstream()
			return false, fmt.Errorf("egress: inject %s: reading upstream response: %w", s.host, rerr)
		}
	}
	if chunked {
		cw.Close()
		s.cw.WriteString("\r\n")
	}
	if err := s.cw.Flush(); err != nil {
		return false, fmt.Errorf("egress: inject %s: writing response: %w", s.host, err)
	}
	return !clientClose, nil
}

// scrubHeader returns a copy of h with the secret replaced by the
// placeholder in every name and value.
func (s *injectSession) scrubHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vs := range h {
		k = http.CanonicalHeaderKey(scrubString(k, s.secret, s.token))
		for _, v := range vs {
			out[k] = append(out[k], scrubString(v, s.secret, s.token))
		}
	}
	return out
}

// injectStripHopByHop removes the hop-by-hop headers of RFC 9110 §7.6.1
// and those named in Connection.
func injectStripHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Transfer-Encoding", "Upgrade"} {
		h.Del(name)
	}
}

// fetchSecret makes sure s.secret is fresh.
func (s *injectSession) fetchSecret() error {
	if s.secret != nil && time.Since(s.secretAt) < injectSecretTTL {
		return nil
	}
	v, err := s.in.Secrets(s.ctx, s.b.Secret)
	if err != nil {
		return fmt.Errorf("egress: inject %s: fetching secret %q: %w", s.host, s.b.Secret, err)
	}
	if err := scrubCheck(v, s.token); err != nil {
		return fmt.Errorf("egress: inject %s: secret %q unusable: %v", s.host, s.b.Secret, err)
	}
	if !injectHeaderSafe(v) {
		return fmt.Errorf("egress: inject %s: secret %q has control characters", s.host, s.b.Secret)
	}
	s.secret, s.secretAt = append([]byte(nil), v...), time.Now()
	return nil
}

// ensureUpstream makes sure there is a live, verified upstream connection.
func (s *injectSession) ensureUpstream() error {
	if s.upConn != nil && !s.upstreamReusable() {
		s.closeUpstream()
	}
	if s.upConn != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.ctx, injectHandshakeTimeout)
	defer cancel()
	dial := s.in.Dial
	if dial == nil {
		dial = func(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr.String())
		}
	}
	raw, err := dial(ctx, "tcp", s.upstream)
	if err != nil {
		return fmt.Errorf("egress: inject %s: dialing %s: %w", s.host, s.upstream, err)
	}
	tc := tls.Client(raw, &tls.Config{
		ServerName: s.host,
		RootCAs:    s.in.RootCAs,
		NextProtos: []string{"http/1.1"},
		MinVersion: tls.VersionTLS12,
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return fmt.Errorf("egress: inject %s: upstream TLS: %w", s.host, err)
	}
	s.upConn = tc
	s.upStop = context.AfterFunc(s.ctx, func() { raw.Close() })
	s.upIO = &injectIO{c: tc, idle: s.idle}
	s.ur = bufio.NewReader(s.upIO)
	s.uw = bufio.NewWriter(s.upIO)
	return nil
}

// upstreamReusable reports whether the idle upstream connection may carry
// another request: it has not been idle too long, and it has neither been
// closed nor sent anything unasked.
func (s *injectSession) upstreamReusable() bool {
	if time.Since(s.upIdleAt) > s.idle || s.ur.Buffered() > 0 {
		return false
	}
	s.upIO.fixed = true
	s.upConn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := s.ur.Peek(1)
	s.upIO.fixed = false
	return errors.Is(err, os.ErrDeadlineExceeded)
}

func (s *injectSession) closeUpstream() {
	if s.upConn == nil {
		return
	}
	s.upStop()
	s.upConn.Close()
	s.upConn, s.upIO, s.ur, s.uw, s.upStop = nil, nil, nil, nil, nil
}

// fail sends the client a plain-text error response and asks it to close
// the connection.
func (s *injectSession) fail(code int, msg string) {
	s.failed = true
	body := "clawhold: " + msg + "\n"
	if s.secret != nil {
		body = scrubString(body, s.secret, s.token)
	}
	fmt.Fprintf(s.cw, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n%s",
		code, http.StatusText(code), len(body), body)
	s.cw.Flush()
}
