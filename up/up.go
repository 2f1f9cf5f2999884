// Package up runs a whole clawhold deployment in one process — what
// `clawhold up` starts: the front door, the egress proxy and one sandboxed
// OpenClaw cell per tenant, over the data dir's store and root key.
package up

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/clawhold/clawhold/audit"
	"github.com/clawhold/clawhold/backup"
	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/cell/cellapi"
	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/frontdoor"
	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/openclaw"
	"github.com/clawhold/clawhold/sandbox"
	"github.com/clawhold/clawhold/store"
)

// Options configure Run.
type Options struct {
	Instance *instance.Instance
	// OpenClawDir overrides cells.openclaw_dir (the CLAWHOLD_OPENCLAW_DIR
	// environment variable).
	OpenClawDir string
	Exe         string    // this binary (default os.Executable)
	Version     string    // clawhold's version, recorded in backups
	Out         io.Writer // what the operator must see: setup link, fingerprint
	Stderr      io.Writer // provisioning progress
	Logger      *slog.Logger
}

// DefaultTenant is created on first start; the first administrator
// belongs to it.
const DefaultTenant = instance.DefaultTenant

// ControlSocket is where `clawhold cells` reaches a running `clawhold up`.
func ControlSocket(dataDir string) string { return filepath.Join(dataDir, "run", "control.sock") }

// Check validates the host for cells (the sandbox's kernel features, and
// FUSE for encrypted state) and returns the cells' sandbox profile, with
// the warnings of any layer it runs without.
func Check(ctx context.Context, cfg *config.Config) (*sandbox.Profile, []string, error) {
	if cfg.Cells.EncryptedState {
		if _, err := os.Stat("/dev/fuse"); err != nil {
			return nil, nil, fmt.Errorf("cells.encrypted_state needs FUSE and this host has no /dev/fuse (%v): load the fuse module (modprobe fuse), or set cells.encrypted_state: false to keep cell state in plaintext", err)
		}
	}
	p, err := sandbox.LoadProfile("openclaw")
	if err != nil {
		return nil, nil, err
	}
	q, warnings, err := sandbox.Fit(ctx, p)
	if err != nil {
		return nil, nil, fmt.Errorf("this host cannot run cells safely: %w", err)
	}
	return q, warnings, nil
}

// Run serves until ctx ends, then stops every cell.
func Run(ctx context.Context, o Options) error {
	in := o.Instance
	cfg := in.Config
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("up: finding this binary: %w", err)
		}
		o.Exe = exe
	}
	profile, warnings, err := Check(ctx, cfg)
	if err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(o.Out, "clawhold up: WARNING:", w)
	}
	ocDir := o.OpenClawDir
	if ocDir == "" {
		ocDir = cfg.Cells.OpenClawDir
	}
	if ocDir == "" {
		ocDir = filepath.Join(in.DataDir, "openclaw")
	}
	fmt.Fprintf(o.Out, "clawhold up: OpenClaw %s in %s (provisioning on first start takes a minute)\n", openclaw.Version, ocDir)
	oc, err := openclaw.Provision(ctx, openclaw.ProvisionOptions{Dir: ocDir, Stderr: o.Stderr, Logger: log})
	if err != nil {
		return err
	}
	if err := in.EnsureTenant(ctx, DefaultTenant); err != nil {
		return err
	}
	sys, err := in.DB(ctx, instance.SystemTenant)
	if err != nil {
		return err
	}
	kr, err := in.Keyring(ctx, instance.SystemTenant)
	if err != nil {
		return err
	}
	acc, err := frontdoor.Accounts(ctx, cfg.Frontdoor, sys, kr)
	if err != nil {
		return err
	}

	rec := newRecorders(ctx, in, log)
	defer rec.close()
	mon, err := newMonitoring(ctx, in, oc, o.Exe, rec, o.Stderr, log)
	if err != nil {
		return err
	}
	if mon.files != nil {
		rec.onEvent = func(tenant string, ev events.Event) {
			if ev.Type == cell.EventReady {
				go mon.files.cellReady(tenant)
			}
		}
	}

	policies, err := egress.PoliciesFromConfig(cfg.Egress)
	if err != nil {
		return err
	}
	proxy, err := egress.New(egress.Config{
		Policies: policies, AskTimeout: time.Duration(cfg.Egress.AskTimeout), Logger: log,
		Events: func(e egress.Event) {
			if e.Tenant != "" {
				rec.add(e.Tenant, events.Event{Time: e.Time, Type: "egress.decision", Actor: "cell:" + e.Tenant, Subject: e.Host, Detail: egressDetail(e)})
			}
		},
	})
	if err != nil {
		return err
	}

	rules := cfg.Cells.ToolRules
	mgr, err := cell.NewManager(cell.Options{
		DataDir: in.DataDir, OpenClaw: oc, Exe: o.Exe, PublicURL: cfg.Frontdoor.PublicURL, Profile: profile,
		Egress: proxy, EgressPolicy: cfg.EgressPolicyFor,
		Members: func(ctx context.Context, tenant string) ([]cell.Member, error) {
			return members(ctx, in, acc, tenant)
		},
		Overlays: func(tenant string) ([]map[string]any, error) { return overlays(cfg, tenant) },
		Secrets: func(ctx context.Context, tenant string, names []string) (map[string][]byte, error) {
			s, err := in.Secrets(ctx, tenant)
			if err != nil {
				return nil, err
			}
			return s.Lookup("cell:"+tenant)(ctx, names)
		},
		VolumeKeys:   volumeKeys(in),
		Decide:       func(c cellapi.ToolCall) cellapi.Decision { return decide(rules, c) },
		Record:       rec.add,
		StartTimeout: time.Duration(cfg.Cells.StartTimeout),
		IdleTimeout:  time.Duration(cfg.Cells.IdleTimeout),
		Logger:       log,
	})
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(1)
	go func() { defer wg.Done(); errc <- mgr.Run(runCtx) }()
	// Scheduled backups (backup.schedule; off by default). A failed run
	// is logged and retried at the next interval, never fatal to up.
	wg.Add(1)
	go func() {
		defer wg.Done()
		bo := backup.Options{Version: o.Version, Logger: log}
		if cfg.Cells.EncryptedState {
			bo.Spawn = func(ctx context.Context, tenant string) error {
				return spawnBackup(ctx, o.Exe, in, tenant)
			}
		}
		if err := backup.RunSchedule(runCtx, in, bo); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("up: backup schedule stopped", "err", err)
		}
	}()

	// Monitoring (issue 9): ship events into the sealed audit logs, detect,
	// alert.
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := mon.run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("up: monitoring stopped", "err", err)
		}
	}()

	// The continuous audit (audit.interval): a new critical finding is an
	// event in the tenant's log (the system's for the data dir).
	if cfg.Audit.Interval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			watchPosture(runCtx, in, mgr, rec, time.Duration(cfg.Audit.Interval), log)
		}()
	}

	ctl, err := listenControl(in.DataDir)
	if err != nil {
		cancel()
		wg.Wait()
		return err
	}
	ctlSrv := &http.Server{Handler: cell.ControlHandler(mgr), ReadHeaderTimeout: 10 * time.Second}
	go ctlSrv.Serve(ctl)
	defer ctlSrv.Close()

	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- frontdoor.Serve(runCtx, frontdoor.ServeOptions{
			Config: cfg.Frontdoor, DataDir: in.DataDir, DB: sys, Keyring: kr, Cells: mgr,
			Secret: func(ctx context.Context, name string) ([]byte, error) {
				s, err := in.Secrets(ctx, instance.SystemTenant)
				if err != nil {
					return nil, err
				}
				v, _, err := s.Get(ctx, "frontdoor", name)
				return v, err
			},
			Out: o.Out, Logger: log,
		})
	}()
	fmt.Fprintf(o.Out, "clawhold up: serving; cells start on their tenant's first request. Stop with Ctrl-C.\n")

	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	cancel()
	wg.Wait()
	close(errc)
	for err := range errc {
		if first == nil && err != nil && !errors.Is(err, context.Canceled) {
			first = err
		}
	}
	return first
}

// volumeKeys returns the cells' state volume keys when
// cells.encrypted_state is on, else nil (plaintext state).
func volumeKeys(in *instance.Instance) func(context.Context, string) ([][]byte, error) {
	if !in.Config.Cells.EncryptedState {
		return nil
	}
	return in.StateVolumeKeys
}

// spawnBackup runs `clawhold backup create --tenant T` as a child: a
// running cell's encrypted state is served by this process, and the
// snapshot through that mount must be taken by another one.
func spawnBackup(ctx context.Context, exe string, in *instance.Instance, tenant string) error {
	args := []string{"--data-dir", in.DataDir}
	if in.Config.Path != "" {
		args = append(args, "--config", in.Config.Path)
	}
	cmd := exec.CommandContext(ctx, exe, append(args, "backup", "create", "--tenant", tenant)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("backup of %s: %w: %s", tenant, err, bytes.TrimSpace(out))
	}
	return nil
}

// members lists tenant's enabled users for its cell's config.
func members(ctx context.Context, in *instance.Instance, acc *account.Service, tenant string) ([]cell.Member, error) {
	ok, err := in.Store.TenantExists(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("tenant %q: %w", tenant, cell.ErrUnknownTenant)
	}
	users, err := acc.List(ctx, account.ListOptions{Tenant: tenant})
	if err != nil {
		return nil, err
	}
	var out []cell.Member
	for _, u := range users {
		if !u.Disabled {
			out = append(out, cell.Member{Name: u.Name, Role: string(u.Role)})
		}
	}
	return out, nil
}

func overlays(cfg *config.Config, tenant string) ([]map[string]any, error) {
	var out []map[string]any
	for _, p := range []string{cfg.Cells.OpenClawConfig, cfg.Tenants[tenant].OpenClawConfig} {
		if p == "" {
			continue
		}
		m, err := cell.LoadOverlay(p)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// decide applies cells.tool_rules: first match wins, no match allows.
func decide(rules []config.ToolRule, c cellapi.ToolCall) cellapi.Decision {
	for _, r := range rules {
		if r.Tool == "*" || r.Tool == c.ToolName {
			if r.Action == "deny" {
				reason := r.Reason
				if reason == "" {
					reason = "denied by clawhold policy (cells.tool_rules)"
				}
				return cellapi.Decision{Allow: false, Reason: reason}
			}
			return cellapi.Decision{Allow: true}
		}
	}
	return cellapi.Decision{Allow: true}
}

func egressDetail(e egress.Event) map[string]any {
	d := map[string]any{"policy": e.Policy, "cell": e.Cell, "method": e.Method, "port": e.Port,
		"action": string(e.Action), "rule": e.Rule, "status": e.Status}
	if e.Reason != "" {
		d["reason"] = e.Reason
	}
	return d
}

func listenControl(dataDir string) (net.Listener, error) {
	path := ControlSocket(dataDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("up: control socket: %w", err)
	}
	// A live `clawhold up` answers on it; a stale socket is removed.
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("up: another clawhold up is running on this data dir (%s answers)", path)
	}
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("up: control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// recorders batch events into each tenant's database.
type recorders struct {
	ctx context.Context
	in  *instance.Instance
	log *slog.Logger
	mu  sync.Mutex
	m   map[string]*events.Recorder
	// onEvent, when set, sees every event as it is queued (set before
	// anything records).
	onEvent func(tenant string, ev events.Event)
}

func newRecorders(ctx context.Context, in *instance.Instance, log *slog.Logger) *recorders {
	return &recorders{ctx: context.WithoutCancel(ctx), in: in, log: log, m: map[string]*events.Recorder{}}
}

func (r *recorders) add(tenant string, ev events.Event) {
	if store.ValidTenantName(tenant) != nil && tenant != instance.SystemTenant {
		return
	}
	if r.onEvent != nil {
		r.onEvent(tenant, ev)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.m[tenant]
	if !ok {
		db, err := r.in.DB(r.ctx, tenant)
		if err != nil {
			r.log.Warn("up: recording event", "tenant", tenant, "type", ev.Type, "err", err)
			return
		}
		rec = events.NewRecorder(db)
		r.m[tenant] = rec
	}
	rec.Add(ev)
}

func (r *recorders) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, rec := range r.m {
		if err := rec.Close(); err != nil {
			r.log.Warn("up: flushing events", "tenant", t, "err", err)
		}
	}
}

// Event types of the continuous audit.
const (
	EventAuditCritical = "audit.critical"
	EventAuditResolved = "audit.resolved"
)

// watchPosture runs audit.Watch over the data dir and every cell's
// generated OpenClaw config and state dir.
func watchPosture(ctx context.Context, in *instance.Instance, mgr *cell.Manager, rec *recorders, every time.Duration, log *slog.Logger) {
	env := map[string]string{}
	targets := func() []audit.WatchTarget {
		ts := []audit.WatchTarget{{Name: instance.SystemTenant, Files: []string{in.Config.Path},
			Target: func() (*audit.Target, error) {
				return &audit.Target{DataDir: in.DataDir, ClawholdConfig: in.Config.Path, Env: env, Now: time.Now()}, nil
			}}}
		for _, st := range mgr.List() {
			l := cell.NewLayout(in.DataDir, st.Tenant)
			ts = append(ts, audit.WatchTarget{Name: st.Tenant, Files: []string{l.ConfigFile()},
				Target: func() (*audit.Target, error) {
					t, err := audit.NewTarget(l.Home, l.ConfigFile(), env)
					if err != nil {
						return nil, err
					}
					t.DataDir, t.ClawholdConfig = in.DataDir, in.Config.Path
					return t, nil
				}})
		}
		return ts
	}
	report := func(typ string) func(string, audit.Finding) {
		return func(tenant string, f audit.Finding) {
			log.Warn("up: posture "+typ, "tenant", tenant, "id", f.ID, "location", f.Location.String())
			rec.add(tenant, events.Event{Type: typ, Actor: "clawhold:audit", Subject: f.ID, Detail: map[string]any{
				"severity": f.Severity.String(), "title": f.Title, "evidence": f.Evidence,
				"location": f.Location.String(), "remediation": f.Remediation}})
		}
	}
	err := audit.Watch(ctx, audit.WatchOptions{Interval: every, Targets: targets,
		OnNew: report(EventAuditCritical), OnResolved: report(EventAuditResolved), Logger: log})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("up: the continuous audit stopped", "err", err)
	}
}
