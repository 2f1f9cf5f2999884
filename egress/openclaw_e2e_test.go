package egress_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// TestOpenClawGatewayEgress runs the real pinned gateway with proxy.proxyUrl
// pointing at the egress proxy. Its model call (to a local stand-in
// provider, the only stand-in here) must go through the proxy and be
// allowed by the one rule naming it, and the gateway's other outbound
// traffic (its catalog at catalog.openclaw.ai) must be seen and denied. The
// proxy's resolver knows no names, so nothing leaves this machine.
//
// proxy.loopbackMode "proxy" makes the gateway route loopback destinations
// through the proxy too (by default it sends them direct), which is what
// lets a local upstream stand in for a model provider.
func TestOpenClawGatewayEgress(t *testing.T) {
	inst := openclawtest.Install(t)
	up := &openclawtest.Upstream{Reply: "egress-e2e-" + openclawtest.RandomHex(t, 6)}
	us := httptest.NewServer(up)
	defer us.Close()
	upPort := netip.MustParseAddrPort(us.Listener.Addr().String()).Port()

	var mu sync.Mutex
	var evs []egress.Event
	p, err := egress.New(egress.Config{
		Policies: map[string]egress.Policy{"cell": {Name: "cell", Rules: []egress.Rule{{
			Action: egress.Allow, Host: "127.0.0.1", Ports: []uint16{upPort},
			CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		}}}},
		Resolver: noNames{},
		Events:   func(e egress.Event) { mu.Lock(); evs = append(evs, e); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Serve(ctx, ln, egress.Client{Tenant: "acme", Cell: "acme-1", Policy: "cell"})

	token := "tok-" + openclawtest.RandomHex(t, 20)
	models, agents := openclawtest.OpenAIProvider(us.URL+"/v1", "sk-egress-test")
	g := openclawtest.Start(t, inst, map[string]any{
		"gateway": map[string]any{
			"auth": map[string]any{"mode": "token", "token": token},
			"http": map[string]any{"endpoints": map[string]any{"chatCompletions": map[string]any{"enabled": true}}},
		},
		"proxy":  map[string]any{"enabled": true, "proxyUrl": "http://" + ln.Addr().String(), "loopbackMode": "proxy"},
		"models": models,
		"agents": agents,
	})
	code, reply := openclawtest.Chat(t, g, token, "ping")
	if code != http.StatusOK || reply != up.Reply {
		t.Errorf("chat through the proxy: %d %q\n%s", code, reply, g.LogTail(20))
	}
	if len(up.Authorizations()) == 0 {
		t.Fatal("the model provider was never reached")
	}

	var allowedModel, deniedCatalog bool
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !(allowedModel && deniedCatalog) {
		mu.Lock()
		for _, e := range evs {
			if e.Action == egress.Allow && e.Host == "127.0.0.1" && e.Port == upPort && e.Tenant == "acme" && e.Cell == "acme-1" {
				allowedModel = true
			}
			if e.Action == egress.Deny && e.Host == "catalog.openclaw.ai" {
				deniedCatalog = true
			}
		}
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if !allowedModel || !deniedCatalog {
		for _, e := range evs {
			t.Logf("event: %s %s %s:%d %s", e.Action, e.Method, e.Host, e.Port, e.Reason)
		}
		t.Fatalf("decision log: model call allowed=%v, catalog denied=%v; want both", allowedModel, deniedCatalog)
	}
	for _, e := range evs {
		if e.Action == egress.Allow && !(e.Host == "127.0.0.1" && e.Port == upPort) {
			t.Errorf("allowed something the policy does not name: %s %s:%d", e.Method, e.Host, e.Port)
		}
	}
}

// noNames resolves nothing: a test proxy must never reach beyond loopback.
type noNames struct{}

func (noNames) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return nil, &net.DNSError{Err: "no such host (test resolver)", IsNotFound: true}
}
