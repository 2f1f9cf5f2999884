package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/egress"
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

// newEgressProxy builds a proxy from the configuration file.
func (a *app) newEgressProxy(askTimeout time.Duration, events func(egress.Event)) (*egress.Proxy, *config.Config, error) {
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
		// No Ask: the CLI has no approver yet, so ask rules deny with
		// "no approver is configured".
	})
	return p, cfg, err
}

func (a *app) egressServeCmd() *cobra.Command {
	var (
		listen, policy, tenant, cell, eventsFile string
		askTimeout                               time.Duration
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
			p, cfg, err := a.newEgressProxy(askTimeout, jsonLines(out))
			if err != nil {
				return err
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
	return cmd
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
		return net.Listen("unix", path)
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: write IP:PORT (e.g. 127.0.0.1:3128) or unix:/absolute/path", addr)
	}
	if a := ap.Addr().Unmap(); !a.IsLoopback() && !a.IsPrivate() {
		return nil, fmt.Errorf("--listen %q: the proxy must listen on loopback or a private address only", addr)
	}
	return net.Listen("tcp", ap.String())
}

// jsonLines returns an event callback writing one JSON object per line.
func jsonLines(w io.Writer) func(egress.Event) {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	return func(e egress.Event) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(e)
	}
}

func (a *app) egressCheckCmd() *cobra.Command {
	var policy string
	cmd := &cobra.Command{
		Use:   "check HOST[:PORT]",
		Short: "Show the decision for a destination (default port 443) and its resolved addresses, without connecting",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, _, err := a.newEgressProxy(0, nil)
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
