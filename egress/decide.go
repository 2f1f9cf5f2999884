package egress

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Resolver looks up a host's addresses. *net.Resolver implements it; tests
// inject one that answers what they need.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Decision is the outcome of checking one destination against a policy.
type Decision struct {
	Policy string `json:"policy"`
	Host   string `json:"host"` // normalized: lower case, no trailing dot, no brackets
	Port   uint16 `json:"port"`
	Action Action `json:"action"`         // Allow, Deny or Ask (Ask only before the approver answered)
	Rule   string `json:"rule,omitempty"` // the rule that decided, if one did
	// Reason is short and says what to change, e.g. "no rule matches; add
	// an allow rule to egress.policies.default".
	Reason string `json:"reason,omitempty"`
	// Addrs are the checked addresses the proxy may dial, in order.
	Addrs []netip.Addr `json:"addrs,omitempty"`

	rule Rule // the matching allow or ask rule
}

// Error is the message a denied client receives.
func (d Decision) Error() string {
	return fmt.Sprintf("clawhold egress: %s is not allowed by policy %s (%s)",
		net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port))), d.Policy, d.Reason)
}

// normalizeHost lower-cases host and removes a trailing dot and IPv6
// brackets.
func normalizeHost(host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return host
}

// decide checks host:port against policy pol. It resolves names with
// p.resolver and checks every address; it never connects.
func (p *Proxy) decide(ctx context.Context, pol *policyState, host string, port uint16) Decision {
	host = normalizeHost(host)
	d := Decision{Policy: pol.Name, Host: host, Port: port, Action: Deny}
	fix := "add an allow rule to egress.policies." + pol.Name
	deny := func(format string, args ...any) Decision {
		d.Action = Deny
		d.Reason = fmt.Sprintf(format, args...)
		return d
	}
	if port == 0 {
		return deny("port 0 is not a destination")
	}
	ip, ipErr := netip.ParseAddr(host)
	if ipErr != nil {
		if !validName(host) {
			return deny("%q is neither a DNS name nor a canonical IP address", host)
		}
		if why := blockedName(host); why != "" {
			return deny("%s is always blocked (%s)", host, why)
		}
	} else if ip.Zone() != "" {
		return deny("IPv6 zones are not allowed")
	}

	rules := slices.Concat(pol.Rules, p.remembered.get(pol.Name))
	var cands []Rule
	for _, r := range rules {
		if !r.matchesName(host, port) {
			continue
		}
		if r.Action == Deny && len(r.CIDRs) == 0 {
			d.Rule = r.String()
			return deny("denied by rule %q", r.String())
		}
		cands = append(cands, r)
	}
	if !hasAction(cands, Allow) && !hasAction(cands, Ask) {
		return deny("no rule matches; %s", fix)
	}

	var addrs []netip.Addr
	if ipErr == nil {
		addrs = []netip.Addr{ip}
	} else {
		var err error
		addrs, err = p.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return deny("cannot resolve %s: %v", host, err)
		}
		if len(addrs) == 0 {
			return deny("%s has no addresses", host)
		}
	}
	classes := make([]Classified, len(addrs))
	for i, a := range addrs {
		classes[i] = Classify(a)
		for _, r := range cands {
			if r.Action == Deny && (r.inCIDRs(a) || classes[i].Embedded.IsValid() && r.inCIDRs(classes[i].Embedded)) {
				d.Rule = r.String()
				return deny("%s resolves to %s, denied by rule %q", host, a, r.String())
			}
		}
	}
	for _, act := range []Action{Allow, Ask} {
		for _, r := range cands {
			if r.Action == act && covers(r, classes) {
				d.Action, d.Rule, d.rule = act, r.String(), r
				d.Addrs = make([]netip.Addr, len(addrs))
				for i, a := range addrs {
					d.Addrs[i] = a.Unmap().WithZone("")
				}
				return d
			}
		}
	}
	for _, c := range classes {
		if c.Special() {
			return deny("%s is blocked: %s; only an allow rule for this host with cidrs containing it reaches it", addrOrName(host, c.Addr), c.Reason())
		}
	}
	return deny("%s resolves to %s, outside the cidrs of every matching rule", host, addrs[0])
}

func addrOrName(host string, a netip.Addr) string {
	if host == a.String() {
		return host
	}
	return host + " resolves to " + a.String() + ", which"
}

func hasAction(rules []Rule, a Action) bool {
	for _, r := range rules {
		if r.Action == a {
			return true
		}
	}
	return false
}

// covers reports whether allow or ask rule r admits every address: a rule
// without cidrs admits ordinary addresses; a rule with cidrs admits exactly
// the addresses (and embedded IPv4 addresses) inside them, special or not.
func covers(r Rule, classes []Classified) bool {
	for _, c := range classes {
		if len(r.CIDRs) == 0 {
			if c.Special() {
				return false
			}
			continue
		}
		if !r.inCIDRs(c.Addr) {
			return false
		}
		if c.Embedded.IsValid() && !c.EmbeddedClass.IsZero() && !r.inCIDRs(c.Embedded) {
			return false
		}
	}
	return true
}
