package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestProxyInjectsCredential is credential injection end to end through the
// proxy: the client (standing in for OpenClaw) holds only the placeholder
// and trusts the policy's CA; the local TLS upstream (standing in for the
// model provider) must receive the real key; nothing the client sees may
// contain it; an unbound host on the same policy is tunnelled untouched.
func TestProxyInjectsCredential(t *testing.T) {
	const real = "sk-real-0123456789abcdefghij"
	var mu sync.Mutex
	var got []string
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		mu.Lock()
		got = append(got, auth)
		mu.Unlock()
		w.Header().Set("X-Echo", auth) // a provider that hands the key back
		io.WriteString(w, "you sent: "+auth)
	}))
	defer up.Close()
	upAddr := netip.MustParseAddrPort(up.Listener.Addr().String())
	roots := x509.NewCertPool()
	roots.AddCert(up.Certificate())

	var reads int
	tp := startProxy(t, Config{
		Policies: map[string]Policy{"p": {
			Rules:  []Rule{{Action: Allow, Host: "example.com", Ports: []uint16{upAddr.Port()}, CIDRs: loopback8}},
			Inject: []Injection{{Host: "example.com", Header: "Authorization", Placeholder: "clawhold:openai", Secret: "models/providers/openai/apiKey"}},
		}},
		Resolver: newResolver(map[string][]string{"example.com": {"127.0.0.1"}}),
		Secrets: func(_ context.Context, name string) ([]byte, error) {
			mu.Lock()
			reads++
			mu.Unlock()
			if name != "models/providers/openai/apiKey" {
				t.Errorf("secret %q asked for", name)
			}
			return []byte(real), nil
		},
		UpstreamRoots: roots,
	})
	caPEM := tp.proxy.CACertPEM("p")
	if caPEM == nil {
		t.Fatal("a policy that injects has no CA certificate")
	}
	clientRoots := x509.NewCertPool()
	if !clientRoots.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA certificate does not parse")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy:           http.ProxyURL(tp.url),
		TLSClientConfig: &tls.Config{RootCAs: clientRoots},
	}}
	for i := range 2 { // two requests: keep-alive inside the intercepted tunnel
		req, _ := http.NewRequest("GET", "https://example.com:"+strconv.Itoa(int(upAddr.Port()))+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer clawhold:openai")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seen := string(body) + resp.Header.Get("X-Echo")
		if strings.Contains(seen, real) {
			t.Fatalf("request %d: the client saw the real key", i)
		}
		if !strings.Contains(string(body), "Bearer clawhold:openai") || resp.Header.Get("X-Echo") != "Bearer clawhold:openai" {
			t.Fatalf("request %d: the echo was not scrubbed back to the placeholder: %d bytes", i, len(body))
		}
	}
	mu.Lock()
	if reads == 0 {
		t.Error("the secret was never read from the store")
	}
	if len(got) != 2 || got[0] != "Bearer "+real || got[1] != "Bearer "+real {
		t.Fatalf("upstream received %d requests, want 2 carrying the real key", len(got))
	}
	mu.Unlock()
	// The tunnel's event is written when it closes.
	client.CloseIdleConnections()
	if e := tp.events.wait(t, 1)[0]; !strings.Contains(e.Reason, "credential injection: 2 request(s)") || e.BytesUp == 0 || e.BytesDn == 0 {
		t.Errorf("event does not record the intercepted tunnel: %+v", e)
	}

	// The interception CA is trusted for bound hosts only: a client that
	// trusts it gets no certificate from it for anything else, because
	// unbound hosts are tunnelled to the real server untouched.
	if tp.proxy.CACertPEM("nope") != nil {
		t.Error("unknown policy has a CA")
	}
}

// TestProxyInjectRequiresSecrets: a policy that binds credentials without a
// secret source is a configuration error, not a silent pass-through.
func TestProxyInjectRequiresSecrets(t *testing.T) {
	_, err := New(Config{Policies: map[string]Policy{"p": {
		Inject: []Injection{{Host: "api.openai.com", Header: "Authorization", Placeholder: "clawhold:openai", Secret: "k"}},
	}}})
	if err == nil || !strings.Contains(err.Error(), "no secret source") {
		t.Fatalf("New = %v", err)
	}
}
