package egress

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Action is what a rule does with a matching destination.
type Action string

const (
	Allow Action = "allow"
	Deny  Action = "deny"
	Ask   Action = "ask"
)

// Rule matches destinations by host, port and, optionally, resolved address.
type Rule struct {
	Action Action
	// Host is an exact name ("api.openai.com"), "*.suffix" (any name under
	// suffix, not suffix itself), "*" (any name) or an IP literal.
	Host string
	// Ports lists the ports the rule covers; empty means any port.
	Ports []uint16
	// CIDRs, when set, restrict the rule to destinations whose every
	// resolved address is inside one of them (for deny rules: any address).
	// An allow or ask rule whose CIDR contains a special address (loopback,
	// private, metadata…) is the only way such an address is reached.
	CIDRs []netip.Prefix
}

func (r Rule) String() string {
	s := string(r.Action) + " " + r.Host
	if len(r.Ports) > 0 {
		ps := make([]string, len(r.Ports))
		for i, p := range r.Ports {
			ps[i] = strconv.Itoa(int(p))
		}
		s += ":" + strings.Join(ps, ",")
	}
	if len(r.CIDRs) > 0 {
		cs := make([]string, len(r.CIDRs))
		for i, c := range r.CIDRs {
			cs[i] = c.String()
		}
		s += " cidrs " + strings.Join(cs, ",")
	}
	return s
}

// matchesName reports whether the rule's host and port cover host:port.
// host is lower case without a trailing dot.
func (r Rule) matchesName(host string, port uint16) bool {
	if len(r.Ports) > 0 && !slices.Contains(r.Ports, port) {
		return false
	}
	switch {
	case r.Host == "*":
		return true
	case strings.HasPrefix(r.Host, "*."):
		return strings.HasSuffix(host, r.Host[1:]) && len(host) > len(r.Host)-1
	}
	if a, err := netip.ParseAddr(r.Host); err == nil {
		h, err := netip.ParseAddr(host)
		return err == nil && h.Unmap() == a.Unmap()
	}
	return r.Host == host
}

// inCIDRs reports whether a, or its IPv4 form when it is IPv4-mapped, is in
// one of the rule's CIDRs.
func (r Rule) inCIDRs(a netip.Addr) bool {
	for _, p := range r.CIDRs {
		if p.Contains(a) || p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// Injection binds a host to a secret: CONNECTs to Host are intercepted
// (TLS terminated with the policy's CA) and the Placeholder token in Header
// is replaced with the secret; see Injector.
type Injection struct {
	Host        string // exact host name the credential is for
	Header      string // header carrying the placeholder, e.g. Authorization
	Placeholder string // token inside the header value, e.g. "clawhold:openai"
	Secret      string // secret id in the tenant's store
}

// Limits bound what one policy's clients may use. Zero means no limit.
type Limits struct {
	MaxConns          int           // concurrent requests and tunnels
	BytesPerSecond    int64         // shared by all of the policy's traffic, both directions
	IdleTimeout       time.Duration // no bytes either way for this long closes a tunnel or keep-alive connection
	TotalTimeout      time.Duration // the longest a request or tunnel may last
	MaxHeaderBytes    int           // request line and headers
	ReadHeaderTimeout time.Duration // time to send the request line and headers
}

// Policy is a named, default-deny rule set.
type Policy struct {
	Name   string
	Rules  []Rule
	Inject []Injection
	Limits Limits
}

// remembered holds the allow rules added by remembered approvals, per policy.
type remembered struct {
	mu    sync.Mutex
	rules map[string][]Rule
}

func (m *remembered) add(policy string, r Rule) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rules == nil {
		m.rules = make(map[string][]Rule)
	}
	m.rules[policy] = append(m.rules[policy], r)
}

func (m *remembered) get(policy string) []Rule {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.rules[policy])
}

// OpenClawProfile returns the built-in "openclaw" rules: the model and
// channel endpoints OpenClaw uses, on port 443 only. docs/egress.md says
// why each is there. It is a starting point to extend, not a wildcard.
func OpenClawProfile() []Rule {
	hosts := []string{
		"api.openai.com",
		"api.anthropic.com",
		"generativelanguage.googleapis.com",
		"api.x.ai",
		"openrouter.ai",
		"api.telegram.org",
		"slack.com",
		"*.slack.com",
		"discord.com",
		"gateway.discord.gg",
		"api.github.com",
		"catalog.openclaw.ai",
		"clawhub.ai",
	}
	rules := make([]Rule, len(hosts))
	for i, h := range hosts {
		rules[i] = Rule{Action: Allow, Host: h, Ports: []uint16{443}}
	}
	return rules
}

// Profile returns the rules of the built-in profile name ("openclaw").
func Profile(name string) ([]Rule, bool) {
	switch name {
	case "openclaw":
		return OpenClawProfile(), true
	}
	return nil, false
}

// ValidHost reports whether h is usable as a rule host, with a reason.
func ValidHost(h string) error {
	switch {
	case h == "":
		return fmt.Errorf("empty host; write a name (api.example.com), a suffix (*.example.com), an IP address or *")
	case h == "*":
		return nil
	case strings.HasPrefix(h, "*."):
		if !validName(h[2:]) {
			return fmt.Errorf("host %q: the part after \"*.\" must be a DNS name", h)
		}
		return nil
	case strings.Contains(h, "*"):
		return fmt.Errorf("host %q: \"*\" may only be the whole host or a leading \"*.\" label", h)
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("host %q: IPv6 zones are not allowed", h)
		}
		return nil
	}
	if h != strings.ToLower(h) || strings.HasSuffix(h, ".") {
		return fmt.Errorf("host %q: write names in lower case without a trailing dot", h)
	}
	if !validName(h) {
		return fmt.Errorf("host %q is not a valid DNS name", h)
	}
	return nil
}

// validName reports whether s is a syntactically valid DNS name of letters,
// digits, hyphens and underscores, with a non-numeric last label.
func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	// A numeric last label ("127.1", "2130706433", "0x7f.1" is caught by
	// the check on letters below only partly): such names are IP addresses
	// in some resolver's eyes.
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" || strings.HasPrefix(strings.ToLower(last), "0x") {
		return false
	}
	return true
}
