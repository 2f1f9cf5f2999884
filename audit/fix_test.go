package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// brokenForFix is a fixture with one finding of each kind Fix repairs
// without clawhold's data dir: a short gateway token, mDNS full, a short
// hooks token, a world-readable credential file.
func brokenForFix(t *testing.T) *fixture {
	f := newFixture(t)
	f.set("gateway.auth", map[string]any{"mode": "token", "token": "short-token-1"})
	f.set("discovery.mdns.mode", "full")
	f.set("hooks", map[string]any{"enabled": true, "token": "hooks-short", "path": "/hooks"})
	f.write("credentials/whatsapp/default/creds.json", `{"noiseKey":"x"}`, 0o644)
	return f
}

func (f *fixture) targetT() *Target {
	f.t.Helper()
	tg, err := NewTarget(f.stateDir, "", f.env)
	if err != nil {
		f.t.Fatal(err)
	}
	return tg
}

// fixable lists the findings Fix could repair without clawhold's store.
func fixable(r *Report) []string {
	var out []string
	for _, f := range r.Findings {
		if f.Fixable && !strings.HasPrefix(f.ID, "secrets.config") {
			out = append(out, f.ID+" "+f.Location.String())
		}
	}
	return out
}

// TestFixThenReaudit: after Fix, the audit finds nothing Fix could still
// repair; the original config is kept as a 0600 backup; the real
// gateway starts on the fixed config.
func TestFixThenReaudit(t *testing.T) {
	f := brokenForFix(t)
	rep := f.run()
	before := fixable(rep)
	if len(before) < 3 {
		t.Fatalf("the broken fixture has only %d fixable findings: %v", len(before), before)
	}
	cfgPath := filepath.Join(f.stateDir, "openclaw.json")
	orig, _ := os.ReadFile(cfgPath)
	var out bytes.Buffer
	if err := Fix(context.Background(), f.targetT(), rep, FixOptions{Out: &out}); err != nil {
		t.Fatal(err)
	}
	t.Logf("fix:\n%s", out.String())
	for _, s := range []string{"short-token-1", "hooks-short"} {
		if strings.Contains(out.String(), s) {
			t.Errorf("Fix printed the old secret %q", s)
		}
	}
	after, err := Run(context.Background(), f.targetT(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if left := fixable(after); len(left) > 0 {
		t.Errorf("fixable findings left after Fix: %v", left)
	}
	backups, _ := filepath.Glob(cfgPath + ".clawhold-fix-*")
	if len(backups) != 1 {
		t.Fatalf("backups: %v", backups)
	}
	fi, _ := os.Stat(backups[0])
	b, _ := os.ReadFile(backups[0])
	if fi.Mode().Perm() != 0o600 || !bytes.Equal(b, orig) {
		t.Errorf("backup %s: mode %v, same as the original: %v", backups[0], fi.Mode(), bytes.Equal(b, orig))
	}
	fixed, _ := os.ReadFile(cfgPath)
	var cfg map[string]any
	if err := json.Unmarshal(fixed, &cfg); err != nil {
		t.Fatalf("fixed config: %v", err)
	}
	// OpenClaw still starts on it (the runner sets the port).
	g := openclawtest.Start(t, openclawtest.Install(t), cfg)
	t.Logf("gateway ready on the fixed config, port %d", g.Port())
}

// TestFixDryRun changes nothing and shows a diff without secrets.
func TestFixDryRun(t *testing.T) {
	f := brokenForFix(t)
	rep := f.run()
	cfgPath := filepath.Join(f.stateDir, "openclaw.json")
	orig, _ := os.ReadFile(cfgPath)
	cred := filepath.Join(f.stateDir, "credentials/whatsapp/default/creds.json")
	var out bytes.Buffer
	if err := Fix(context.Background(), f.targetT(), rep, FixOptions{Out: &out, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	now, _ := os.ReadFile(cfgPath)
	if !bytes.Equal(now, orig) {
		t.Error("a dry run changed the config")
	}
	if fi, _ := os.Stat(cred); fi.Mode().Perm() != 0o644 {
		t.Errorf("a dry run changed a mode: %v", fi.Mode())
	}
	if backups, _ := filepath.Glob(cfgPath + ".clawhold-fix-*"); len(backups) != 0 {
		t.Errorf("a dry run wrote backups: %v", backups)
	}
	s := out.String()
	if !regexp.MustCompile(`\n\+\s+"mode": "off"`).MatchString(s) || !strings.Contains(s, "would chmod 600 "+cred) {
		t.Errorf("dry run output lacks the mDNS diff or the chmod:\n%s", s)
	}
	for _, secret := range []string{"short-token-1", "hooks-short"} {
		if strings.Contains(s, secret) {
			t.Errorf("the dry run printed the secret %q:\n%s", secret, s)
		}
	}
}

// TestFixKeepsOwner: root fixing another user's config leaves it that
// user's, or OpenClaw could no longer read it.
func TestFixKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to chown, and CI=true forbids skipping")
		}
		t.Skip("needs root to chown")
	}
	f := brokenForFix(t)
	rep := f.run()
	cfgPath := filepath.Join(f.stateDir, "openclaw.json")
	const uid, gid = 65534, 65534
	if err := os.Chown(cfgPath, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := Fix(context.Background(), f.targetT(), rep, FixOptions{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o600 {
		t.Fatalf("fixed config owned by %d:%d mode %v, want %d:%d 0600", st.Uid, st.Gid, fi.Mode(), uid, gid)
	}
}
