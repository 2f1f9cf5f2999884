package audit

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// Fake secrets in the shapes gitleaks' default rules match. They are built
// by concatenation so that this file itself holds no detector match.
var (
	fakeAWSKey    = "AKIA" + "QYLPMN5HHHFPZAM2"
	fakeGitHubPAT = "gh" + "p_" + "Zk3vQ9xW2mL8rT5yB7nC4dF6gH1jK0pAq7Rx"
	fakeSlackBot  = "xox" + "b-1234567890123-1234567890123-Zk3vQ9xW2mL8rT5yB7nC4dF6"
	fakeOpenAIKey = "sk-" + "proj-Zk3vQ9xW2mL8rT5yB7nC4dF6gH1jK0pA"
	fakeToken     = "9f8e7d6c5b4a3928" + "1706f5e4d3c2b1a0ffeeddcc"
)

// allFakeSecrets are the values no output may contain.
func allFakeSecrets() []string {
	return []string{fakeAWSKey, fakeGitHubPAT, fakeSlackBot, fakeOpenAIKey, fakeToken}
}

// secretCases break the baseline for each secrets rule.
func secretCases() []ruleCase {
	return []ruleCase{
		{id: ruleConfigPlaintext, name: "gateway token", break_: func(f *fixture) { f.set("gateway.auth.token", fakeToken) }},
		{id: ruleConfigPlaintext, name: "gateway password", break_: func(f *fixture) {
			f.set("gateway.auth.mode", "password")
			f.set("gateway.auth.password", "correct-horse-battery-staple-42")
		}},
		{id: ruleConfigPlaintext, name: "model api key", break_: func(f *fixture) {
			f.set("models.providers.openai", map[string]any{"baseUrl": "https://api.openai.com/v1", "apiKey": fakeOpenAIKey})
		}},
		{id: ruleConfigPlaintext, name: "model header", break_: func(f *fixture) {
			f.set("models.providers.corp.headers", map[string]any{"X-Api-Key": fakeOpenAIKey})
		}},
		{id: ruleConfigPlaintext, name: "channel token", break_: func(f *fixture) {
			f.set("channels.telegram.botToken", "123456789:"+"AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")
		}},
		{id: ruleConfigPlaintext, name: "channel account token", break_: func(f *fixture) {
			f.set("channels.slack.accounts.work", map[string]any{"botToken": fakeSlackBot})
		}},
		{id: ruleConfigUnsupported, name: "hooks token", break_: func(f *fixture) {
			f.set("hooks", map[string]any{"enabled": true, "token": fakeToken})
		}},
		{id: ruleConfigUnsupported, name: "hooks mapping session key", break_: func(f *fixture) {
			f.set("hooks.mappings", []any{map[string]any{"match": map[string]any{"path": "gmail"}, "sessionKey": "hook:gmail:" + fakeToken}})
		}},
		{id: ruleDotEnv, name: "state dir .env, gitleaks", break_: func(f *fixture) {
			f.write(".env", "# keys\nexport AWS_KEY="+fakeAWSKey+"\n", 0o600)
		}},
		{id: ruleDotEnv, name: "state dir .env, credential name", break_: func(f *fixture) {
			f.write(".env", "OPENCLAW_LOG_LEVEL=info\nOPENCLAW_GATEWAY_TOKEN='"+fakeToken+"'\n", 0o600)
		}},
		{id: ruleDotEnv, name: ".env next to a config outside the state dir", break_: func(f *fixture) {
			dir := filepath.Join(f.home, "etc")
			os.MkdirAll(dir, 0o700)
			f.env["OPENCLAW_CONFIG_PATH"] = filepath.Join(dir, "openclaw.json")
			os.WriteFile(filepath.Join(dir, ".env"), []byte("SLACK_BOT="+fakeSlackBot+"\n"), 0o600)
		}},
		{id: ruleWorkspace, name: "default workspace", break_: func(f *fixture) {
			f.write("workspace/MEMORY.md", "# Memory\n\nThe deploy token is "+fakeGitHubPAT+".\n", 0o600)
		}},
		{id: ruleWorkspace, name: "agents.defaults.workspace", break_: func(f *fixture) {
			f.set("agents.defaults.workspace", "~/ws")
			writeFile(f.t, filepath.Join(f.home, "ws", "notes", "aws.txt"), "key "+fakeAWSKey+"\n")
		}},
		{id: ruleWorkspace, name: "agents.entries.*.workspace", break_: func(f *fixture) {
			dir := filepath.Join(f.home, "work-agent")
			f.set("agents.entries.work.workspace", dir)
			writeFile(f.t, filepath.Join(dir, "TOOLS.md"), "slack: "+fakeSlackBot+"\n")
		}},
		{id: ruleGitHistory, name: "deleted in a later commit", break_: func(f *fixture) {
			f.target.Repos = []string{gitRepoWithDeletedSecret(f.t)}
		}},
		{id: ruleImageLayer, name: "docker save, deleted in the last layer", break_: func(f *fixture) {
			p, _ := buildImage(f.t, dockerSave)
			f.target.Images = []string{p}
		}},
		{id: ruleImageLayer, name: "OCI layout, deleted in the last layer", break_: func(f *fixture) {
			p, _ := buildImage(f.t, ociLayout)
			f.target.Images = []string{p}
		}},
	}
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecretsNotPlaintext: references, placeholders and clean files raise
// no secrets finding.
func TestSecretsNotPlaintext(t *testing.T) {
	f := newFixture(t)
	f.set("gateway.auth.token", "${OPENCLAW_GATEWAY_TOKEN}")
	f.set("gateway.auth.password", "$OPENCLAW_GATEWAY_PASSWORD")
	f.set("models.providers.openai", map[string]any{
		"baseUrl": "https://api.openai.com/v1",
		"apiKey":  map[string]any{"source": "exec", "provider": "clawhold", "id": "models/providers/openai/apiKey"},
		"headers": map[string]any{"Authorization": "Bearer ${OPENAI_API_KEY}"},
	})
	f.set("channels.telegram.botToken", "__OPENCLAW_REDACTED__")
	f.set("hooks", map[string]any{"enabled": true, "token": "${OPENCLAW_HOOKS_TOKEN}"})
	f.write(".env", "OPENCLAW_LOG_LEVEL=debug\nOPENAI_API_KEY=${CI_OPENAI_KEY}\nTOKEN_FILE=/run/secrets/token\nGATEWAY_PASSWORD=\n", 0o600)
	f.write("workspace/AGENTS.md", "# Agents\n\nBe helpful. Never print tokens.\n", 0o600)
	f.write("workspace/blob.bin", "\x00\x01"+fakeAWSKey, 0o600) // binary: skipped
	f.target.Repos = []string{gitRepo(t, map[string]string{"README.md": "hello\n"})}
	rep := f.run()
	for _, fd := range rep.Findings {
		if strings.HasPrefix(fd.ID, "secrets.") {
			t.Errorf("unexpected %s at %s: %s", fd.ID, fd.Location, fd.Evidence)
		}
	}
	for _, e := range rep.Errors {
		if strings.HasPrefix(e, "secrets.") {
			t.Errorf("error: %s", e)
		}
	}
}

// TestSecretsFindingDetails checks locations, fixability and that no
// output carries a secret, with every secrets rule firing at once.
func TestSecretsFindingDetails(t *testing.T) {
	f := newFixture(t)
	for _, c := range secretCases() {
		if c.name == ".env next to a config outside the state dir" {
			continue // it moves the config away
		}
		c.break_(f)
	}
	rep := f.run()
	out, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range allFakeSecrets() {
		if strings.Contains(string(out), s) {
			t.Errorf("report contains a secret (%s)", redact(s))
		}
	}
	for _, e := range rep.Errors {
		t.Errorf("error: %s", e)
	}
	cfg := filepath.Join(f.stateDir, "openclaw.json")
	want := map[string]struct {
		id      string
		fixable bool
	}{
		"gateway.auth.token":                    {ruleConfigPlaintext, true},
		"models.providers.openai.apiKey":        {ruleConfigPlaintext, true},
		"channels.slack.accounts.work.botToken": {ruleConfigPlaintext, true},
		"hooks.token":                           {ruleConfigUnsupported, false},
		"hooks.mappings[0].sessionKey":          {ruleConfigUnsupported, false},
	}
	got := map[string]Finding{}
	for _, fd := range rep.Findings {
		if fd.Location.File == cfg {
			got[fd.Location.Key] = fd
		}
	}
	for key, w := range want {
		fd, ok := got[key]
		switch {
		case !ok:
			t.Errorf("no finding at %s; config findings: %v", key, got)
		case fd.ID != w.id || fd.Fixable != w.fixable || fd.Location.Line == 0:
			t.Errorf("%s: got %s fixable=%v line %d, want %s fixable=%v and a line", key, fd.ID, fd.Fixable, fd.Location.Line, w.id, w.fixable)
		}
	}
	if fd := got["hooks.enabled"]; fd.ID != "" {
		t.Errorf("non-credential key reported: %+v", fd)
	}
}

// TestSecretsGitHistory: a secret committed and deleted in a later commit
// is reported at the file, line and commit that added it.
func TestSecretsGitHistory(t *testing.T) {
	repo := gitRepoWithDeletedSecret(t)
	if _, err := os.Stat(filepath.Join(repo, "deploy.env")); !os.IsNotExist(err) {
		t.Fatal("the secret's file should be gone from the work tree")
	}
	sc, err := NewSecretScanner()
	if err != nil {
		t.Fatal(err)
	}
	hits, st, err := sc.Git(context.Background(), repo)
	if err != nil {
		t.Fatal(err)
	}
	added := strings.TrimSpace(git(t, repo, "rev-list", "--max-count=1", "HEAD~1"))
	var found bool
	for _, h := range hits {
		if h.RuleID == "aws-access-token" {
			found = true
			if h.Location.File != filepath.Join(repo, "deploy.env") || h.Location.Line != 2 || h.Commit != added {
				t.Errorf("hit at %s line %d commit %s; want %s line 2 commit %s", h.Location.File, h.Location.Line, h.Commit, filepath.Join(repo, "deploy.env"), added)
			}
			if strings.Contains(h.Redacted, fakeAWSKey) {
				t.Error("hit holds the secret")
			}
		}
	}
	if !found || st.Bytes == 0 {
		t.Fatalf("aws key not found in history: %+v (stats %+v)", hits, st)
	}
	if _, _, err := sc.Git(context.Background(), t.TempDir()); err == nil {
		t.Error("a directory that is no repository: want an error")
	}
}

// TestSecretsImageLayers: the secret in the second-to-last layer is found
// although the last layer whites it out, in every image format, with the
// layer digest and the file's path as its location.
func TestSecretsImageLayers(t *testing.T) {
	sc, err := NewSecretScanner()
	if err != nil {
		t.Fatal(err)
	}
	// scan runs sc.Image with a private temporary directory, which it must
	// leave empty (an OCI layout tar is unpacked there).
	scratch, orig := t.TempDir(), os.TempDir()
	scan := func(p string) ([]SecretHit, ScanStats, error) {
		t.Setenv("TMPDIR", scratch)
		defer t.Setenv("TMPDIR", orig)
		hits, st, err := sc.Image(context.Background(), p)
		if left, _ := os.ReadDir(scratch); len(left) > 0 {
			t.Errorf("%s: left %d files in the temporary directory", p, len(left))
		}
		return hits, st, err
	}
	for _, format := range []imageFormat{dockerSave, ociLayout, ociLayoutTar} {
		img, keys := buildImage(t, format)
		hits, st, err := scan(img)
		if err != nil {
			t.Fatalf("%v: %v", format, err)
		}
		if len(hits) != 1 {
			t.Fatalf("%v: got %d hits, want 1: %+v", format, len(hits), hits)
		}
		h := hits[0]
		if h.RuleID != "aws-access-token" || h.Location.File != img || !strings.HasPrefix(h.Location.Key, "sha256:") ||
			!strings.HasSuffix(h.Location.Key, ":/app/config/creds.env") || h.Location.Line != 2 {
			t.Errorf("%v: hit %+v", format, h)
		}
		if want := keys[1]; !strings.HasPrefix(h.Location.Key, want+":") {
			t.Errorf("%v: hit in %s, want the second-to-last layer %s", format, h.Location.Key, want)
		}
		if st.Skipped != 1 { // app/lib.so, a binary
			t.Errorf("%v: skipped %d files, want 1", format, st.Skipped)
		}
	}
	missing := filepath.Join(t.TempDir(), "missing.tar")
	notImage := filepath.Join(t.TempDir(), "notimage.tar")
	writeFile(t, notImage, "not a tar\n")
	for _, p := range []string{missing, notImage, t.TempDir()} {
		if _, _, err := scan(p); err == nil {
			t.Errorf("%s: want an error", p)
		}
	}
}

// TestSecretsRealOpenClawConfig audits a config written by the real
// OpenClaw CLI: its plaintext model API key and gateway token are reported
// with file, key and line.
func TestSecretsRealOpenClawConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the OpenClaw CLI (~12 s)")
	}
	inst := openclawtest.Install(t)
	home := t.TempDir()
	for _, kv := range [][2]string{{"models.providers.openai.apiKey", fakeOpenAIKey}, {"gateway.auth.token", fakeToken}} {
		cmd := exec.Command(inst.Node, inst.CLI, "config", "set", kv[0], kv[1])
		cmd.Env = inst.Env(home)
		cmd.Dir = home
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("openclaw config set %s: %v\n%s", kv[0], err, strings.ReplaceAll(string(out), kv[1], "<secret>"))
		}
	}
	stateDir := filepath.Join(home, ".openclaw")
	cfgPath := filepath.Join(stateDir, "openclaw.json")
	src, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := NewTarget(stateDir, "", map[string]string{"HOME": home})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), tg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for key, field := range map[string]string{"models.providers.openai.apiKey": `"apiKey"`, "gateway.auth.token": `"token"`} {
		wantLine := lineOf(string(src), field)
		var ok bool
		for _, fd := range findingsOf(rep, ruleConfigPlaintext) {
			if fd.Location.Key == key {
				ok = true
				if fd.Location.File != cfgPath || fd.Location.Line != wantLine || !fd.Fixable {
					t.Errorf("%s: location %+v fixable=%v; want %s line %d, fixable", key, fd.Location, fd.Fixable, cfgPath, wantLine)
				}
			}
		}
		if !ok {
			t.Errorf("%s not reported; findings: %v", key, ids(rep))
		}
	}
}

// lineOf is the 1-based line of the first occurrence of s in src.
func lineOf(src, s string) int {
	i := strings.Index(src, s)
	if i < 0 {
		return 0
	}
	return strings.Count(src[:i], "\n") + 1
}

func TestDotEnvCredentials(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".env")
	writeFile(t, p, strings.Join([]string{
		"# comment",
		"export OPENAI_API_KEY=" + fakeOpenAIKey,
		`DB_PASSWORD="hunter2-but-longer"`,
		"GOOGLE_APPLICATION_CREDENTIALS=/etc/gcp.json",
		"SECRET_PATH=/run/secrets/x",
		"TOKEN=${OTHER}",
		"MY_TOKEN=short",
		"SLACK_SIGNING_SECRET=abcdef0123456789 # inline comment",
		"",
	}, "\n"))
	var got []string
	for _, v := range dotEnvCredentials(p) {
		got = append(got, v.name+":"+string(rune('0'+v.line)))
	}
	want := "OPENAI_API_KEY:2 DB_PASSWORD:3 SLACK_SIGNING_SECRET:8"
	if strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

func TestIsPlaintextValue(t *testing.T) {
	for s, want := range map[string]bool{
		"":                      false,
		"__OPENCLAW_REDACTED__": false,
		"$OPENAI_API_KEY":       false,
		"${OPENAI_API_KEY}":     false,
		"Bearer ${TOKEN}":       false,
		"$lowercase":            true,
		"${lower}":              true,
		"sk-abc":                true,
		"$":                     true,
	} {
		if got := isPlaintextValue(s); got != want {
			t.Errorf("isPlaintextValue(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestMatchKeyPattern(t *testing.T) {
	pats := splitKeyPatterns([]string{"models.providers.*.apiKey", "hooks.mappings.[].sessionKey"})
	for _, c := range []struct {
		path []string
		want bool
	}{
		{[]string{"models", "providers", "openai", "apiKey"}, true},
		{[]string{"models", "providers", "apiKey"}, false},
		{[]string{"models", "providers", "[0]", "apiKey"}, false},
		{[]string{"hooks", "mappings", "[3]", "sessionKey"}, true},
		{[]string{"hooks", "mappings", "x", "sessionKey"}, false},
	} {
		if got := matchKeyPattern(pats, c.path); got != c.want {
			t.Errorf("%v: got %v", c.path, got)
		}
	}
}
