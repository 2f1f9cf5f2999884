package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Schema names the version of the JSON report; it changes only when a
// field changes meaning or goes away (docs/audit.md).
const Schema = "clawhold.audit/v1"

// Target is what one audit looks at.
type Target struct {
	// StateDir is OpenClaw's state dir ($OPENCLAW_STATE_DIR, ~/.openclaw).
	StateDir string
	// ConfigPath is openclaw.json ($OPENCLAW_CONFIG_PATH, or in StateDir).
	ConfigPath string
	// Config is ConfigPath parsed; nil when there is no config file.
	Config *Config
	// Repos are git repositories whose files and history are scanned
	// for secrets.
	Repos []string
	// Images are container image tarballs (docker save or OCI layout)
	// whose every layer is scanned for secrets.
	Images []string
	// Live inspects the running host: listeners and the gateway's port.
	Live bool
	// DataDir is clawhold's data dir when there is one ("" otherwise).
	DataDir string
	// ClawholdConfig is clawhold's config file, when there is one.
	ClawholdConfig string
	// Env is the environment OpenClaw would run with (for variables
	// that override the config, such as OPENCLAW_GATEWAY_TOKEN).
	Env map[string]string
	// Now is the audit's clock (key and backup ages).
	Now time.Time
}

// NewTarget fills a Target's defaults from the environment: the state
// dir, the config path and the parsed config. A config that does not
// parse is an error naming the file.
func NewTarget(stateDir, configPath string, env map[string]string) (*Target, error) {
	if stateDir == "" {
		stateDir = env["OPENCLAW_STATE_DIR"]
	}
	if stateDir == "" {
		home := env["HOME"]
		if home == "" {
			home, _ = os.UserHomeDir()
		}
		stateDir = filepath.Join(home, ".openclaw")
	}
	if configPath == "" {
		configPath = env["OPENCLAW_CONFIG_PATH"]
	}
	if configPath == "" {
		configPath = filepath.Join(stateDir, "openclaw.json")
	}
	cfg, err := LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	return &Target{StateDir: stateDir, ConfigPath: configPath, Config: cfg, Env: env, Now: time.Now()}, nil
}

// Rule is one kind of finding: the catalog entry behind a finding id.
// A finding may raise the severity of its rule (warn/critical rules);
// everything else comes from here, so that ids, titles and remediations
// stay stable across runs.
type Rule struct {
	ID          string
	Area        Area
	Severity    Severity
	Title       string
	Remediation string
	Fixable     bool
}

// check is a group of rules and the code that evaluates them.
type check struct {
	name  string
	rules []Rule
	run   func(ctx context.Context, t *Target, r *results)
}

// results collects a check's findings.
type results struct {
	rules    map[string]Rule
	findings []Finding
	errs     []string
}

// add records a finding of rule id. It panics on an unknown id: that is
// a programming error the catalog test catches.
func (r *results) add(id string, loc Location, evidence string) *Finding {
	rule, ok := r.rules[id]
	if !ok {
		panic("audit: finding of unknown rule " + id)
	}
	_, configFix := configFixes()[id]
	r.findings = append(r.findings, Finding{ID: id, Severity: rule.Severity, Area: rule.Area, Title: rule.Title,
		Evidence: evidence, Remediation: rule.Remediation, Location: loc, Source: SourceClawhold, Fixable: rule.Fixable || configFix})
	return &r.findings[len(r.findings)-1]
}

// fail records that part of a check could not run.
func (r *results) fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// checks returns every native check.
func checks() []check {
	return slices.Concat(
		exposureChecks(),
		secretChecks(),
		filesystemChecks(),
		encryptionChecks(),
		isolationChecks(),
		sandboxingChecks(),
		deploymentChecks(),
		liveChecks(),
	)
}

// Rules returns the catalog of native rules, sorted by id.
func Rules() []Rule {
	var out []Rule
	fixes := configFixes()
	for _, c := range checks() {
		for _, r := range c.rules {
			_, fix := fixes[r.ID]
			r.Fixable = r.Fixable || fix
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Report is the result of an audit.
type Report struct {
	Schema   string        `json:"schema"`
	Time     time.Time     `json:"time"`
	Duration time.Duration `json:"duration_ns"`
	Target   struct {
		StateDir string   `json:"state_dir"`
		Config   string   `json:"config"`
		Repos    []string `json:"repos,omitempty"`
		Images   []string `json:"images,omitempty"`
		Live     bool     `json:"live"`
		DataDir  string   `json:"data_dir,omitempty"`
	} `json:"target"`
	Summary struct {
		Critical int `json:"critical"`
		Warn     int `json:"warn"`
		Info     int `json:"info"`
	} `json:"summary"`
	Findings []Finding `json:"findings"`
	// Errors are parts of the audit that could not run (an unreadable
	// file, an image that does not open, OpenClaw's CLI failing).
	Errors []string `json:"errors,omitempty"`
}

// Options tune Run.
type Options struct {
	// OpenClaw, when set, runs OpenClaw's own audits with this command
	// (argv prefix, e.g. node and openclaw.mjs) and merges their findings.
	OpenClaw []string
}

// Run audits t.
func Run(ctx context.Context, t *Target, o Options) (*Report, error) {
	start := time.Now()
	if t.Now.IsZero() {
		t.Now = start
	}
	rep := &Report{Schema: Schema, Time: t.Now}
	rep.Target.StateDir, rep.Target.Config = t.StateDir, t.ConfigPath
	rep.Target.Repos, rep.Target.Images, rep.Target.Live, rep.Target.DataDir = t.Repos, t.Images, t.Live, t.DataDir
	for _, c := range checks() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r := &results{rules: make(map[string]Rule, len(c.rules))}
		for _, rule := range c.rules {
			r.rules[rule.ID] = rule
		}
		c.run(ctx, t, r)
		rep.Findings = append(rep.Findings, r.findings...)
		for _, e := range r.errs {
			rep.Errors = append(rep.Errors, c.name+": "+e)
		}
	}
	if len(o.OpenClaw) > 0 {
		merged, errs := openClawFindings(ctx, t, o.OpenClaw)
		rep.Findings = fold(rep.Findings, merged)
		rep.Errors = append(rep.Errors, errs...)
	}
	sortFindings(rep.Findings)
	for _, f := range rep.Findings {
		switch f.Severity {
		case Critical:
			rep.Summary.Critical++
		case Warn:
			rep.Summary.Warn++
		case Info:
			rep.Summary.Info++
		}
	}
	rep.Duration = time.Since(start)
	return rep, nil
}

// Fails reports whether any finding is at least min severe.
func (r *Report) Fails(min Severity) bool {
	for _, f := range r.Findings {
		if f.Severity >= min {
			return true
		}
	}
	return false
}

// sortFindings orders by severity (worst first), area, id and location.
func sortFindings(fs []Finding) {
	area := map[Area]int{}
	for i, a := range Areas() {
		area[a] = i
	}
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Severity != b.Severity {
			return a.Severity > b.Severity
		}
		if area[a.Area] != area[b.Area] {
			return area[a.Area] < area[b.Area]
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Location.String() < b.Location.String()
	})
}

// joinKeys is a short human list of config keys.
func joinKeys(keys []string) string { return strings.Join(keys, ", ") }
