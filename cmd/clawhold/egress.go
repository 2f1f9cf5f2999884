package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/events/stream"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/secrets"
)

func (a *app) egressCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "egress",
		Short: "Run the allowlist-only egress proxy for OpenClaw",
	}
	cmd.AddCommand(a.egressServeCmd(), a.egressCheckCmd())
	return cmd
}

func (a *app) loadConfig() (*config.Config, error) {
	if a.configPath != "" {
		return config.Load(a.configPath)
	}
	return config.LoadDefault()
}

// newEgressProxy builds a proxy from the configuration file. secrets
// supplies injected credentials (nil: injection is refused at connect time).
func (a *app) newEgressProxy(askTimeout time.Duration, events func(egress.Event), secrets egress.SecretFunc) (*egress.Proxy, *config.Config, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	policies, err := egress.PoliciesFromConfig(cfg.Egress)
	if err != nil {
		return nil, nil, err
	}
	if askTimeout <= 0 {
		askTimeout = time.Duration(cfg.Egress.AskTimeout)
	}
	p, err := egress.New(egress.Config{
		Policies:   policies,
		Events:     events,
		AskTimeout: askTimeout,
		Logger:     a.logger(),
		Secrets:    secrets,
		// No Ask: the CLI has no approver yet, so ask rules deny with
		// "no approver is configured".
	})
	return p, cfg, err
}

func (a *app) egressServeCmd() *cobra.Command {
	var (
		listen, policy, tenant, cell, eventsFile, caFile string
		askTimeout                                       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the egress proxy until interrupted, writing every decision as a JSON line",
		Long: `serve runs the forward proxy OpenClaw uses through proxy.proxyUrl. Every
destination is checked against the policy (default deny) after the proxy
resolves it itself; decisions are written as JSON lines to stdout or --events.
Requests matched by an ask rule are denied: no approver is configured yet.
See docs/egress.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out io.Writer = a.stdout
			if eventsFile != "" {
				f, err := os.OpenFile(eventsFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
				if err != nil {
					return fmt.Errorf("opening --events: %w", err)
				}
				defer f.Close()
				out = f
			}
			// Credentials for inject rules come from the tenant's secret
			// store; every read is recorded there. The store is opened
			// lazily, so a proxy without inject rules needs no root key.
			var once sync.Once
			var store *secretSource
			defer func() {
				if store != nil {
					store.close()
				}
			}()
			secretsFn := func(ctx context.Context, name string) ([]byte, error) {
				once.Do(func() { store = a.openSecretSource(ctx, tenant, policy) })
				return store.get(ctx, name)
			}
			p, cfg, err := a.newEgressProxy(askTimeout, stream.JSONLines[egress.Event](out), secretsFn)
			if err != nil {
				return err
			}
			if pem := p.CACertPEM(policy); pem != nil {
				if caFile == "" {
					caFile = filepath.Join(datadir.Resolve(a.dataDir, cfg), "egress-"+policy+"-ca.pem")
				}
				if err := datadir.WriteFileAtomic(caFile, pem, 0o600); err != nil {
					return fmt.Errorf("writing the interception CA certificate: %w", err)
				}
				fmt.Fprintf(a.stderr, "clawhold egress: policy %s injects credentials; clients must trust %s (OpenClaw: NODE_EXTRA_CA_CERTS)\n", policy, caFile)
			}
			if listen == "" {
				listen = cfg.Egress.Listen
			}
			ln, err := listenEgress(listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "clawhold egress: policy %s, listening on %s\n", policy, ln.Addr())
			return p.Serve(cmd.Context(), ln, egress.Client{Tenant: tenant, Cell: cell, Policy: policy})
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "", "IP:PORT on loopback, or unix:/absolute/path (default: egress.listen, 127.0.0.1:3128)")
	f.StringVar(&policy, "policy", "default", "policy under egress.policies for this listener's clients")
	f.StringVar(&tenant, "tenant", "", "tenant recorded in events")
	f.StringVar(&cell, "cell", "", "cell recorded in events")
	f.StringVar(&eventsFile, "events", "", "append events to this file (0600) instead of stdout")
	f.DurationVar(&askTimeout, "ask-timeout", 0, "how long an ask rule waits before denying (default: egress.ask_timeout)")
	f.StringVar(&caFile, "ca-cert", "", "where to write the CA certificate of a policy that injects credentials (default: <data dir>/egress-<policy>-ca.pem)")
	return cmd
}

// secretSource reads injected credentials from one tenant's secret store.
type secretSource struct {
	in    *instance.Instance
	s     *secrets.Store
	actor string
	err   error
}

func (a *app) openSecretSource(ctx context.Context, tenant, policy string) *secretSource {
	if tenant == "" {
		tenant = instance.DefaultTenant
	}
	in, s, err := a.openSecrets(ctx, tenant, false)
	if err != nil {
		return &secretSource{err: fmt.Errorf("opening the secret store for injection: %w", err)}
	}
	return &secretSource{in: in, s: s, actor: "egress-proxy(policy " + policy + ")"}
}

func (src *secretSource) get(ctx context.Context, name string) ([]byte, error) {
	if src.err != nil {
		return nil, src.err
	}
	v, _, err := src.s.Get(ctx, src.actor, name)
	return v, err
}

func (src *secretSource) close() {
	if src.in != nil {
		src.in.Close()
	}
}

// listenEgress listens on IP:PORT or unix:PATH. A stale socket file is
// replaced; any other file at PATH is an error.
func listenEgress(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if fi, err := os.Lstat(path); err == nil {
			if fi.Mode().Type() != fs.ModeSocket {
				return nil, fmt.Errorf("listening on %s: %s exists and is not a socket", addr, path)
			}
			if err := os.Remove(path); err != nil {
				return nil, fmt.Errorf("removing stale socket: %w", err)
			}
		}
		return egress.Listen(context.Background(), "unix", path)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: write IP:PORT (e.g. 127.0.0.1:3128) or unix:/absolute/path", addr)
	}
	if a := ap.Addr().Unmap(); !a.IsLoopback() && !a.IsPrivate() {
		return nil, fmt.Errorf("--listen %q: the proxy must listen on loopback or a private address only", addr)
	}
	return egress.Listen(context.Background(), "tcp", ap.String())
}

func (a *app) egressCheckCmd() *cobra.Command {
	var policy string
	cmd := &cobra.Command{
		Use:   "check HOST[:PORT]",
		Short: "Show the decision for a destination (default port 443) and its resolved addresses, without connecting",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _, err := a.newEgressProxy(0, nil, func(context.Context, string) ([]byte, error) {
				return nil, errors.New("check never connects")
			})
			if err != nil {
				return err
			}
			host, port, err := splitCheckTarget(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			d, err := p.Check(ctx, policy, host, port)
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, d)
			}
			fmt.Fprintf(a.stdout, "%s %s:%d (policy %s)\n", d.Action, d.Host, d.Port, d.Policy)
			if d.Rule != "" {
				fmt.Fprintf(a.stdout, "rule:      %s\n", d.Rule)
			}
			if d.Reason != "" {
				fmt.Fprintf(a.stdout, "reason:    %s\n", d.Reason)
			}
			for _, addr := range d.Addrs {
				fmt.Fprintf(a.stdout, "address:   %s\n", addr)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&policy, "policy", "default", "policy under egress.policies")
	return cmd
}

func splitCheckTarget(s string) (string, uint16, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "[") { // bare IPv6
			return s, 443, nil
		}
		if strings.Contains(s, ":") {
			return "", 0, fmt.Errorf("%q: write HOST or HOST:PORT ([IPv6]:PORT)", s)
		}
		return s, 443, nil
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", 0, errors.New("port must be a number from 1 to 65535")
	}
	return host, uint16(port), nil
}
