package egress

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/clawhold/clawhold/config"
)

// PoliciesFromConfig converts the validated egress.policies section into
// policies, expanding profiles (profile rules first, then the policy's own).
func PoliciesFromConfig(e config.Egress) (map[string]Policy, error) {
	out := make(map[string]Policy, len(e.Policies))
	for name, cp := range e.Policies {
		p := Policy{Name: name}
		if cp.Profile != "" {
			rules, ok := Profile(cp.Profile)
			if !ok {
				return nil, fmt.Errorf("egress.policies.%s.profile: unknown profile %q", name, cp.Profile)
			}
			p.Rules = rules
		}
		for i, cr := range cp.Rules {
			r := Rule{Action: Action(cr.Action), Host: cr.Host}
			for _, port := range cr.Ports {
				if port < 1 || port > 65535 {
					return nil, fmt.Errorf("egress.policies.%s.rules[%d].ports: %d is not a port", name, i, port)
				}
				r.Ports = append(r.Ports, uint16(port))
			}
			for _, c := range cr.CIDRs {
				pfx, err := netip.ParsePrefix(c)
				if err != nil {
					return nil, fmt.Errorf("egress.policies.%s.rules[%d].cidrs: %w", name, i, err)
				}
				r.CIDRs = append(r.CIDRs, pfx.Masked())
			}
			p.Rules = append(p.Rules, r)
		}
		for _, in := range cp.Inject {
			p.Inject = append(p.Inject, Injection(in))
		}
		l := cp.Limits
		p.Limits = Limits{
			MaxConns:          l.MaxConns,
			BytesPerSecond:    int64(l.BytesPerSecond),
			IdleTimeout:       time.Duration(l.IdleTimeout),
			TotalTimeout:      time.Duration(l.TotalTimeout),
			MaxHeaderBytes:    l.MaxHeaderBytes,
			ReadHeaderTimeout: time.Duration(l.ReadHeaderTimeout),
		}
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("egress.policies.%s: %w", name, err)
		}
		p.Rules = slices.Clip(p.Rules)
		out[name] = p
	}
	return out, nil
}
