package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/events/stream"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/sandbox"
	"github.com/clawhold/clawhold/sandbox/preflight"
)

func (a *app) sandboxCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox",
		Short: "Run commands (OpenClaw) in a sandbox: namespaces, cgroups, Landlock, seccomp, egress only through the proxy",
	}
	cmd.AddCommand(a.sandboxRunCmd(), a.sandboxCheckCmd(), a.sandboxProfilesCmd())
	return cmd
}

// exitCodeError carries a sandboxed command's exit status out of a command.
type exitCodeError int

func (e exitCodeError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

func (a *app) sandboxRunCmd() *cobra.Command {
	var (
		profile, id, egressSocket, exposeSocket, policy, eventsPath string
		vars, rw, ro, env                                           []string
		uid, gid                                                    int
		record                                                      bool
	)
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]",
		Short: "Run a command in a new sandbox and exit with its status",
		Long: `run starts COMMAND as PID 2 of a new sandbox: its own user, mount, pid,
network, ipc and uts namespaces on an otherwise empty root holding only what
the profile lists; cgroup limits; Landlock and a seccomp filter; no
capabilities. Its network has loopback only: HTTP(S)_PROXY point at a
forwarder to the egress proxy, which clawhold starts itself from the
configuration's egress policy unless --egress-socket names a running one.
Every process started inside is logged with its argv and exit status, as
JSON lines to --events and in the data directory's system database.
See docs/sandbox.md.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p, err := sandbox.LoadProfile(profile)
			if err != nil {
				return err
			}
			p.Filesystem.ReadWrite = append(p.Filesystem.ReadWrite, rw...)
			p.Filesystem.ReadOnly = append(p.Filesystem.ReadOnly, ro...)
			if policy != "" {
				p.Network.Policy = policy
			}
			vm := make(map[string]string)
			for _, kv := range vars {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return fmt.Errorf("--var %q: write NAME=VALUE", kv)
				}
				vm[k] = v
			}
			if p, err = sandbox.Expand(p, vm); err != nil {
				return err
			}
			p, warnings, err := sandbox.Fit(ctx, p)
			if err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(a.stderr, "clawhold sandbox: warning:", w)
			}

			sinks, closeSinks, err := a.sandboxSinks(ctx, eventsPath, record)
			if err != nil {
				return err
			}
			defer closeSinks()
			emit := func(e sandbox.Event) {
				for _, s := range sinks {
					s(e)
				}
			}
			if id == "" {
				id = sandbox.NewID() // now, so the egress proxy's events name it too
			}
			opts := sandbox.Options{
				ID: id, Profile: p, Argv: args, Env: env,
				Stdin: a.stdin, Stdout: a.stdout, Stderr: a.stderr,
				EgressSocket: egressSocket, ExposeSocket: exposeSocket,
				Events: emit, UID: uid, GID: gid, Logger: a.logger(),
			}
			if p.Network.Mode == "proxy" && egressSocket == "" {
				stop, path, err := a.startSandboxEgress(ctx, &opts, emit)
				if err != nil {
					return err
				}
				defer stop()
				opts.EgressSocket = path
			}
			code, err := sandbox.Run(ctx, opts)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitCodeError(code)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", "default", "built-in profile name ("+strings.Join(sandbox.Builtins(), ", ")+") or a profile file")
	f.StringArrayVar(&vars, "var", nil, "NAME=/path for a ${NAME} in the profile (repeatable)")
	f.StringArrayVar(&rw, "rw", nil, "also bind this host directory read-write (repeatable)")
	f.StringArrayVar(&ro, "ro", nil, "also bind this host path read-only (repeatable)")
	f.StringArrayVar(&env, "env", nil, "KEY=VALUE for the command's environment (repeatable; never put secrets here)")
	f.StringVar(&id, "id", "", "sandbox name in events and its cgroup (default random)")
	f.StringVar(&egressSocket, "egress-socket", "", "unix socket of a running egress proxy (default: start one from the config)")
	f.StringVar(&policy, "policy", "", "egress policy for the proxy clawhold starts (default: the profile's network.policy)")
	f.StringVar(&exposeSocket, "expose-socket", "", "unix socket to create on the host for the profile's network.expose port")
	f.StringVar(&eventsPath, "events", "", "append events as JSON lines to this file (- for stderr)")
	f.BoolVar(&record, "record", true, "also record events in the data directory's system database, when it is initialized")
	f.IntVar(&uid, "uid", 0, "host uid root inside maps to (default 65534 when run as root, else your own)")
	f.IntVar(&gid, "gid", 0, "host gid root inside maps to (default like --uid)")
	f.SetInterspersed(false)
	return cmd
}

// sandboxSinks returns the event sinks --events and --record ask for.
func (a *app) sandboxSinks(ctx context.Context, path string, record bool) ([]func(sandbox.Event), func(), error) {
	var sinks []func(sandbox.Event)
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	switch path {
	case "":
	case "-":
		sinks = append(sinks, stream.JSONLines[sandbox.Event](a.stderr))
	default:
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("opening --events: %w", err)
		}
		closers = append(closers, func() { f.Close() })
		sinks = append(sinks, stream.JSONLines[sandbox.Event](f))
	}
	if record {
		inst, err := a.open(ctx, false)
		switch {
		case errors.Is(err, instance.ErrNotInitialized):
			// Nothing to record into yet; --events is the stream.
		case err != nil:
			closeAll()
			return nil, nil, fmt.Errorf("recording sandbox events (--record=false to skip): %w", err)
		default:
			db, err := inst.DB(ctx, instance.SystemTenant)
			if err != nil {
				inst.Close()
				closeAll()
				return nil, nil, err
			}
			rec := events.NewRecorder(db)
			closers = append(closers, func() {
				if err := rec.Close(); err != nil {
					fmt.Fprintln(a.stderr, "clawhold sandbox:", err)
				}
				inst.Close()
			})
			sinks = append(sinks, func(e sandbox.Event) { rec.Add(e.Record()) })
		}
	}
	return sinks, closeAll, nil
}

// startSandboxEgress serves the configuration's egress policy for one
// sandbox on a private unix socket that only the sandbox's host uid (and
// root) may connect to.
func (a *app) startSandboxEgress(ctx context.Context, o *sandbox.Options, emit func(sandbox.Event)) (stop func(), path string, err error) {
	jl := func(e egress.Event) {
		emit(sandbox.Event{Time: e.Time, Type: sandbox.EventEgress, Sandbox: o.ID, Egress: &e})
	}
	p, _, err := a.newEgressProxy(0, jl, nil)
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "clawhold-egress-")
	if err != nil {
		return nil, "", fmt.Errorf("egress socket directory: %w", err)
	}
	path = filepath.Join(dir, "egress.sock")
	ln, err := egress.Listen(ctx, "unix", path)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	uid, gid := sandbox.HostIDs(o.UID, o.GID)
	if err := os.Chown(path, uid, gid); err != nil && os.Getuid() == 0 {
		ln.Close()
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("egress socket: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Serve(sctx, ln, egress.Client{Cell: o.ID, Policy: o.Profile.Network.Policy})
	}()
	return func() {
		cancel()
		<-done
		os.RemoveAll(dir)
	}, path, nil
}

func (a *app) sandboxCheckCmd() *cobra.Command {
	var profile string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Report the isolation layers this host offers and what a profile needs; exits 1 if one is missing",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := preflight.Check(cmd.Context())
			p, err := sandbox.LoadProfile(profile)
			if err != nil {
				return err
			}
			need := sandbox.RequiredLayers(p)
			if a.json {
				return writeJSON(a.stdout, struct {
					preflight.Report
					Profile  string            `json:"profile"`
					Required []preflight.Layer `json:"required"`
				}{rep, profile, need})
			}
			io.WriteString(a.stdout, rep.Text())
			if err := rep.Require(need); err != nil {
				return fmt.Errorf("profile %s: %w", profile, err)
			}
			fmt.Fprintf(a.stdout, "\nprofile %s: every layer it needs is present\n", profile)
			return nil
		},
	}
	cmd.Flags().StringVar(&profile, "profile", "openclaw", "the profile whose needs to check")
	return cmd
}

func (a *app) sandboxProfilesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "profiles",
		Short: "List the built-in sandbox profiles",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, name := range sandbox.Builtins() {
				p, err := sandbox.LoadProfile(name)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%-10s %s\n", name, p.Description)
			}
			return nil
		},
	}
}
