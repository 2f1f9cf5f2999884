package audit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fixture is an OpenClaw install for one test: a state dir holding a
// config, laid out and permissioned as a careful operator would leave it
// (the baseline raises no finding of any rule that has a case), which a
// case then breaks in one way.
type fixture struct {
	t        *testing.T
	home     string // $HOME (the state dir is home/.openclaw)
	stateDir string
	config   map[string]any
	env      map[string]string
	target   Target // extra fields a case sets (Repos, Images, DataDir, ...)
}

// baselineConfig is a hardened openclaw.json: loopback bind, token auth
// with a token from the environment, mDNS off, sandboxed exec with an
// approver, pairing-only DMs, per-peer DM sessions, the egress proxy on.
func baselineConfig() map[string]any {
	return map[string]any{
		"gateway": map[string]any{
			"mode": "local",
			"bind": "loopback",
			"port": 18789,
			"auth": map[string]any{
				"mode":  "token",
				"token": map[string]any{"source": "env", "provider": "default", "id": "OPENCLAW_GATEWAY_TOKEN"},
			},
			"controlUi": map[string]any{"allowedOrigins": []any{"http://127.0.0.1:18789"}},
		},
		"discovery": map[string]any{"mdns": map[string]any{"mode": "off"}},
		"session":   map[string]any{"dmScope": "per-channel-peer"},
		"agents": map[string]any{"defaults": map[string]any{
			"sandbox": map[string]any{"mode": "all"},
		}},
		// tools.exec.mode is canonical in 2026.9.6 (security/ask are legacy keys doctor migrates).
		"tools":   map[string]any{"exec": map[string]any{"mode": "ask"}},
		"proxy":   map[string]any{"enabled": true, "proxyUrl": "http://127.0.0.1:3128"},
		"logging": map[string]any{"file": "~/.openclaw/logs/openclaw.log"},
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	home := t.TempDir()
	f := &fixture{t: t, home: home, stateDir: filepath.Join(home, ".openclaw"), config: baselineConfig(),
		env: map[string]string{"HOME": home}}
	for _, d := range []string{f.stateDir, filepath.Join(f.stateDir, "state"), filepath.Join(f.stateDir, "logs"),
		filepath.Join(f.stateDir, "credentials"), filepath.Join(f.stateDir, "agents", "main", "agent")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(home, 0o700)
	f.write("state/openclaw.sqlite", "SQLite format 3\x00", 0o600)
	f.write("agents/main/agent/openclaw-agent.sqlite", "SQLite format 3\x00", 0o600)
	f.write("logs/openclaw.log", "{}\n", 0o600)
	return f
}

// set sets the config key path (dotted) to v; nil deletes it.
func (f *fixture) set(path string, v any) {
	keys := strings.Split(path, ".")
	m := f.config
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	if v == nil {
		delete(m, keys[len(keys)-1])
		return
	}
	m[keys[len(keys)-1]] = v
}

// write creates a file under the state dir (rel) with mode.
func (f *fixture) write(rel, content string, mode os.FileMode) string {
	f.t.Helper()
	p := filepath.Join(f.stateDir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		f.t.Fatal(err)
	}
	os.Chmod(p, mode)
	return p
}

// run writes the config and audits the fixture.
func (f *fixture) run() *Report {
	f.t.Helper()
	b, err := json.MarshalIndent(f.config, "", "  ")
	if err != nil {
		f.t.Fatal(err)
	}
	cfgPath := filepath.Join(f.stateDir, "openclaw.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		f.t.Fatal(err)
	}
	tg, err := NewTarget(f.stateDir, "", f.env)
	if err != nil {
		f.t.Fatal(err)
	}
	tg.Repos, tg.Images, tg.Live, tg.DataDir, tg.ClawholdConfig = f.target.Repos, f.target.Images, f.target.Live, f.target.DataDir, f.target.ClawholdConfig
	if !f.target.Now.IsZero() {
		tg.Now = f.target.Now
	}
	rep, err := Run(context.Background(), tg, Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	return rep
}

// ruleCase breaks a baseline fixture so that rule id fires (or, in
// quietCases, changes it so that a rule of rulesOnBaseline does not).
type ruleCase struct {
	id     string
	name   string // optional: what this variant does
	break_ func(f *fixture)
}

// quietCases show, for each rule of rulesOnBaseline, what avoids it.
func quietCases() []ruleCase { return slices.Concat(encryptionQuietCases(), deploymentQuietCases()) }

// rulesOnBaseline are the rules the hardened baseline still triggers,
// because no setting of a plain OpenClaw install avoids them; each needs
// a quiet case showing what does.
func rulesOnBaseline() map[string]string {
	return map[string]string{
		"encryption.state_unencrypted": "a plain install keeps its SQLite stores in plaintext; clawhold's encrypted cells or an encrypted filesystem avoid it",
		"auditing.no_alert_sink":       "a plain install alerts no one; diagnostics.otel or clawhold's alerting avoid it",
	}
}

// ruleCases gathers every area's cases.
func ruleCases() []ruleCase {
	return slices.Concat(
		exposureCases(),
		secretCases(),
		filesystemCases(),
		encryptionCases(),
		isolationCases(),
		sandboxingCases(),
		deploymentCases(),
		liveCases(),
	)
}

func ids(r *Report) []string {
	var out []string
	for _, f := range r.Findings {
		out = append(out, f.ID)
	}
	return out
}

// TestRuleCases: each case's rule fires on its broken fixture and not on
// the baseline.
func TestRuleCases(t *testing.T) {
	base := newFixture(t).run()
	for _, c := range ruleCases() {
		name := c.id
		if c.name != "" {
			name += "/" + c.name
		}
		t.Run(name, func(t *testing.T) {
			_, expected := rulesOnBaseline()[c.id]
			if slices.Contains(ids(base), c.id) && !expected {
				t.Fatalf("%s fires on the baseline: %+v", c.id, findingsOf(base, c.id))
			}
			f := newFixture(t)
			c.break_(f)
			rep := f.run()
			got := findingsOf(rep, c.id)
			if len(got) == 0 {
				t.Fatalf("%s did not fire; findings: %v; errors: %v", c.id, ids(rep), rep.Errors)
			}
			for _, g := range got {
				if g.Evidence == "" || g.Location == (Location{}) || g.Title == "" || g.Remediation == "" {
					t.Errorf("finding without evidence, location, title or remediation: %+v", g)
				}
			}
		})
	}
}

// TestQuietCases: each rule the baseline triggers stays quiet where its
// quiet case says it should.
func TestQuietCases(t *testing.T) {
	for _, c := range quietCases() {
		t.Run(c.id+"/"+c.name, func(t *testing.T) {
			f := newFixture(t)
			c.break_(f)
			if got := findingsOf(f.run(), c.id); len(got) > 0 {
				t.Fatalf("%s fires although %s: %+v", c.id, c.name, got)
			}
		})
	}
}

// TestEveryRuleHasACase: the catalog and the cases agree.
func TestEveryRuleHasACase(t *testing.T) {
	have, quiet := map[string]bool{}, map[string]bool{}
	for _, c := range ruleCases() {
		have[c.id] = true
	}
	for _, c := range quietCases() {
		quiet[c.id] = true
	}
	for id := range rulesOnBaseline() {
		if !quiet[id] {
			t.Errorf("rule %s fires on the baseline but no quiet case shows what avoids it", id)
		}
	}
	seen := map[string]bool{}
	for _, r := range Rules() {
		if seen[r.ID] {
			t.Errorf("rule %s is defined twice", r.ID)
		}
		seen[r.ID] = true
		if !have[r.ID] {
			t.Errorf("rule %s has no case that makes it fire", r.ID)
		}
		if r.Area == "" || r.Severity == 0 || r.Title == "" || r.Remediation == "" {
			t.Errorf("rule %s lacks an area, severity, title or remediation", r.ID)
		}
	}
	for id := range have {
		if !seen[id] {
			t.Errorf("case for unknown rule %s", id)
		}
	}
}

// TestBaselineClean: the hardened baseline raises no warn or critical.
func TestBaselineClean(t *testing.T) {
	rep := newFixture(t).run()
	for _, f := range rep.Findings {
		if _, expected := rulesOnBaseline()[f.ID]; f.Severity >= Warn && !expected {
			t.Errorf("baseline: %s %s: %s (%s)", f.Severity, f.ID, f.Evidence, f.Location)
		}
	}
}

func findingsOf(r *Report, id string) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.ID == id {
			out = append(out, f)
		}
	}
	return out
}
