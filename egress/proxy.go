// Package egress is clawhold's forward proxy: default-deny, allowlist-only
// outbound HTTP and CONNECT for OpenClaw, safe against SSRF and DNS
// rebinding. See docs/egress.md.
//
// The proxy resolves every name itself, checks every resolved address
// against its policy and the special ranges (loopback, private, link-local,
// metadata, …, and their IPv4-in-IPv6 encodings), then dials exactly a
// checked address. Every decision is reported as an Event.
package egress

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultAskTimeout is how long a request waits for an approver by default.
const DefaultAskTimeout = 30 * time.Second

// Config configures a Proxy.
type Config struct {
	// Policies by name. A client names its policy in Client.Policy.
	Policies map[string]Policy
	// Resolver resolves destination names (default net.DefaultResolver).
	Resolver Resolver
	// Dial connects to a checked address (default a net.Dialer). The proxy
	// never passes it anything but an address it has checked.
	Dial func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
	// Events receives every decision. It must not block for long; it may be
	// called from many goroutines at once.
	Events func(Event)
	// Ask answers requests matched by an ask rule. ctx expires after
	// AskTimeout. Nil, an error or a timeout denies.
	Ask        func(ctx context.Context, req AskRequest) (Answer, error)
	AskTimeout time.Duration // default DefaultAskTimeout
	Logger     *slog.Logger  // default: discard
	// Secrets supplies the credentials that policies' Inject entries bind to
	// hosts. Required when any policy injects.
	Secrets SecretFunc
	// UpstreamRoots verifies upstream certificates when injecting (nil: the
	// system roots). Tests set their local upstream's pool.
	UpstreamRoots *x509.CertPool
}

// Client is the identity bound to a listener: every connection accepted on
// it is this tenant's cell, governed by Policy.
type Client struct {
	Tenant string
	Cell   string
	Policy string
}

// Proxy is a forward proxy. Create it with New and run it with Serve, once
// per listener.
type Proxy struct {
	cfg        Config
	resolver   Resolver
	log        *slog.Logger
	policies   map[string]*policyState
	remembered remembered
	bufs       bufPool
	readers    sync.Pool // *connReader, for first requests
}

// policyState is a policy with its shared limiters and upstream transport.
type policyState struct {
	Policy
	conns     chan struct{} // nil when unlimited
	limiter   *rate.Limiter // nil when unlimited
	transport *http.Transport
	injector  *Injector // nil unless the policy binds credentials to hosts
}

// dialKey carries the checked addresses to the transport's DialContext.
type dialKey struct{}

// New validates cfg and returns a proxy.
func New(cfg Config) (*Proxy, error) {
	p := &Proxy{cfg: cfg, resolver: cfg.Resolver, log: cfg.Logger, policies: make(map[string]*policyState)}
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.cfg.AskTimeout <= 0 {
		p.cfg.AskTimeout = DefaultAskTimeout
	}
	if p.cfg.Dial == nil {
		// No TCP keepalive probes: tunnels end on limits.idle_timeout, and
		// the four setsockopt calls per connection are measurable at
		// thousands of tunnels a second.
		d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: -1}
		p.cfg.Dial = func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr.String())
		}
	}
	for name, pol := range cfg.Policies {
		if err := pol.validate(); err != nil {
			return nil, fmt.Errorf("egress policy %s: %w", name, err)
		}
		pol.Name = name
		ps := &policyState{Policy: pol}
		if n := pol.Limits.MaxConns; n > 0 {
			ps.conns = make(chan struct{}, n)
		}
		if bps := pol.Limits.BytesPerSecond; bps > 0 {
			ps.limiter = rate.NewLimiter(rate.Limit(bps), int(min(bps, copyBufSize)))
		}
		ps.transport = &http.Transport{
			Proxy:                  nil, // never chain to $HTTP_PROXY
			DialContext:            p.dialChecked,
			DisableCompression:     true,
			MaxIdleConnsPerHost:    4,
			IdleConnTimeout:        90 * time.Second,
			ResponseHeaderTimeout:  pol.Limits.TotalTimeout,
			MaxResponseHeaderBytes: 1 << 20,
		}
		if len(pol.Inject) > 0 {
			if err := p.newInjector(ps); err != nil {
				return nil, fmt.Errorf("egress policy %s: %w", name, err)
			}
		}
		p.policies[name] = ps
	}
	return p, nil
}

// newInjector gives a policy that binds credentials its own CA, created
// for the life of this Proxy: the CA's private key never touches disk, and
// clients trust the certificate CACertPEM returns (as OpenClaw's own
// secret egress proxy does with its per-start CA).
func (p *Proxy) newInjector(ps *policyState) error {
	if p.cfg.Secrets == nil {
		return errors.New("binds credentials to hosts (inject) but no secret source is configured")
	}
	ca, err := NewCA(ps.Name)
	if err != nil {
		return err
	}
	ps.injector = &Injector{
		CA:      ca,
		Secrets: p.cfg.Secrets,
		RootCAs: p.cfg.UpstreamRoots,
		Dial: func(ctx context.Context, _ string, addr netip.AddrPort) (net.Conn, error) {
			return p.cfg.Dial(ctx, addr)
		},
		MaxHeaderBytes: ps.Limits.MaxHeaderBytes,
		IdleTimeout:    ps.Limits.IdleTimeout,
		Logger:         p.log,
	}
	return nil
}

// CACertPEM is the certificate clients of policy must trust for the hosts
// it injects credentials into (OpenClaw: proxy.tls.caFile or
// NODE_EXTRA_CA_CERTS), or nil when the policy injects nothing.
func (p *Proxy) CACertPEM(policy string) []byte {
	if ps, ok := p.policies[policy]; ok && ps.injector != nil {
		return ps.injector.CA.CertPEM()
	}
	return nil
}

func (pol *Policy) validate() error {
	for i, r := range pol.Rules {
		switch r.Action {
		case Allow, Deny, Ask:
		default:
			return fmt.Errorf("rule %d: action %q must be allow, deny or ask", i, r.Action)
		}
		if err := ValidHost(r.Host); err != nil {
			return fmt.Errorf("rule %d: %w", i, err)
		}
	}
	return nil
}

// dialChecked dials the addresses decide checked, in order, on port port.
func (p *Proxy) dialChecked(ctx context.Context, _, _ string) (net.Conn, error) {
	t, ok := ctx.Value(dialKey{}).(dialTarget)
	if !ok {
		return nil, errors.New("egress: dial without a checked destination")
	}
	return p.dial(ctx, t.addrs, t.port)
}

type dialTarget struct {
	addrs []netip.Addr
	port  uint16
}

// dial connects to the first of addrs that answers. Each was checked.
func (p *Proxy) dial(ctx context.Context, addrs []netip.Addr, port uint16) (net.Conn, error) {
	var errs []error
	for _, a := range addrs {
		c, err := p.cfg.Dial(ctx, netip.AddrPortFrom(a, port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("connecting: %w", errors.Join(errs...))
}

// Check decides host:port under policy without asking or connecting.
func (p *Proxy) Check(ctx context.Context, policy, host string, port uint16) (Decision, error) {
	pol, ok := p.policies[policy]
	if !ok {
		return Decision{}, fmt.Errorf("egress: no policy %q", policy)
	}
	return p.decide(ctx, pol, host, port), nil
}

// hostPort splits an authority into host and a numeric port.
func hostPort(authority string, defaultPort uint16) (string, uint16, error) {
	host, portStr, err := net.SplitHostPort(authority)
	if err != nil {
		if defaultPort == 0 {
			return "", 0, fmt.Errorf("%q has no port; write host:port", authority)
		}
		return authority, defaultPort, nil
	}
	if portStr == "" {
		if defaultPort == 0 {
			return "", 0, fmt.Errorf("%q has no port; write host:port", authority)
		}
		return host, defaultPort, nil
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", portStr)
	}
	return host, uint16(port), nil
}

// emit sends e to the Events callback.
func (p *Proxy) emit(e Event) {
	if p.cfg.Events != nil {
		p.cfg.Events(e)
	}
}

// remember adds an allow rule for host:port (with the ask rule's cidrs) to
// the policy for the life of the proxy.
func (p *Proxy) remember(d Decision) {
	r := Rule{Action: Allow, Host: d.Host, Ports: []uint16{d.Port}, CIDRs: d.rule.CIDRs}
	p.remembered.add(d.Policy, r)
	p.log.Info("egress: remembered approval", "policy", d.Policy, "rule", r.String())
}

// ask resolves an Ask decision into Allow or Deny with the approver.
func (p *Proxy) ask(ctx context.Context, c Client, method string, d Decision) (Decision, string) {
	if p.cfg.Ask == nil {
		d.Action, d.Reason = Deny, "rule "+strconv.Quote(d.Rule)+" asks for approval but no approver is configured"
		return d, "denied"
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.AskTimeout)
	defer cancel()
	type result struct {
		a   Answer
		err error
	}
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				ch <- result{err: fmt.Errorf("approver panicked: %v", v)}
			}
		}()
		a, err := p.cfg.Ask(ctx, AskRequest{Client: c, Policy: d.Policy, Method: method, Host: d.Host, Port: d.Port, Addrs: d.Addrs, Rule: d.Rule})
		ch <- result{a, err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		d.Action, d.Reason = Deny, fmt.Sprintf("approval timed out after %s", p.cfg.AskTimeout)
		return d, "timeout"
	}
	switch {
	case res.err != nil:
		d.Action, d.Reason = Deny, fmt.Sprintf("approval failed: %v", res.err)
		return d, "denied"
	case !res.a.Allow:
		d.Action, d.Reason = Deny, "the approver denied it"
		return d, "denied"
	case res.a.Remember:
		p.remember(d)
		d.Action, d.Reason = Allow, "approved and remembered"
		return d, "remember"
	}
	d.Action, d.Reason = Allow, "approved once"
	return d, "once"
}

// acquire takes a connection slot of pol, or reports that none is free.
func (pol *policyState) acquire() (release func(), ok bool) {
	if pol.conns == nil {
		return func() {}, true
	}
	select {
	case pol.conns <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-pol.conns }) }, true
	default:
		return nil, false
	}
}

// Listen opens a listener for Serve on "tcp" (IP:PORT) or "unix" (a path).
// TCP listeners use plain TCP, not Go's default MPTCP (costlier per
// connection, and not covered by Landlock's TCP rules), without keepalive
// probes (idle tunnels end on limits.idle_timeout).
func Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	return lc.Listen(ctx, network, addr)
}
