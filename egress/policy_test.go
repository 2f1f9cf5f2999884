package egress

import (
	"context"
	"net/netip"
	"strings"
	"testing"
)

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

func TestDecide(t *testing.T) {
	res := newResolver(map[string][]string{
		"api.example.com":      {"93.184.216.34"},
		"example.com":          {"93.184.216.34"},
		"a.b.example.com":      {"93.184.216.35"},
		"evil.example.com":     {"93.184.216.36"},
		"internal.example.com": {"10.1.2.3"},
		"mapped.example.com":   {"::ffff:127.0.0.1"},
		"mixed.example.com":    {"93.184.216.34,169.254.169.254"},
		"lan.test":             {"10.1.2.3"},
		"lan-other.test":       {"10.9.9.9"},
		"any.test":             {"93.184.216.40"},
		"nat64.test":           {"64:ff9b::a01:203"},
	})
	rules := []Rule{
		{Action: Allow, Host: "api.example.com", Ports: []uint16{443}},
		{Action: Allow, Host: "*.example.com", Ports: []uint16{443}},
		{Action: Deny, Host: "evil.example.com"},
		{Action: Allow, Host: "lan.test", CIDRs: pfx("10.1.0.0/16")},
		{Action: Allow, Host: "lan-other.test", CIDRs: pfx("10.1.0.0/16")},
		{Action: Allow, Host: "10.1.2.3", Ports: []uint16{8080}, CIDRs: pfx("10.1.2.3/32")},
		{Action: Deny, Host: "*", CIDRs: pfx("93.184.216.40/32")},
		{Action: Allow, Host: "any.test"},
		{Action: Ask, Host: "ask.example.com"},
		{Action: Allow, Host: "nat64.test", CIDRs: pfx("64:ff9b::/96")},
	}
	p, err := New(Config{Resolver: res, Policies: map[string]Policy{"p": {Rules: rules}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host   string
		port   uint16
		action Action
		reason string
	}{
		{"api.example.com", 443, Allow, ""},
		{"API.Example.COM.", 443, Allow, ""},              // case and trailing dot
		{"api.example.com", 80, Deny, "no rule matches"},  // port
		{"a.b.example.com", 443, Allow, ""},               // suffix, deeper
		{"example.com", 443, Deny, "no rule matches"},     // suffix does not match the apex
		{"xexample.com", 443, Deny, "no rule matches"},    // nor a longer name
		{"evil.example.com", 443, Deny, "denied by rule"}, // deny wins over *.example.com
		{"internal.example.com", 443, Deny, "10.1.2.3 is private network"},
		{"mapped.example.com", 443, Deny, "loopback"},
		{"mixed.example.com", 443, Deny, "169.254.169.254 is cloud metadata"}, // every address is checked
		{"lan.test", 443, Allow, ""},                                          // explicit CIDR reaches a private address
		{"lan-other.test", 443, Deny, "10.9.9.9 is private"},                  // but only inside it
		{"10.1.2.3", 8080, Allow, ""},                                         // raw IP with CIDR
		{"10.1.2.3", 443, Deny, "no rule matches"},
		{"10.9.9.9", 443, Deny, "no rule matches"},
		{"any.test", 443, Deny, "denied by rule"}, // deny by CIDR wins
		{"ask.example.com", 443, Deny, "cannot resolve"},
		{"nat64.test", 443, Deny, "NAT64 10.1.2.3, private"}, // the embedded address is checked too
		{"localhost", 443, Deny, "always blocked"},
		{"foo.localhost", 443, Deny, "always blocked"},
		{"metadata.google.internal", 80, Deny, "always blocked"},
		{"127.1", 80, Deny, "neither a DNS name"},
		{"2130706433", 80, Deny, "neither a DNS name"},
		{"0x7f.0x1", 80, Deny, "neither a DNS name"},
		{"api.example.com", 0, Deny, "port 0"},
		{"fe80::1%eth0", 443, Deny, "zones"},
	}
	for _, tt := range tests {
		d, err := p.Check(context.Background(), "p", tt.host, tt.port)
		if err != nil {
			t.Fatal(err)
		}
		if d.Action != tt.action || !strings.Contains(d.Reason, tt.reason) {
			t.Errorf("Check(%s:%d) = %s %q, want %s %q", tt.host, tt.port, d.Action, d.Reason, tt.action, tt.reason)
		}
	}
	if _, err := p.Check(context.Background(), "nope", "a.com", 443); err == nil {
		t.Error("Check with an unknown policy succeeded")
	}
}

func TestDecideAskAndDenyOrder(t *testing.T) {
	res := newResolver(map[string][]string{"x.test": {"93.184.216.34"}})
	for _, tt := range []struct {
		name  string
		rules []Rule
		want  Action
	}{
		{"ask", []Rule{{Action: Ask, Host: "x.test"}}, Ask},
		{"allow beats ask", []Rule{{Action: Ask, Host: "*"}, {Action: Allow, Host: "x.test"}}, Allow},
		{"deny beats ask", []Rule{{Action: Ask, Host: "x.test"}, {Action: Deny, Host: "*.test"}}, Deny},
		{"deny beats allow in any order", []Rule{{Action: Deny, Host: "*"}, {Action: Allow, Host: "x.test"}}, Deny},
		{"empty policy denies", nil, Deny},
	} {
		p, err := New(Config{Resolver: res, Policies: map[string]Policy{"p": {Rules: tt.rules}}})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := p.Check(context.Background(), "p", "x.test", 443)
		if d.Action != tt.want {
			t.Errorf("%s: %s (%s), want %s", tt.name, d.Action, d.Reason, tt.want)
		}
	}
}

func TestOpenClawProfile(t *testing.T) {
	rules := OpenClawProfile()
	seen := map[string]bool{}
	for _, r := range rules {
		if r.Action != Allow || len(r.Ports) != 1 || r.Ports[0] != 443 || len(r.CIDRs) != 0 {
			t.Errorf("profile rule %s: want allow on 443 only", r)
		}
		if r.Host == "*" || ValidHost(r.Host) != nil {
			t.Errorf("profile rule %s: bad host", r)
		}
		seen[r.Host] = true
	}
	for _, h := range []string{"api.openai.com", "api.anthropic.com", "api.telegram.org", "*.slack.com"} {
		if !seen[h] {
			t.Errorf("profile lacks %s", h)
		}
	}
	if _, ok := Profile("nope"); ok {
		t.Error("Profile(nope) exists")
	}
}

func TestNewRejectsBadRules(t *testing.T) {
	for _, r := range []Rule{{Action: "permit", Host: "a.com"}, {Action: Allow, Host: "a.*.com"}, {Action: Allow, Host: ""}, {Action: Allow, Host: "A.com"}} {
		if _, err := New(Config{Policies: map[string]Policy{"p": {Rules: []Rule{r}}}}); err == nil {
			t.Errorf("New accepted rule %+v", r)
		}
	}
}
