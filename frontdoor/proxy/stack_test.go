package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/clawhold/clawhold/frontdoor/tlsconf"
)

// TestTLSStack composes the pieces as the front door will: NewServer, TLS
// from tlsconf, SecurityHeaders around the session layer around Proxy. HTTP
// (over HTTP/2), errors and WebSockets (HTTP/1.1 through the header
// middleware's Unwrap) all work and carry the security headers.
func TestTLSStack(t *testing.T) {
	up := newRecorder()
	us := httptest.NewServer(up)
	defer us.Close()
	reg := newRegistry()
	p := newTestProxy(t, Config{Upstream: us.URL, Register: reg.Register})

	ss, err := tlsconf.SelfSigned(t.TempDir(), []string{"door.example"})
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(tlsconf.SecurityHeaders(frontDoor(p)))
	srv.TLSConfig = tlsconf.NewConfig(ss.GetCertificate)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })

	pool := x509.NewCertPool()
	pool.AddCert(ss.Certificate.Leaf)
	addr := l.Addr().String()
	dial := func(network, _ string) (net.Conn, error) { return net.DialTimeout(network, addr, 5*time.Second) }
	h2 := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "door.example"},
		Dial:              dial,
		ForceAttemptHTTP2: true,
	}}
	base := "https://door.example:8443"

	for _, tc := range []struct {
		name   string
		method string
		hdr    http.Header
		code   int
	}{
		{"proxied", "GET", http.Header{"X-Test-Role": {RoleViewer}}, 200},
		{"no identity", "GET", nil, 401},
		{"bad origin", "POST", http.Header{"X-Test-Role": {RoleAdmin}, "Origin": {"https://evil.example"}}, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, base+"/x", nil)
			req.Header = tc.hdr
			if req.Header == nil {
				req.Header = http.Header{}
			}
			resp, err := h2.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || resp.ProtoMajor != 2 {
				t.Errorf("got %d over %s, want %d over HTTP/2", resp.StatusCode, resp.Proto, tc.code)
			}
			if !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age=") ||
				resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("security headers missing: %v", resp.Header)
			}
		})
	}

	h1 := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "door.example"},
		Dial:            dial,
	}}
	c, resp, err := websocket.Dial(t.Context(), "wss://door.example:8443/ws", &websocket.DialOptions{
		HTTPClient: h1,
		HTTPHeader: http.Header{"Origin": {testOrigin}, "X-Test-Role": {RoleOperator}},
	})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer c.CloseNow()
	if resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("101 without security headers: %v", resp.Header)
	}
	echo(t, c, "over tls")
	<-reg.added
	reg.closeSession("s-operator@example.com")
	readErr := make(chan error, 1)
	go func() { _, _, err := c.Read(t.Context()); readErr <- err }()
	select {
	case <-readErr:
	case <-time.After(time.Second):
		t.Fatal("wss connection still open 1 s after its session was closed")
	}
}
