package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clawhold/clawhold/backup"
	"github.com/clawhold/clawhold/config"
)

// backupMaxAge is how old a tenant's newest complete backup may be.
const backupMaxAge = 48 * time.Hour

var deploymentRules = []Rule{
	{ID: "auditing.no_alert_sink", Area: Auditing, Severity: Warn,
		// Fires for clawhold when alerts.sinks is empty (detections are
		// then only in the audit log), and for a plain OpenClaw install
		// whose gateway is reachable from other hosts (bind beyond
		// loopback, Tailscale) and that exports no telemetry
		// (diagnostics.otel) a collector could alert on: a loopback-only
		// personal install is not flagged.
		Title:       "No alert sink: nobody is told about critical posture changes or attacks",
		Remediation: "configure alerts.sinks in clawhold's config (a webhook, slack, smtp or syslog sink; test with clawhold alerts test), or for OpenClaw alone export diagnostics.otel to a collector that alerts"},
	{ID: "auditing.log_dir_exposed", Area: Auditing, Severity: Warn,
		// The log file's own mode is fs.log_file_readable; this is where it
		// lives: a directory other users can list or write (OpenClaw's
		// default /tmp/openclaw) exposes new and rotated logs whatever mode
		// the current file has.
		Title:       "OpenClaw logs to a directory other users can read or write (such as /tmp)",
		Remediation: "set logging.file to a path in a private directory, e.g. ~/.openclaw/logs/openclaw.log (mode 700 directory)"},
	{ID: "deployment.openclaw_advisory", Area: Deployment, Severity: Warn,
		// The advisory's own severity sets the finding's.
		Title:       "Installed OpenClaw version is affected by a known security advisory",
		Remediation: "upgrade OpenClaw to a fixed version (see the advisory's URL); clawhold pins it with scripts/install-openclaw.sh"},
	{ID: "auditing.backup_stale", Area: Auditing, Severity: Warn,
		Title:       "No complete clawhold backup of a tenant in the last 2 days",
		Remediation: "clawhold backup create --tenant NAME, and set backup.schedule (e.g. 24h) so that clawhold up takes them"},
}

func deploymentChecks() []check {
	return []check{{name: "deployment", rules: deploymentRules, run: runDeployment}}
}

func runDeployment(ctx context.Context, t *Target, r *results) {
	var cfg *config.Config
	if t.DataDir != "" {
		var err error
		if cfg, err = clawholdConfig(t); err != nil {
			r.fail("clawhold config: %v", err)
		}
	}
	alertSink(t, cfg, r)
	logDir(t, r)
	advisories(t, cfg, r)
	if cfg != nil {
		backups(ctx, t, cfg, r)
	}
}

// exposedGateway says why the gateway is reachable from other hosts, or "".
func exposedGateway(c *Config) (string, Location) {
	if b := c.String("gateway.bind"); b != "" && b != "loopback" {
		return fmt.Sprintf("gateway.bind is %q", b), c.Loc("gateway.bind")
	}
	if m := c.String("gateway.tailscale.mode"); m == "serve" || m == "funnel" {
		return fmt.Sprintf("gateway.tailscale.mode is %q", m), c.Loc("gateway.tailscale.mode")
	}
	return "", Location{}
}

func alertSink(t *Target, cfg *config.Config, r *results) {
	if cfg != nil {
		if len(cfg.Alerts.Sinks) > 0 {
			return
		}
		loc := Location{File: cfg.Path}
		if cfg.Path == "" {
			loc = Location{File: t.DataDir}
		}
		r.add("auditing.no_alert_sink", loc, "clawhold has no alert sink configured (alerts.sinks is empty): detections are only logged; add a webhook, slack, smtp or syslog sink")
		return
	}
	if t.Config == nil {
		return
	}
	if on, _ := t.Config.Bool("diagnostics.otel.enabled"); on && t.Config.String("diagnostics.otel.endpoint") != "" {
		return
	}
	evidence := "OpenClaw does not run under clawhold and diagnostics.otel exports nothing: no one is alerted"
	if why, _ := exposedGateway(t.Config); why != "" {
		evidence = why + "; " + evidence
	}
	r.add("auditing.no_alert_sink", t.Config.Loc("diagnostics.otel"), evidence)
}

// logDir judges the directory the file log goes to.
func logDir(t *Target, r *results) {
	var dir string
	var loc Location
	if lf := logFile(t); lf != "" {
		dir, loc = filepath.Dir(lf), t.Config.Loc("logging.file")
	} else {
		dir = defaultLogDir
		loc = Location{File: t.ConfigPath, Key: "logging.file"}
		if t.Config == nil {
			loc = Location{File: dir}
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && dir == defaultLogDir {
			// Not created yet: OpenClaw creates it at its first log line,
			// under /tmp, where another user may create it first.
			r.add("auditing.log_dir_exposed", loc, fmt.Sprintf("logging.file is unset: OpenClaw will log to %s/openclaw-YYYY-MM-DD.log under the shared /tmp", defaultLogDir))
		}
		return
	}
	m := fi.Mode()
	b := accessOf(m)
	var why []string
	if b.otherWrite {
		why = append(why, "every user can create and rename files in it")
	} else if b.groupWrite {
		why = append(why, "its group can create and rename files in it")
	}
	if b.otherRead {
		why = append(why, "every user can list and open it")
	} else if b.groupRead {
		why = append(why, "its group can list and open it")
	}
	if uid, ok := fileUID(fi); ok && t.StateDir != "" {
		if sfi, err := os.Stat(t.StateDir); err == nil {
			if owner, ok := fileUID(sfi); ok && uid != owner && uid != 0 {
				why = append(why, fmt.Sprintf("it is owned by uid %d, not the state dir's owner %d", uid, owner))
			}
		}
	}
	if len(why) == 0 {
		return
	}
	f := r.add("auditing.log_dir_exposed", loc, fmt.Sprintf("log directory %s is mode %04o: %s", dir, m.Perm(), strings.Join(why, "; ")))
	if b.otherWrite && m&fs.ModeSticky == 0 {
		f.Severity = Critical
	}
}

// installedOpenClaw returns the OpenClaw version and where it was read:
// the package.json of an install clawhold provisions (cells.openclaw_dir,
// <data dir>/openclaw, $CLAWHOLD_OPENCLAW_DIR), else the config's
// meta.lastTouchedVersion (the last OpenClaw that wrote it).
func installedOpenClaw(t *Target, cfg *config.Config) (string, Location) {
	var dirs []string
	if cfg != nil && cfg.Cells.OpenClawDir != "" {
		dirs = append(dirs, cfg.Cells.OpenClawDir)
	}
	if t.DataDir != "" {
		dirs = append(dirs, filepath.Join(t.DataDir, "openclaw"))
	}
	if d := t.Env["CLAWHOLD_OPENCLAW_DIR"]; d != "" {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		p := filepath.Join(d, "node_modules", "openclaw", "package.json")
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var pkg struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(b, &pkg) == nil && pkg.Version != "" {
			return pkg.Version, Location{File: p, Key: "version"}
		}
	}
	if v := t.Config.String("meta.lastTouchedVersion"); v != "" {
		return v, t.Config.Loc("meta.lastTouchedVersion")
	}
	return "", Location{}
}

func advisories(t *Target, cfg *config.Config, r *results) {
	ver, loc := installedOpenClaw(t, cfg)
	if ver == "" {
		return
	}
	v, ok := parseOpenClawVersion(ver)
	if !ok {
		r.fail("OpenClaw version %q (%s) is not YYYY.M.D", ver, loc)
		return
	}
	advs, src, err := loadAdvisories(t)
	if err != nil {
		r.fail("%v", err)
		return
	}
	for _, a := range advs {
		if !a.affects(v) {
			continue
		}
		ev := fmt.Sprintf("OpenClaw %s is affected by %s: %s", ver, a.ID, a.Title)
		if a.URL != "" {
			ev += " (" + a.URL + ")"
		}
		f := r.add("deployment.openclaw_advisory", loc, ev+"; from "+src)
		f.Severity = a.Severity
	}
}

// backups reports each tenant whose newest complete backup is missing or
// older than 2 days. "Complete" is backup.List's structural check, which
// needs no key; `clawhold backup verify` authenticates.
func backups(ctx context.Context, t *Target, cfg *config.Config, r *results) {
	in, err := openClawhold(ctx, t)
	if err != nil {
		r.fail("clawhold data dir %s: %v", t.DataDir, err)
		return
	}
	defer in.Close()
	tenants, err := in.Tenants(ctx)
	if err != nil {
		r.fail("tenants: %v", err)
		return
	}
	dir := cfg.BackupDir(in.DataDir)
	for _, tenant := range tenants {
		last, err := backup.LastGood(dir, tenant)
		loc := Location{File: dir, Key: "tenant " + tenant}
		switch {
		case errors.Is(err, backup.ErrNoBackup):
			r.add("auditing.backup_stale", loc, fmt.Sprintf("tenant %s has no complete backup in %s", tenant, dir))
		case err != nil:
			r.fail("backups: %v", err)
			return
		case t.Now.Sub(last) > backupMaxAge:
			r.add("auditing.backup_stale", loc, fmt.Sprintf("tenant %s: newest complete backup is from %s, %.1f days ago",
				tenant, last.UTC().Format(time.RFC3339), t.Now.Sub(last).Hours()/24))
		}
	}
}
