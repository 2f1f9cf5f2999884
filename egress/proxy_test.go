package egress

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// upstream starts a loopback HTTP server that echoes what it received.
func upstream(t *testing.T) (*httptest.Server, uint16) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Connection", "X-Secret-Hop")
		w.Header().Set("X-Secret-Hop", "must not reach the client")
		fmt.Fprintf(w, "host=%s path=%s body=%s proxy-auth=%q conn-hdr=%q hop=%q ua=%q",
			r.Host, r.URL.Path, body, r.Header.Get("Proxy-Authorization"), r.Header.Get("Connection"), r.Header.Get("X-Hop"), r.Header.Get("User-Agent"))
	}))
	t.Cleanup(srv.Close)
	return srv, port(t, srv.Listener.Addr())
}

func port(t *testing.T, a net.Addr) uint16 {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap.Port()
}

// loopbackPolicy allows upstream.test (which resolves to 127.0.0.1) by
// naming loopback explicitly, and public.test without CIDRs.
func loopbackConfig(extra ...Rule) Config {
	return Config{
		Resolver: newResolver(map[string][]string{
			"upstream.test": {"127.0.0.1"},
			"public.test":   {"127.0.0.1"},
			"ten.test":      {"10.1.2.3"},
			"meta.test":     {"169.254.169.254"},
			"mapped.test":   {"::ffff:127.0.0.1"},
			"nat64.test":    {"64:ff9b::7f00:1"},
			"aws6.test":     {"fd00:ec2::254"},
			"rebind.test":   {"93.184.216.34", "127.0.0.1"},
			"both.test":     {"93.184.216.34,127.0.0.1"},
		}),
		Policies: map[string]Policy{"p": {Rules: append([]Rule{
			{Action: Allow, Host: "upstream.test", CIDRs: loopback8},
			{Action: Allow, Host: "*"},
		}, extra...)}},
	}
}

func TestHTTPAllowed(t *testing.T) {
	_, up := upstream(t)
	tp := startProxy(t, loopbackConfig())
	c := tp.client()
	var reused []bool
	for i := range 2 {
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://upstream.test:%d/p%d", up, i), strings.NewReader("hello"))
		req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "hop")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(i httptrace.GotConnInfo) { reused = append(reused, i.Reused) },
		}))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf(`host=upstream.test:%d path=/p%d body=hello proxy-auth="" conn-hdr="" hop="" ua=`, up, i)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), want) {
			t.Fatalf("response %d %q, want 200 %q", resp.StatusCode, body, want)
		}
		if resp.Header.Get("X-Secret-Hop") != "" {
			t.Error("a header the upstream's Connection named reached the client")
		}
	}
	if len(reused) != 2 || !reused[1] {
		t.Errorf("client connection reused = %v: want keep-alive to the client", reused)
	}
	ev := tp.events.wait(t, 2)
	e := ev[0]
	if e.Action != Allow || e.Method != "POST" || e.Host != "upstream.test" || e.Port != up || e.IP != netip.MustParseAddr("127.0.0.1") ||
		e.Status != 200 || e.BytesUp != 5 || e.BytesDn == 0 || e.Tenant != "t1" || e.Cell != "c1" || e.Policy != "p" || e.Duration <= 0 {
		t.Errorf("event = %+v", e)
	}
	for _, d := range tp.dialer.dialed() {
		if d != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), up) {
			t.Errorf("dialled %s", d)
		}
	}
}

func TestHTTPStreamsResponse(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	}))
	defer srv.Close()
	defer close(release)
	tp := startProxy(t, loopbackConfig())
	resp, err := tp.client().Get(fmt.Sprintf("http://upstream.test:%d/", port(t, srv.Listener.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk %q, %v: the proxy must stream, not buffer", line, err)
	}
}

func TestCONNECTTLSAllowed(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls ok")
	}))
	defer srv.Close()
	tp := startProxy(t, loopbackConfig())
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyURL(tp.url)
	tr.TLSClientConfig = &tls.Config{RootCAs: tr.TLSClientConfig.RootCAs, ServerName: "example.com"}
	resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("https://upstream.test:%d/", port(t, srv.Listener.Addr())))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "tls ok" {
		t.Fatalf("body %q", body)
	}
	tr.CloseIdleConnections()
	e := tp.events.wait(t, 1)[0]
	if e.Method != "CONNECT" || e.Action != Allow || e.BytesUp == 0 || e.BytesDn == 0 || e.IP != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("event = %+v", e)
	}
}

func TestDenied(t *testing.T) {
	tp := startProxy(t, Config{
		Resolver: newResolver(map[string][]string{"api.evil.com": {"93.184.216.34"}}),
		Policies: map[string]Policy{"p": {Rules: []Rule{{Action: Allow, Host: "api.good.com"}}}},
	})
	// Plain HTTP.
	resp, err := tp.client().Get("http://api.evil.com/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), "api.evil.com:80 is not allowed by policy p (no rule matches; add an allow rule to egress.policies.p)") ||
		!strings.Contains(resp.Header.Get("X-Clawhold-Deny-Reason"), "no rule matches") {
		t.Errorf("deny = %d %q %q", resp.StatusCode, body, resp.Header.Get("X-Clawhold-Deny-Reason"))
	}
	// CONNECT.
	_, _, cresp := tp.connect(t, "api.evil.com:443")
	if cresp.StatusCode != 403 {
		t.Errorf("CONNECT status %d, want 403", cresp.StatusCode)
	}
	ev := tp.events.wait(t, 2)
	if ev[1].Action != Deny || ev[1].Method != "CONNECT" || ev[1].Status != 403 || ev[1].Host != "api.evil.com" || ev[1].Port != 443 {
		t.Errorf("event = %+v", ev[1])
	}
	tp.noDial(t)
}

// TestSpecialAddressesDenied: names the policy allows that resolve to
// special addresses, and raw special addresses, are never dialled.
func TestSpecialAddressesDenied(t *testing.T) {
	tp := startProxy(t, loopbackConfig())
	for _, target := range []string{
		"public.test:443", "ten.test:443", "meta.test:80", "mapped.test:443", "nat64.test:443", "aws6.test:443",
		"10.0.0.1:443", "127.0.0.1:443", "169.254.169.254:80", "[::ffff:127.0.0.1]:443", "[::1]:443",
		"[fd00:ec2::254]:80", "[64:ff9b::a9fe:a9fe]:80", "[2002:7f00:1::]:443", "0.0.0.0:443",
		"localhost:443", "LOCALHOST.:443", "x.localhost:443", "metadata.google.internal:80", "both.test:443",
	} {
		_, _, resp := tp.connect(t, target)
		if resp.StatusCode != 403 {
			t.Errorf("CONNECT %s: status %d, want 403", target, resp.StatusCode)
		}
	}
	for _, u := range []string{"http://[::ffff:127.0.0.1]/", "http://ten.test/", "http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/"} {
		resp, err := tp.client().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("GET %s: status %d, want 403", u, resp.StatusCode)
		}
	}
	tp.noDial(t)
}

// TestRebinding: a name whose first answer is public and second private
// cannot reach the private address, and the proxy dials only addresses it
// checked.
func TestRebinding(t *testing.T) {
	tp := startProxy(t, loopbackConfig())
	// First lookup: 93.184.216.34, allowed; the test dialer refuses to
	// leave the machine, so the client sees 502.
	_, _, resp := tp.connect(t, "rebind.test:443")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("first CONNECT: %d, want 502 (allowed, dial refused by the test)", resp.StatusCode)
	}
	// Second lookup: 127.0.0.1.
	for range 3 {
		_, _, resp = tp.connect(t, "rebind.test:443")
		if resp.StatusCode != 403 {
			t.Errorf("CONNECT after rebinding: %d, want 403", resp.StatusCode)
		}
		r, err := tp.client().Get("http://rebind.test:443/")
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 403 {
			t.Errorf("GET after rebinding: %d, want 403", r.StatusCode)
		}
	}
	want := netip.MustParseAddrPort("93.184.216.34:443")
	for _, d := range tp.dialer.dialed() {
		if d != want {
			t.Errorf("proxy dialled %s; only the checked %s may be dialled", d, want)
		}
	}
	if n := len(tp.dialer.dialed()); n != 1 {
		t.Errorf("proxy dialled %d times, want 1", n)
	}
}

// TestHostHeaderCannotRedirect: the URL's host is checked and sent; a
// different Host header cannot point the request elsewhere.
func TestHostHeaderCannotRedirect(t *testing.T) {
	_, up := upstream(t)
	tp := startProxy(t, loopbackConfig())
	c, err := net.Dial("tcp", tp.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET http://upstream.test:%d/x HTTP/1.1\r\nHost: metadata.google.internal\r\n\r\n", up)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), fmt.Sprintf("host=upstream.test:%d ", up)) {
		t.Errorf("response %d %q: want the URL's host sent upstream", resp.StatusCode, body)
	}
}
