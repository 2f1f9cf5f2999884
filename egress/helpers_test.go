package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResolver answers from a table. A host with several answers gets them
// in turn, the last one repeating: public-then-private simulates rebinding.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func newResolver(answers map[string][]string) *fakeResolver {
	r := &fakeResolver{answers: make(map[string][][]netip.Addr), calls: make(map[string]int)}
	for host, as := range answers {
		for _, a := range as {
			var set []netip.Addr
			for s := range strings.SplitSeq(a, ",") {
				set = append(set, netip.MustParseAddr(s))
			}
			r.answers[host] = append(r.answers[host], set)
		}
	}
	return r
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(seq)-1)
	r.calls[host]++
	return seq[i], nil
}

// dialRecorder records every address the proxy dials. It connects only to
// loopback: tests never send traffic off this machine.
type dialRecorder struct {
	mu    sync.Mutex
	addrs []netip.AddrPort
}

func (d *dialRecorder) dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	d.mu.Lock()
	d.addrs = append(d.addrs, addr)
	d.mu.Unlock()
	if !addr.Addr().IsLoopback() {
		return nil, fmt.Errorf("test dialer: refusing non-loopback %s", addr)
	}
	var nd net.Dialer
	return nd.DialContext(ctx, "tcp", addr.String())
}

func (d *dialRecorder) dialed() []netip.AddrPort {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]netip.AddrPort(nil), d.addrs...)
}

// eventLog collects events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// wait returns the events once there are at least n.
func (l *eventLog) wait(t *testing.T, n int) []Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		l.mu.Lock()
		if len(l.events) >= n {
			ev := append([]Event(nil), l.events...)
			l.mu.Unlock()
			return ev
		}
		l.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Fatalf("got %d events, want %d: %+v", len(l.events), n, l.events)
	return nil
}

type testProxy struct {
	addr   string
	url    *url.URL
	dialer *dialRecorder
	events *eventLog
	proxy  *Proxy
}

var loopback8 = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// startProxy serves a proxy for policy "p" on a loopback port until the
// test ends. cfg's Dial and Events are replaced by recorders.
func startProxy(t testing.TB, cfg Config) *testProxy {
	t.Helper()
	tp := &testProxy{dialer: &dialRecorder{}, events: &eventLog{}}
	cfg.Dial = tp.dialer.dial
	cfg.Events = tp.events.add
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tp.proxy = p
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, Client{Tenant: "t1", Cell: "c1", Policy: "p"}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	tp.addr = ln.Addr().String()
	tp.url = &url.URL{Scheme: "http", Host: tp.addr}
	return tp
}

// client returns an HTTP client that uses the proxy.
func (tp *testProxy) client() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(tp.url)}, Timeout: 10 * time.Second}
}

// connect opens a CONNECT tunnel to target and returns the connection and
// the proxy's response.
func (tp *testProxy) connect(t *testing.T, target string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s: %v", target, err)
	}
	return c, br, resp
}

// noDial fails the test if the proxy dialled anything.
func (tp *testProxy) noDial(t *testing.T) {
	t.Helper()
	if d := tp.dialer.dialed(); len(d) > 0 {
		t.Errorf("proxy dialled %v, want nothing", d)
	}
}

var urlProxy = url.URL{Scheme: "http", Host: "proxy.invalid"}

var errNoApprover = errors.New("test: no approver")
