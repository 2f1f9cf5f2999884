package audit

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/clawhold/clawhold/backup"
)

// fakeAdvisories is a data file whose only advisory is made up for the
// tests (it affects 2026.1.0 up to, not including, 2026.9.7).
func fakeAdvisories(t *testing.T) string {
	p, err := filepath.Abs(filepath.Join("testdata", "advisories-fake.json"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// deploymentCases break the baseline for each deployment and auditing rule.
func deploymentCases() []ruleCase {
	logIn := func(mode os.FileMode) func(f *fixture) {
		return func(f *fixture) {
			dir := filepath.Join(f.home, "shared-logs")
			if err := os.Mkdir(dir, 0o700); err != nil {
				f.t.Fatal(err)
			}
			os.Chmod(dir, mode)
			f.set("logging.file", filepath.Join(dir, "openclaw.log"))
		}
	}
	return []ruleCase{
		{"auditing.no_alert_sink", "clawhold without alerting", func(f *fixture) { clawholdData(f, "") }},
		{"auditing.no_alert_sink", "exposed OpenClaw without clawhold", func(f *fixture) { f.set("gateway.bind", "lan") }},
		{"auditing.log_dir_exposed", "world-readable dir", logIn(0o755)},
		{"auditing.log_dir_exposed", "world-writable dir", logIn(0o777)},
		{"auditing.log_dir_exposed", "sticky /tmp-like dir", logIn(0o777 | os.ModeSticky)},
		{"deployment.openclaw_advisory", "meta.lastTouchedVersion, $CLAWHOLD_ADVISORIES", func(f *fixture) {
			f.set("meta.lastTouchedVersion", "2026.9.6")
			f.env["CLAWHOLD_ADVISORIES"] = fakeAdvisories(f.t)
		}},
		{"deployment.openclaw_advisory", "provisioned package.json, data dir advisories.json", func(f *fixture) {
			clawholdData(f, "")
			b, err := os.ReadFile(fakeAdvisories(f.t))
			if err != nil {
				f.t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(f.target.DataDir, "advisories.json"), b, 0o600); err != nil {
				f.t.Fatal(err)
			}
			pkg := filepath.Join(f.target.DataDir, "openclaw", "node_modules", "openclaw", "package.json")
			if err := os.MkdirAll(filepath.Dir(pkg), 0o700); err != nil {
				f.t.Fatal(err)
			}
			if err := os.WriteFile(pkg, []byte(`{"name":"openclaw","version":"2026.9.6"}`), 0o600); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"auditing.backup_stale", "tenant never backed up", func(f *fixture) { clawholdData(f, "", "acme") }},
	}
}

// A real backup taken now is recent; three days later it is stale.
func TestBackupAge(t *testing.T) {
	f := newFixture(t)
	in := clawholdData(f, "", "acme")
	if _, err := backup.Create(context.Background(), in, "acme", backup.Options{}); err != nil {
		t.Fatalf("backup.Create: %v", err)
	}
	in.Close()
	if got := findingsOf(f.run(), "auditing.backup_stale"); len(got) != 0 {
		t.Errorf("fresh backup: %+v", got)
	}
	f.target.Now = time.Now().Add(72 * time.Hour)
	if got := findingsOf(f.run(), "auditing.backup_stale"); len(got) != 1 {
		t.Errorf("3 days later: %+v, want one finding", got)
	}
}

func deploymentQuietCases() []ruleCase {
	return []ruleCase{
		{"auditing.no_alert_sink", "OpenTelemetry export configured", func(f *fixture) {
			f.set("diagnostics.otel", map[string]any{"enabled": true, "endpoint": "http://127.0.0.1:4318"})
		}},
		{"auditing.no_alert_sink", "clawhold with an alert sink", func(f *fixture) {
			clawholdData(f, "alerts:\n  sinks:\n    - type: stderr\n")
		}},
	}
}
