package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"
)

// Egress configures the egress proxy (clawhold egress serve). See
// docs/egress.md.
type Egress struct {
	// Listen is host:port on loopback (or a private address), or
	// unix:/absolute/path. Default 127.0.0.1:3128.
	Listen string `yaml:"listen"`
	// AskTimeout is how long a request matched by an ask rule waits for an
	// approver before it is denied (default 30s).
	AskTimeout Duration `yaml:"ask_timeout"`
	// Policies by name. Setting egress.policies replaces the default, which
	// is one policy "default" with profile openclaw.
	Policies map[string]EgressPolicy `yaml:"policies"`
}

// EgressPolicy is one default-deny rule set.
type EgressPolicy struct {
	// Profile names built-in rules the policy starts from: "" (none) or
	// "openclaw".
	Profile string            `yaml:"profile"`
	Rules   []EgressRule      `yaml:"rules"`
	Inject  []EgressInjection `yaml:"inject"`
	Limits  EgressLimits      `yaml:"limits"`
}

// EgressRule allows, denies or asks about destinations.
type EgressRule struct {
	Action string   `yaml:"action"` // allow | deny | ask
	Host   string   `yaml:"host"`   // exact name, *.suffix, * or an IP address
	Ports  []int    `yaml:"ports"`  // empty: any port
	CIDRs  []string `yaml:"cidrs"`  // optional
}

// EgressInjection binds a host to a secret for credential injection.
type EgressInjection struct {
	Host        string `yaml:"host"`
	Header      string `yaml:"header"`
	Placeholder string `yaml:"placeholder"`
	Secret      string `yaml:"secret"`
}

// EgressLimits bound one policy's traffic. 0 means no limit.
type EgressLimits struct {
	MaxConns          int      `yaml:"max_conns"`
	BytesPerSecond    int      `yaml:"bytes_per_second"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	TotalTimeout      Duration `yaml:"total_timeout"`
	MaxHeaderBytes    int      `yaml:"max_header_bytes"`
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
}

// DefaultEgressLimits are the limits of a policy that sets none.
func DefaultEgressLimits() EgressLimits {
	return EgressLimits{
		MaxConns:          512,
		IdleTimeout:       Duration(5 * time.Minute),
		MaxHeaderBytes:    64 << 10,
		ReadHeaderTimeout: Duration(10 * time.Second),
	}
}

// setDefaults fills in a policy that the file declares before its keys
// are decoded onto it.
func (p *EgressPolicy) setDefaults() { p.Limits = DefaultEgressLimits() }

func defaultEgress() Egress {
	return Egress{
		Listen:     "127.0.0.1:3128",
		AskTimeout: Duration(30 * time.Second),
		Policies: map[string]EgressPolicy{
			"default": {Profile: "openclaw", Limits: DefaultEgressLimits()},
		},
	}
}

func (v *validator) egress(e Egress) {
	v.listen("egress.listen", e.Listen)
	if e.AskTimeout <= 0 || e.AskTimeout > Duration(time.Hour) {
		v.errorf("egress.ask_timeout", "egress.ask_timeout is %s: it must be between 1s and 1h (default 30s)", e.AskTimeout)
	}
	for name, p := range e.Policies {
		key := "egress.policies." + name
		if !isPolicyName(name) {
			v.errorf(key, "egress policy name %q: use letters, digits, - and _ (e.g. default, tenant-a)", name)
		}
		if p.Profile != "" {
			v.oneOf(key+".profile", p.Profile, "openclaw")
		}
		for i, r := range p.Rules {
			rk := fmt.Sprintf("%s.rules[%d]", key, i)
			v.oneOf(rk+".action", r.Action, "allow", "deny", "ask")
			if err := checkRuleHost(r.Host); err != "" {
				v.errorf(rk+".host", "%s.host: %s", rk, err)
			}
			for _, port := range r.Ports {
				if port < 1 || port > 65535 {
					v.errorf(rk+".ports", "%s.ports: %d is not a port (1-65535)", rk, port)
				}
			}
			for _, c := range r.CIDRs {
				pfx, err := netip.ParsePrefix(c)
				switch {
				case err != nil:
					v.errorf(rk+".cidrs", "%s.cidrs: %q is not a CIDR; write e.g. 10.1.0.0/16 or fd00::/8", rk, c)
				case pfx != pfx.Masked():
					v.errorf(rk+".cidrs", "%s.cidrs: %q has host bits set; did you mean %s?", rk, c, pfx.Masked())
				case pfx.Bits() == 0:
					v.errorf(rk+".cidrs", "%s.cidrs: %q would open loopback, private and metadata addresses to every matching host; list the ranges you mean", rk, c)
				}
			}
		}
		for i, in := range p.Inject {
			ik := fmt.Sprintf("%s.inject[%d]", key, i)
			if err := checkRuleHost(in.Host); err != "" || strings.Contains(in.Host, "*") {
				v.errorf(ik+".host", "%s.host is %q: name one exact host, e.g. api.openai.com", ik, in.Host)
			}
			if in.Header == "" || strings.ContainsAny(in.Header, " :\t\r\n") {
				v.errorf(ik+".header", "%s.header is %q: name a header, e.g. Authorization", ik, in.Header)
			}
			if in.Placeholder == "" {
				v.errorf(ik+".placeholder", "%s.placeholder is empty: set the token the agent is given instead of the key, e.g. \"clawhold:openai\" (sent as \"Authorization: Bearer clawhold:openai\")", ik)
			}
			if in.Secret == "" {
				v.errorf(ik+".secret", "%s.secret is empty: name the secret id in the tenant's store, e.g. openai", ik)
			}
		}
		l := p.Limits
		for _, f := range []struct {
			key string
			n   int
		}{{"max_conns", l.MaxConns}, {"bytes_per_second", l.BytesPerSecond}, {"max_header_bytes", l.MaxHeaderBytes}} {
			if f.n < 0 {
				v.errorf(key+".limits."+f.key, "%s.limits.%s is %d: it must be 0 (no limit) or positive", key, f.key, f.n)
			}
		}
		if l.MaxHeaderBytes > 0 && l.MaxHeaderBytes < 1024 {
			v.errorf(key+".limits.max_header_bytes", "%s.limits.max_header_bytes is %d: below 1024 ordinary requests fail; raise it (default 65536)", key, l.MaxHeaderBytes)
		}
		for _, f := range []struct {
			key string
			d   Duration
		}{{"idle_timeout", l.IdleTimeout}, {"total_timeout", l.TotalTimeout}, {"read_header_timeout", l.ReadHeaderTimeout}} {
			if f.d < 0 {
				v.errorf(key+".limits."+f.key, "%s.limits.%s is %s: it must be 0 (no limit) or positive", key, f.key, f.d)
			}
		}
	}
}

func (v *validator) listen(key, value string) {
	if path, ok := strings.CutPrefix(value, "unix:"); ok {
		if !filepath.IsAbs(path) {
			v.errorf(key, "%s is %q: a unix socket needs an absolute path, e.g. unix:/run/clawhold/egress.sock", key, value)
		}
		return
	}
	ap, err := netip.ParseAddrPort(value)
	if err != nil {
		v.errorf(key, "%s is %q: write IP:PORT (e.g. 127.0.0.1:3128) or unix:/absolute/path", key, value)
		return
	}
	if a := ap.Addr().Unmap(); !a.IsLoopback() && !a.IsPrivate() {
		v.errorf(key, "%s is %q: the proxy must listen only on loopback or a private address reachable by OpenClaw alone; use 127.0.0.1:%d", key, value, ap.Port())
	}
}

func isPolicyName(s string) bool {
	for _, r := range s {
		if !(r == '-' || r == '_' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
			return false
		}
	}
	return s != ""
}

// checkRuleHost returns why h is not a valid rule host, or "".
func checkRuleHost(h string) string {
	switch {
	case h == "":
		return "empty; write a name (api.example.com), a suffix (*.example.com), an IP address or *"
	case h == "*":
		return ""
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	name, wild := strings.CutPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return fmt.Sprintf("%q: \"*\" may only be the whole host or a leading \"*.\" label", h)
	}
	if h != strings.ToLower(h) || strings.HasSuffix(h, ".") {
		return fmt.Sprintf("%q: write names in lower case without a trailing dot", h)
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || strings.Trim(l, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			if wild {
				return fmt.Sprintf("%q: the part after \"*.\" must be a DNS name", h)
			}
			return fmt.Sprintf("%q is not a DNS name or IP address", h)
		}
	}
	return ""
}
