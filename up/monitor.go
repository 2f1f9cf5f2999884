package up

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/monitor"
	"github.com/clawhold/clawhold/monitor/alert"
	"github.com/clawhold/clawhold/monitor/anomaly"
	"github.com/clawhold/clawhold/monitor/cmdrule"
	"github.com/clawhold/clawhold/monitor/fileaccess"
	"github.com/clawhold/clawhold/openclaw"
	"github.com/clawhold/clawhold/store"
)

// monitoring is issue 9 inside up: the audit logs, the detectors, the
// alert sinks and credential-file tracking.
type monitoring struct {
	in     *instance.Instance
	mon    *monitor.Monitor
	alerts *alert.Dispatcher
	locate io.Closer
	files  *fileWatch // nil when monitor.file_access is off or unavailable
}

// newMonitoring builds the monitor from the config. A bad rule file or
// alert sink is an error (the operator asked for it); missing fanotify is
// a warning (tracking degrades, detection does not stop).
func newMonitoring(ctx context.Context, in *instance.Instance, oc *openclaw.Install, exe string, rec *recorders, stderr io.Writer, log *slog.Logger) (*monitoring, error) {
	cfg := in.Config
	rules, err := cmdrule.Load(cmdrule.DefaultRules(), cfg.Monitor.Rules, cfg.Monitor.DisableRules)
	if err != nil {
		return nil, fmt.Errorf("monitor.rules: %w", err)
	}
	routes, err := alert.FromConfig(cfg.Alerts, func(ctx context.Context, name string) ([]byte, error) {
		s, err := in.Secrets(ctx, instance.SystemTenant)
		if err != nil {
			return nil, err
		}
		v, _, err := s.Get(ctx, "clawhold:alerts", name)
		return v, err
	}, stderr)
	if err != nil {
		return nil, err
	}
	for _, err := range alert.Unresolved(routes) {
		fmt.Fprintf(stderr, "clawhold up: WARNING: %v; alerts to this sink fail until it is stored\n", err)
	}
	m := &monitoring{in: in}
	m.alerts = alert.NewDispatcher(alert.Options{
		Routes: routes, DedupeWindow: time.Duration(cfg.Alerts.DedupeWindow), RateLimit: cfg.Alerts.RateLimit, Logger: log,
		OnError: func(sink string, a alert.Alert, err error) {
			log.Warn("up: alert not delivered", "sink", sink, "rule", a.Rule, "err", err)
		},
	})
	ao := anomaly.FromConfig(cfg.Monitor.Logins, cfg.Monitor.Baselines)
	ao.DB = func(ctx context.Context, tenant string) (*store.DB, error) {
		// Events name tenants (session.create's detail.tenant): never
		// let one create a database.
		if err := in.CheckTenant(ctx, tenant); err != nil {
			return nil, err
		}
		return in.DB(ctx, tenant)
	}
	if cfg.Frontdoor.GeoIPCityDB != "" {
		loc, err := anomaly.NewMMDBLocator(cfg.Frontdoor.GeoIPCityDB)
		if err != nil {
			m.alerts.Close(ctx)
			return nil, fmt.Errorf("frontdoor.geoip_city_db: %w", err)
		}
		ao.Locate, m.locate = loc.Locate, loc
	}
	m.mon = monitor.New(monitor.Options{
		Log: in.AuditLog,
		Tenants: func(ctx context.Context) ([]string, error) {
			ts, err := in.Tenants(ctx)
			return append([]string{instance.SystemTenant}, ts...), err
		},
		Commands:           rules,
		AllowedHosts:       func(tenant string) []string { return allowedHosts(cfg, tenant) },
		Anomalies:          anomaly.New(ao),
		Alerts:             m.alerts,
		CheckpointInterval: time.Duration(cfg.Monitor.CheckpointInterval),
		Retention:          time.Duration(cfg.Monitor.Retention),
		Logger:             log,
	})
	if cfg.Monitor.FileAccess.Enabled {
		fw, err := newFileWatch(ctx, in, oc, exe, rec, log)
		if err != nil {
			log.Warn("up: credential-file tracking is off", "err", err)
			fmt.Fprintf(stderr, "clawhold up: WARNING: credential-file tracking is off: %v\n", err)
		} else {
			m.files = fw
		}
	}
	return m, nil
}

// run follows the logs until ctx ends, then delivers what is queued.
func (m *monitoring) run(ctx context.Context) error {
	err := m.mon.Run(ctx)
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	m.alerts.Close(closeCtx)
	if m.files != nil {
		m.files.close()
	}
	if m.locate != nil {
		m.locate.Close()
	}
	return err
}

// allowedHosts is the host allowlist of tenant's egress policy, for the
// command rules' "download from an unknown host".
func allowedHosts(cfg *config.Config, tenant string) []string {
	p := cfg.Egress.Policies[cfg.EgressPolicyFor(tenant)]
	var out []string
	for _, r := range p.Rules {
		if r.Action == "allow" && r.Host != "" {
			out = append(out, r.Host)
		}
	}
	return out
}

// fileWatch tracks access to credential and state files: clawhold's root
// key and databases, and per cell its OpenClaw config and state, .env,
// ~/.ssh and ~/.aws. An access by anything but the expected process — the
// cell's own OpenClaw gateway for its files, clawhold for its own — is
// recorded with expected=false, which the monitor turns into an alert.
type fileWatch struct {
	w   *fileaccess.Watcher
	in  *instance.Instance
	oc  *openclaw.Install
	exe string
	rec *recorders
	log *slog.Logger

	mu    sync.Mutex
	cells map[string][]string // tenant → paths added for its current run
}

// Labels of watched paths: who is expected to open them.
const (
	labelClawhold = "clawhold"
	labelExtra    = "extra"
	labelCell     = "cell:" // + tenant
)

func newFileWatch(ctx context.Context, in *instance.Instance, oc *openclaw.Install, exe string, rec *recorders, log *slog.Logger) (*fileWatch, error) {
	fw := &fileWatch{in: in, oc: oc, exe: exe, rec: rec, log: log, cells: map[string][]string{}}
	w, err := fileaccess.New(ctx, fileaccess.Options{Logger: log, OnAccess: fw.record, RescanInterval: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	fw.w = w
	if w.Mode() != fileaccess.ModeFanotifyPerm {
		log.Warn("up: credential-file tracking without fanotify permission events: accesses may be unattributed", "mode", w.Mode())
	}
	// The root key, not the databases: this process holds SQLite's POSIX
	// locks on them, and the kernel drops every lock a process holds on a
	// file when it closes any descriptor of it — including the one
	// fanotify hands over with each event. Another process's close would
	// then find the database unshared and delete the WAL this process is
	// still writing to. (The databases are 0600, root's, and what matters
	// in them is sealed.)
	if p := in.RootKeyPath(); p != "" {
		if err := w.Add(p, labelClawhold); err != nil {
			log.Warn("up: watching", "path", p, "err", err)
		}
	}
	for _, p := range in.Config.Monitor.FileAccess.Paths {
		if err := w.Add(p, labelExtra); err != nil {
			log.Warn("up: watching monitor.file_access.paths", "path", p, "err", err)
		}
	}
	return fw, nil
}

func (fw *fileWatch) close() { fw.w.Close() }

// cellReady (re)marks a cell's files once its gateway runs. With
// encrypted state its files exist only in the cell's mount namespace and
// are reached through /proc/<gateway>/root.
func (fw *fileWatch) cellReady(tenant string) {
	l := cell.NewLayout(fw.in.DataDir, tenant)
	uid := cell.IDsFor(tenant).UID
	root := ""
	if fw.in.Config.Cells.EncryptedState {
		pid := processOf(uid, fw.oc.Node)
		if pid == 0 {
			fw.log.Warn("up: no gateway process to watch the state of", "tenant", tenant)
			return
		}
		root = fmt.Sprintf("/proc/%d/root", pid)
	}
	paths := []string{l.ConfigFile(), root + l.StateDir(), root + filepath.Join(l.Home, ".ssh"),
		root + filepath.Join(l.Home, ".aws"), root + filepath.Join(l.Home, ".env"), filepath.Join(l.Workspace, ".env")}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	for _, p := range fw.cells[tenant] {
		fw.w.Remove(p)
	}
	fw.cells[tenant] = nil
	for _, p := range paths {
		if err := fw.w.Add(p, labelCell+tenant); err != nil {
			fw.log.Warn("up: watching a cell's file", "tenant", tenant, "path", p, "err", err)
			continue
		}
		fw.cells[tenant] = append(fw.cells[tenant], p)
	}
}

// record turns an access into a file.access event in the log of the
// tenant it concerns. clawhold's own accesses are not recorded: this
// process is the trust base, and recording them would feed on itself.
func (fw *fileWatch) record(a fileaccess.Access) {
	if a.Self {
		return
	}
	tenant, expected := instance.SystemTenant, false
	switch {
	case a.Label == labelClawhold:
		// clawhold's own commands (run by the operator as root).
		expected = a.Exe == fw.exe && a.UID == 0
	case strings.HasPrefix(a.Label, labelCell):
		tenant = strings.TrimPrefix(a.Label, labelCell)
		expected = a.Matches([]fileaccess.Expect{{Exe: fw.oc.Node, UID: cell.IDsFor(tenant).UID}, {Exe: fw.exe, UID: 0}})
	}
	path := a.Path
	if rest, ok := strings.CutPrefix(path, "/proc/"); ok {
		// /proc/<pid>/root/x names x in the cell's namespace.
		if _, p, ok := strings.Cut(rest, "/root/"); ok {
			path = "/" + p
		}
	}
	detail := map[string]any{"kind": a.Kind, "pid": a.Pid, "uid": a.UID, "exe": a.Exe, "argv": a.Argv,
		"expected": expected, "label": a.Label}
	if a.PPid != 0 {
		detail["ppid"] = a.PPid
	}
	if a.Comm != "" {
		detail["comm"] = a.Comm
	}
	actor := "pid:" + strconv.Itoa(a.Pid)
	if a.Exe != "" {
		actor = a.Exe + "(pid " + strconv.Itoa(a.Pid) + ")"
	}
	fw.rec.add(tenant, events.Event{Time: a.Time, Type: monitor.EventFileAccess, Actor: actor, Subject: path, Detail: detail})
}

// processOf returns a process running exe as uid, or 0.
func processOf(uid int, exe string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.Stat(filepath.Join("/proc", e.Name()))
		if err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != uid {
			continue
		}
		if p, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); p == exe {
			return pid
		}
	}
	return 0
}
