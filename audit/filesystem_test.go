package audit

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// filesystemCases break the baseline for each filesystem rule.
func filesystemCases() []ruleCase {
	chmod := func(f *fixture, rel string, mode os.FileMode) {
		f.t.Helper()
		if err := os.Chmod(filepath.Join(f.stateDir, rel), mode); err != nil {
			f.t.Fatal(err)
		}
	}
	// preConfig creates openclaw.json with mode before run writes it (run
	// keeps an existing file's mode).
	preConfig := func(mode os.FileMode) func(f *fixture) {
		return func(f *fixture) { f.write("openclaw.json", "{}", mode) }
	}
	return []ruleCase{
		{"fs.state_dir_readable", "0755", func(f *fixture) { chmod(f, ".", 0o755) }},
		{"fs.state_dir_readable", "0711 enterable", func(f *fixture) { chmod(f, ".", 0o711) }},
		{"fs.state_dir_writable", "world", func(f *fixture) { chmod(f, ".", 0o777) }},
		{"fs.state_dir_writable", "group", func(f *fixture) { chmod(f, ".", 0o770) }},
		{"fs.symlinked_path", "config", func(f *fixture) {
			real := filepath.Join(f.home, "real-openclaw.json")
			if err := os.WriteFile(real, []byte("{}"), 0o600); err != nil {
				f.t.Fatal(err)
			}
			if err := os.Symlink(real, filepath.Join(f.stateDir, "openclaw.json")); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"fs.config_readable", "0644", preConfig(0o644)},
		{"fs.config_readable", "0640", preConfig(0o640)},
		{"fs.config_readable", "include", func(f *fixture) {
			f.set("models", map[string]any{"$include": "./models.json5"})
			f.write("models.json5", "{}", 0o644)
		}},
		{"fs.config_writable", "0620", preConfig(0o620)},
		{"fs.config_writable", "nested include", func(f *fixture) {
			f.set("models", map[string]any{"$include": []any{"./inc/models.json5"}})
			f.write("inc/models.json5", `{providers: {$include: "./providers.json5"}}`, 0o600)
			f.write("inc/providers.json5", "{}", 0o666)
		}},
		{"fs.credentials_file_readable", "nested in 0700 dirs", func(f *fixture) {
			f.write("credentials/whatsapp/default/creds.json", "{}", 0o644)
		}},
		{"fs.credentials_file_readable", "agent models.json", func(f *fixture) {
			f.write("agents/main/agent/models.json", "{}", 0o640)
		}},
		{"fs.credentials_file_readable", "open directory", func(f *fixture) { chmod(f, "credentials", 0o755) }},
		{"fs.credentials_file_readable", "auth-profile-secrets", func(f *fixture) {
			f.write("fleet/auth-profile-secrets/acme/key", "x", 0o604)
		}},
		{"fs.credentials_file_writable", "0666", func(f *fixture) {
			f.write("credentials/telegram-allowFrom.json", "[]", 0o666)
		}},
		{"fs.sqlite_readable", "shared store", func(f *fixture) { chmod(f, "state/openclaw.sqlite", 0o644) }},
		{"fs.sqlite_readable", "agent wal", func(f *fixture) {
			f.write("agents/main/agent/openclaw-agent.sqlite-wal", "", 0o644)
		}},
		{"fs.sqlite_writable", "", func(f *fixture) { chmod(f, "agents/main/agent/openclaw-agent.sqlite", 0o662) }},
		{"fs.log_file_readable", "logging.file", func(f *fixture) { chmod(f, "logs/openclaw.log", 0o644) }},
		{"fs.log_file_readable", "rotated", func(f *fixture) { f.write("logs/openclaw.1.log", "{}\n", 0o644) }},
		{"fs.log_file_readable", "stability bundle", func(f *fixture) { f.write("logs/stability/1.json", "{}", 0o640) }},
		{"fs.legacy_state_dir", "clawdbot", func(f *fixture) {
			if err := os.MkdirAll(filepath.Join(f.home, ".clawdbot", "credentials"), 0o700); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"fs.legacy_state_dir", "moltbot", func(f *fixture) {
			if err := os.Mkdir(filepath.Join(f.home, ".moltbot"), 0o700); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"fs.parent_writable", "world-writable home", func(f *fixture) {
			if err := os.Chmod(f.home, 0o777); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"fs.parent_writable", "owned by another user", func(f *fixture) {
			if os.Geteuid() != 0 {
				f.t.Skip("chown needs root")
			}
			if err := os.Chown(f.home, 65534, 65534); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"fs.parent_sticky", "state dir directly in a /tmp-like dir", func(f *fixture) {
			if err := os.Chmod(f.home, 0o777|os.ModeSticky); err != nil {
				f.t.Fatal(err)
			}
		}},
		{"fs.not_owned", "credential file", func(f *fixture) {
			if os.Geteuid() != 0 {
				f.t.Skip("chown needs root")
			}
			p := f.write("credentials/oauth.json", "{}", 0o600)
			if err := os.Chown(p, 65534, 65534); err != nil {
				f.t.Fatal(err)
			}
		}},
	}
}

func TestAccessOf(t *testing.T) {
	for _, c := range []struct {
		mode               os.FileMode
		readable, writable bool
	}{
		{0o600, false, false},
		{0o700 | os.ModeDir, false, false},
		{0o640, true, false},
		{0o604, true, false},
		{0o611, false, false},             // x on a file is not read
		{0o701 | os.ModeDir, true, false}, // x on a directory lets others enter it
		{0o710 | os.ModeDir, true, false}, // ... and the group
		{0o620, false, true},
		{0o602, false, true},
		{0o777 | os.ModeSticky | os.ModeDir, true, true},
	} {
		b := accessOf(c.mode)
		if b.readable() != c.readable || b.writable() != c.writable {
			t.Errorf("%v: readable %v writable %v, want %v %v", c.mode, b.readable(), b.writable(), c.readable, c.writable)
		}
	}
}

func TestIncludeRefs(t *testing.T) {
	cfg, err := ParseConfig("/x/openclaw.json", []byte(`{
		agents: {$include: "./agents.json5"},
		clients: {$include: ["./a.json5", "./b.json5"]},
		list: [{$include: "./c.json5"}],
	}`))
	if err != nil {
		t.Fatal(err)
	}
	got := includeRefs(cfg.Root)
	want := []string{"./agents.json5", "./a.json5", "./b.json5", "./c.json5"}
	if !slices.Equal(got, want) {
		t.Errorf("includeRefs = %v, want %v", got, want)
	}
}

// A nested credential file is warn while the directories above it are
// closed and critical once every user can reach it.
func TestCredentialSeverity(t *testing.T) {
	f := newFixture(t)
	p := f.write("credentials/whatsapp/default/creds.json", "{}", 0o644)
	sev := func() Severity {
		for _, g := range findingsOf(f.run(), "fs.credentials_file_readable") {
			if g.Location.File == p {
				return g.Severity
			}
		}
		return 0
	}
	if s := sev(); s != Warn {
		t.Errorf("behind 0700 dirs: severity %v, want warn", s)
	}
	for _, d := range []string{"", "credentials", "credentials/whatsapp", "credentials/whatsapp/default"} {
		os.Chmod(filepath.Join(f.stateDir, d), 0o755)
	}
	if s := sev(); s != Critical {
		t.Errorf("reachable: severity %v, want critical", s)
	}
}

// modeRules are the filesystem rules the fix repairs with chmod.
func modeRules() []string {
	var out []string
	for _, r := range fsRules {
		if r.Fixable {
			out = append(out, r.ID)
		}
	}
	return out
}

// TestRealGatewayStateDir audits a state dir a real OpenClaw gateway run
// created: clean of the mode rules as OpenClaw leaves it, and after one
// nested credential file is opened to 0644 the finding names that file.
func TestRealGatewayStateDir(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real OpenClaw gateway")
	}
	inst := openclawtest.Install(t)
	g := openclawtest.Start(t, inst, map[string]any{"gateway": map[string]any{"auth": map[string]any{"mode": "token", "token": openclawtest.RandomHex(t, 24)}}})
	home := g.Home()
	stateDir := filepath.Join(home, ".openclaw")
	audit := func() *Report {
		t.Helper()
		tg, err := NewTarget(stateDir, g.ConfigPath(), map[string]string{"HOME": home})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Run(context.Background(), tg, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	var files []string
	filepath.Walk(stateDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			if fi.IsDir() && fi.Name() == "cache" {
				return filepath.SkipDir // thousands of Control UI assets
			}
			rel, _ := filepath.Rel(stateDir, p)
			files = append(files, fi.Mode().String()+" "+rel)
		}
		return nil
	})
	t.Logf("state dir after a gateway run:\n%s", strings.Join(files, "\n"))

	rep := audit()
	for _, f := range rep.Findings {
		if slices.Contains(modeRules(), f.ID) {
			t.Errorf("fresh gateway state dir: %s %s (%s)", f.ID, f.Evidence, f.Location)
		}
	}
	if len(rep.Errors) > 0 {
		t.Logf("audit errors: %v", rep.Errors)
	}
	t.Logf("native audit took %v; findings: %v", rep.Duration, ids(rep))

	// OpenClaw creates no channel credential on a bare run: put one where
	// a paired WhatsApp account keeps it, as OpenClaw would (0600), then
	// open it.
	cred := filepath.Join(stateDir, "credentials", "whatsapp", "default", "creds.json")
	if err := os.MkdirAll(filepath.Dir(cred), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cred, []byte(`{"noiseKey":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := findingsOf(audit(), "fs.credentials_file_readable"); len(got) != 0 {
		t.Fatalf("0600 credential file reported: %+v", got)
	}
	if err := os.Chmod(cred, 0o644); err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, f := range findingsOf(audit(), "fs.credentials_file_readable") {
		found = found || f.Location.File == cred
	}
	if !found {
		t.Errorf("fs.credentials_file_readable did not name %s", cred)
	}
}
