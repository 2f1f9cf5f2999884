package audit

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// badSecret is a model API key planted in the known-bad config; no output
// of the merged audit may contain it.
const badSecret = "sk-proj-Zq81xKv0pLw3TnR6yBc2MdA7fHs9GjE4"

// TestOpenClawAuditReal runs OpenClaw's real CLI (2026.9.6) on a state
// dir whose config the CLI itself wrote: bound to lan without auth,
// world-readable, a plaintext model API key. The merged report holds its
// findings with their sources, areas and locations, folds those that a
// native finding reports, and quotes no secret.
func TestOpenClawAuditReal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real OpenClaw CLI")
	}
	inst := openclawtest.Install(t)
	home := t.TempDir()
	stateDir := filepath.Join(home, ".openclaw")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(stateDir, "openclaw.json")
	if err := os.WriteFile(cfgPath, []byte(`{
  "gateway": {"mode": "local", "bind": "loopback", "port": 18789, "auth": {"mode": "none"}},
  "models": {"providers": {"openai": {"baseUrl": "http://127.0.0.1:9/v1", "api": "openai-completions",
    "apiKey": "`+badSecret+`", "models": [{"id": "m", "name": "m"}]}}}
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	// The CLI rewrites the config in its own format.
	cmd := inst.Command(t.Context(), home, "config", "set", "gateway.bind", "lan")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openclaw config set: %v\n%s", err, strings.ReplaceAll(string(out), badSecret, "<secret>"))
	}
	if err := os.Chmod(cfgPath, 0o644); err != nil {
		t.Fatal(err)
	}

	tg, err := NewTarget(stateDir, "", map[string]string{"HOME": home})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Config.String("gateway.bind") != "lan" {
		t.Fatalf("the CLI did not write gateway.bind: %v", tg.Config.Root["gateway"])
	}
	argv := []string{inst.Node, inst.CLI}
	start := time.Now()
	theirs, errs := openClawFindings(t.Context(), tg, argv)
	t.Logf("OpenClaw's audits took %v; %d findings; errors: %v", time.Since(start), len(theirs), errs)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	byID := map[string]Finding{}
	for _, f := range theirs {
		byID[f.ID] = f
		if strings.Contains(f.Evidence+f.Title+f.Remediation, badSecret) {
			t.Errorf("%s quotes the secret: %+v", f.ID, f)
		}
	}
	for _, w := range []struct {
		id, source string
		sev        Severity
		area       Area
		loc        Location
	}{
		{"openclaw:gateway.bind_no_auth", SourceOpenClawAudit, Critical, Deployment, Location{File: cfgPath, Key: "gateway.bind"}},
		{"openclaw:fs.config.perms_world_readable", SourceOpenClawAudit, Critical, Encryption, Location{File: cfgPath}},
		{"openclaw:secrets.plaintext_found", SourceOpenClawSecrets, Warn, Encryption, Location{File: cfgPath, Key: "models.providers.openai.apiKey"}},
	} {
		f, ok := byID[w.id]
		if !ok {
			t.Errorf("no %s among %v", w.id, slices.Sorted(mapsKeys(byID)))
			continue
		}
		if f.Source != w.source || f.Severity != w.sev || f.Area != w.area || f.Location.File != w.loc.File || f.Location.Key != w.loc.Key {
			t.Errorf("%s: got source %q %s %s %+v, want %q %s %s %+v", w.id, f.Source, f.Severity, f.Area, f.Location, w.source, w.sev, w.area, w.loc)
		}
		if w.loc.Key != "" && f.Location.Line == 0 {
			t.Errorf("%s: no line for %s", w.id, w.loc.Key)
		}
		if f.Title == "" || f.Evidence == "" || f.Remediation == "" {
			t.Errorf("%s: empty title, evidence or remediation: %+v", w.id, f)
		}
	}

	// Folding: a native finding of the same problem at the same place
	// absorbs OpenClaw's; the others stay, with their source.
	table := map[string][]string{
		"gateway.bind_no_auth":            {"exposure.bind_no_auth"},
		"fs.config.perms_world_readable":  {"fs.config_readable"},
		"secrets.plaintext_found":         {"secrets.config_plaintext"},
		"channels.*.dm.open":              {"isolation.not_in_this_config"},
		"hooks.token_reuse_gateway_token": {"exposure.hooks_token_reuse"},
	}
	native := []Finding{
		{ID: "exposure.bind_no_auth", Severity: Critical, Area: Deployment, Location: tg.Config.Loc("gateway.auth.mode"), Source: SourceClawhold},
		{ID: "fs.config_readable", Severity: Critical, Area: Encryption, Location: Location{File: cfgPath}, Source: SourceClawhold},
		{ID: "secrets.config_plaintext", Severity: Critical, Area: Encryption, Location: tg.Config.Loc("models.providers.openai.apiKey"), Source: SourceClawhold},
		{ID: "secrets.config_plaintext", Severity: Critical, Area: Encryption, Location: tg.Config.Loc("gateway.auth.password"), Source: SourceClawhold},
	}
	merged := foldWith(table, native, theirs)
	if len(merged) != len(native)+len(theirs)-3 {
		t.Errorf("merged %d findings from %d native and %d of OpenClaw's, want 3 folded", len(merged), len(native), len(theirs))
	}
	for i, want := range [][]string{{SourceOpenClawAudit}, {SourceOpenClawAudit}, {SourceOpenClawSecrets}, nil} {
		if !slices.Equal(merged[i].AlsoReportedBy, want) {
			t.Errorf("%s at %s: also reported by %q, want %q", merged[i].ID, merged[i].Location, merged[i].AlsoReportedBy, want)
		}
	}
	for _, f := range merged[len(native):] {
		switch f.ID {
		case "openclaw:gateway.bind_no_auth", "openclaw:fs.config.perms_world_readable", "openclaw:secrets.plaintext_found":
			t.Errorf("%s was not folded", f.ID)
		}
		if f.Source == SourceClawhold {
			t.Errorf("%s lost its source", f.ID)
		}
	}

	// Through Run: the native checks and OpenClaw's, in one report.
	rep, err := Run(t.Context(), tg, Options{OpenClaw: argv})
	if err != nil {
		t.Fatal(err)
	}
	var openclawErrs []string
	for _, e := range rep.Errors {
		if strings.HasPrefix(e, "openclaw") {
			openclawErrs = append(openclawErrs, e)
		}
	}
	if len(openclawErrs) > 0 {
		t.Errorf("Run: %v", openclawErrs)
	}
	sources := map[string]int{}
	for _, f := range rep.Findings {
		sources[f.Source]++
		for _, s := range f.AlsoReportedBy {
			sources["also:"+s]++
		}
		if strings.Contains(f.Evidence, badSecret) {
			t.Errorf("%s quotes the secret", f.ID)
		}
	}
	t.Logf("Run: %d findings by source %v", len(rep.Findings), sources)
	// Where the native rule of the same problem fired, OpenClaw's finding
	// is folded into it (the table from the rules' comments).
	for native, theirs := range map[string]string{
		"exposure.bind_no_auth":    "openclaw:gateway.bind_no_auth",
		"exposure.auth_none":       "openclaw:gateway.http.no_auth",
		"fs.config_readable":       "openclaw:fs.config.perms_world_readable",
		"secrets.config_plaintext": "openclaw:secrets.plaintext_found",
	} {
		nf := findingsOf(rep, native)
		if len(nf) == 0 {
			t.Logf("native rule %s did not fire; its fold is not checked here", native)
			continue
		}
		src := SourceOpenClawAudit
		if strings.HasPrefix(theirs, "openclaw:secrets.") {
			src = SourceOpenClawSecrets
		}
		if !slices.ContainsFunc(nf, func(f Finding) bool { return slices.Contains(f.AlsoReportedBy, src) }) || len(findingsOf(rep, theirs)) > 0 {
			t.Errorf("%s not folded into %s: %+v", theirs, native, nf)
		}
	}
	if sources[SourceOpenClawAudit]+sources["also:"+SourceOpenClawAudit] == 0 || sources[SourceOpenClawSecrets]+sources["also:"+SourceOpenClawSecrets] == 0 {
		t.Errorf("Run merged nothing of OpenClaw's: %v", sources)
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// fakeOpenClaw writes a stand-in for OpenClaw's CLI (a shell script, not
// OpenClaw) that answers "security audit --json" and "secrets audit
// --json" with the given script bodies.
func fakeOpenClaw(t *testing.T, security, secrets string) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fake-openclaw.sh")
	script := "#!/bin/sh\n# stand-in for the openclaw CLI in error-path tests\ncase \"$1\" in\nsecurity)\n" + security + "\n;;\nsecrets)\n" + secrets + "\n;;\nesac\n"
	if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return []string{"/bin/sh", p}
}

func fakeTarget(t *testing.T) *Target {
	t.Helper()
	f := newFixture(t)
	f.set("gateway.auth.token", "tok-"+strings.Repeat("x", 8)+"Q7v2Lm9Rk3Jp8Ws5") // plaintext, to be scrubbed
	f.run()
	tg, err := NewTarget(f.stateDir, "", map[string]string{"HOME": f.home, "OPENCLAW_GATEWAY_TOKEN": "envtoken-Hk29sLq0Vn47Xc"})
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func TestOpenClawFakeCLI(t *testing.T) {
	const (
		emptySecrets = `echo '{"version":1,"status":"clean","findings":[]}'`
		emptySec     = `echo '{"ts":1,"summary":{},"findings":[]}'`
	)
	t.Run("non-JSON output", func(t *testing.T) {
		tg := fakeTarget(t)
		argv := fakeOpenClaw(t, `echo "Error: config invalid"; echo "boom" >&2; exit 1`, emptySecrets)
		fs, errs := openClawFindings(t.Context(), tg, argv)
		if len(fs) != 0 || len(errs) != 1 || !strings.Contains(errs[0], SourceOpenClawAudit) || !strings.Contains(errs[0], "no JSON") ||
			!strings.Contains(errs[0], "exit status 1") || !strings.Contains(errs[0], "boom") {
			t.Errorf("findings %v, errors %q", fs, errs)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		tg := fakeTarget(t)
		argv := fakeOpenClaw(t, `exec sleep 30`, emptySecrets)
		start := time.Now()
		_, errs := openClawFindingsTimeout(t.Context(), tg, argv, time.Second)
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %v with a 1 s timeout", d)
		}
		if len(errs) != 1 || !strings.Contains(errs[0], "timed out after 1s") {
			t.Errorf("errors %q", errs)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		tg := fakeTarget(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, errs := openClawFindings(ctx, tg, fakeOpenClaw(t, emptySec, emptySecrets))
		if len(errs) != 2 {
			t.Errorf("errors %q", errs)
		}
	})
	t.Run("missing CLI", func(t *testing.T) {
		tg := fakeTarget(t)
		_, errs := openClawFindings(t.Context(), tg, []string{filepath.Join(t.TempDir(), "no-openclaw")})
		if len(errs) != 2 || !strings.Contains(errs[0], "running `security audit --json`") {
			t.Errorf("errors %q", errs)
		}
	})
	t.Run("exit status with a report; text around it; secrets scrubbed; environment", func(t *testing.T) {
		tg := fakeTarget(t)
		token := tg.Config.String("gateway.auth.token")
		envToken := tg.Env["OPENCLAW_GATEWAY_TOKEN"]
		security := `echo "🦞 OpenClaw 2026.9.6"
echo "state=$OPENCLAW_STATE_DIR config=$OPENCLAW_CONFIG_PATH home=$HOME" >&2
printf '%s\n' '{"ts":1,"summary":{"critical":1},"findings":[` +
			`{"checkId":"gateway.token_too_short","severity":"critical","title":"t","detail":"token ` + token + ` and env ` + envToken + ` and ghp_abcdefghijklmnopqrstuvwxyz0123456789 and a path /tmp/TestOpenClaw1234567890abcdefgh/x"},` +
			`{"checkId":"fs.credentials_dir.perms_readable","severity":"warn","title":"creds","detail":"` + tg.StateDir + `/credentials mode=755; readable"},` +
			`{"checkId":"channels.telegram.dm.open","severity":"critical","title":"open","detail":"d","remediation":"r"},` +
			`{"checkId":"something.new","severity":"severe","title":"n","detail":"d"}]}'
echo "[openclaw] audit done"
env | grep -E '^(OPENCLAW_STATE_DIR|OPENCLAW_CONFIG_PATH|HOME)=' > "$OPENCLAW_STATE_DIR/seen-env"`
		secrets := `echo '{"version":1,"status":"findings","findings":[` +
			`{"code":"PLAINTEXT_FOUND","severity":"warn","file":"openclaw.json","jsonPath":"gateway.auth.token","message":"gateway.auth.token is stored as plaintext."},` +
			`{"code":"PLAINTEXT_FOUND","severity":"warn","file":"` + tg.StateDir + `/.env","jsonPath":"$env.OPENAI_API_KEY","message":"Potential secret found in .env (OPENAI_API_KEY)."}]}'; exit 1`
		fs, errs := openClawFindings(t.Context(), tg, fakeOpenClaw(t, security, secrets))
		if len(errs) != 0 {
			t.Fatalf("errors %q", errs)
		}
		if len(fs) != 6 {
			t.Fatalf("got %d findings: %+v", len(fs), fs)
		}
		for _, f := range fs {
			for _, s := range []string{token, envToken, "ghp_abcdefghijklmnopqrstuvwxyz0123456789"} {
				if strings.Contains(f.Evidence, s) {
					t.Errorf("%s evidence quotes a secret: %s", f.ID, f.Evidence)
				}
			}
		}
		check := func(i int, id string, sev Severity, area Area, loc Location) {
			t.Helper()
			f := fs[i]
			if f.ID != id || f.Severity != sev || f.Area != area || f.Location.File != loc.File || f.Location.Key != loc.Key {
				t.Errorf("finding %d: got %s %s %s %+v, want %s %s %s %+v", i, f.ID, f.Severity, f.Area, f.Location, id, sev, area, loc)
			}
		}
		check(0, "openclaw:gateway.token_too_short", Critical, Deployment, Location{File: tg.ConfigPath, Key: "gateway.auth.token"})
		check(1, "openclaw:fs.credentials_dir.perms_readable", Warn, Encryption, Location{File: tg.StateDir + "/credentials"})
		check(2, "openclaw:channels.telegram.dm.open", Critical, Isolation, Location{File: tg.ConfigPath, Key: "channels.telegram.dmPolicy"})
		check(3, "openclaw:something.new", Warn, Deployment, Location{File: tg.ConfigPath})
		check(4, "openclaw:secrets.plaintext_found", Warn, Encryption, Location{File: tg.ConfigPath, Key: "gateway.auth.token"})
		check(5, "openclaw:secrets.plaintext_found", Warn, Encryption, Location{File: tg.StateDir + "/.env", Key: "$env.OPENAI_API_KEY"})
		if !strings.Contains(fs[0].Evidence, "/tmp/TestOpenClaw1234567890abcdefgh/x") {
			t.Errorf("a path was scrubbed as if it were a secret: %s", fs[0].Evidence)
		}
		if fs[4].Location.Line == 0 {
			t.Errorf("no line for the config key: %+v", fs[4].Location)
		}
		if fs[3].Remediation == "" || fs[3].Source != SourceOpenClawAudit || fs[4].Source != SourceOpenClawSecrets {
			t.Errorf("remediation or source missing: %+v %+v", fs[3], fs[4])
		}
		seen, err := os.ReadFile(filepath.Join(tg.StateDir, "seen-env"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"OPENCLAW_STATE_DIR=" + tg.StateDir, "OPENCLAW_CONFIG_PATH=" + tg.ConfigPath, "HOME=" + tg.Env["HOME"]} {
			if !strings.Contains(string(seen), want+"\n") {
				t.Errorf("the CLI's environment lacks %s: %s", want, seen)
			}
		}
	})
}

func TestFold(t *testing.T) {
	table := map[string][]string{
		"gateway.bind_no_auth":               {"exposure.bind_no_auth"},
		"channels.*.dm.scope_main_multiuser": {"isolation.dm_scope_main_multiuser"},
		"secrets.plaintext_found":            {"secrets.config_plaintext", "secrets.env_plaintext"},
	}
	nat := func(id, file, key string) Finding {
		return Finding{ID: id, Location: Location{File: file, Key: key}, Source: SourceClawhold}
	}
	their := func(id, src, file, key string) Finding {
		return Finding{ID: "openclaw:" + id, Location: Location{File: file, Key: key}, Source: src}
	}
	for _, c := range []struct {
		name          string
		native, their []Finding
		folded        []int // index of the native finding each of theirs folds into, -1 kept
	}{
		{"same problem, other key in the same section", []Finding{nat("exposure.bind_no_auth", "/c.json", "gateway.auth.mode")},
			[]Finding{their("gateway.bind_no_auth", SourceOpenClawAudit, "/c.json", "gateway.bind")}, []int{0}},
		{"other file", []Finding{nat("exposure.bind_no_auth", "/c.json", "gateway.bind")},
			[]Finding{their("gateway.bind_no_auth", SourceOpenClawAudit, "/other.json", "gateway.bind")}, []int{-1}},
		{"not in the table", []Finding{nat("exposure.bind_no_auth", "/c.json", "gateway.bind")},
			[]Finding{their("gateway.auth_no_rate_limit", SourceOpenClawAudit, "/c.json", "gateway.bind")}, []int{-1}},
		{"pattern", []Finding{nat("isolation.dm_scope_main_multiuser", "/c.json", "session.dmScope")},
			[]Finding{their("channels.telegram.dm.scope_main_multiuser", SourceOpenClawAudit, "/c.json", "session.dmScope"),
				their("channels.discord.dm.scope_main_multiuser", SourceOpenClawAudit, "/c.json", "session.dmScope")}, []int{0, 0}},
		{"several native findings: the one at the same key", []Finding{
			nat("secrets.config_plaintext", "/c.json", "gateway.auth.token"),
			nat("secrets.config_plaintext", "/c.json", "models.providers.openai.apiKey")},
			[]Finding{their("secrets.plaintext_found", SourceOpenClawSecrets, "/c.json", "models.providers.openai.apiKey"),
				their("secrets.plaintext_found", SourceOpenClawSecrets, "/c.json", "channels.telegram.botToken")}, []int{1, -1}},
		{"one native finding elsewhere in the file", []Finding{nat("secrets.config_plaintext", "/c.json", "gateway.auth.token")},
			[]Finding{their("secrets.plaintext_found", SourceOpenClawSecrets, "/c.json", "models.providers.openai.apiKey")}, []int{-1}},
		{"second equivalent rule", []Finding{nat("secrets.env_plaintext", "/s/.env", "")},
			[]Finding{their("secrets.plaintext_found", SourceOpenClawSecrets, "/s/.env", "$env.OPENAI_API_KEY")}, []int{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := foldWith(table, c.native, c.their)
			kept := 0
			want := make([][]string, len(c.native))
			for i, to := range c.folded {
				if to < 0 {
					kept++
					if !slices.ContainsFunc(out[len(c.native):], func(f Finding) bool { return f.ID == c.their[i].ID && f.Location == c.their[i].Location }) {
						t.Errorf("%s was dropped", c.their[i].ID)
					}
					continue
				}
				if !slices.Contains(want[to], c.their[i].Source) {
					want[to] = append(want[to], c.their[i].Source)
				}
			}
			if len(out) != len(c.native)+kept {
				t.Errorf("got %d findings, want %d", len(out), len(c.native)+kept)
			}
			for i := range c.native {
				if !slices.Equal(out[i].AlsoReportedBy, want[i]) {
					t.Errorf("native %d: also reported by %q, want %q", i, out[i].AlsoReportedBy, want[i])
				}
				if c.native[i].AlsoReportedBy != nil {
					t.Errorf("fold changed its input")
				}
			}
		})
	}
}

func TestOpenClawArea(t *testing.T) {
	for id, want := range map[string]Area{
		"fs.config.perms_world_readable":        Encryption,
		"fs.state_dir.perms_world_writable":     Isolation,
		"fs.state_dir.symlink":                  Isolation,
		"fs.log_file.perms_readable":            Encryption,
		"fs.synced_dir":                         Encryption,
		"gateway.bind_no_auth":                  Deployment,
		"config.secrets.hooks_token_in_config":  Encryption,
		"config.insecure_or_dangerous_flags":    Deployment,
		"sandbox.dangerous_network_mode":        Sandboxing,
		"tools.exec.security_full_configured":   Sandboxing,
		"tools.profile_minimal_overridden":      Isolation,
		"channels.telegram.dm.open":             Isolation,
		"security.trust_model.group_scope_main": Isolation,
		"security.audit.suppressions.active":    Auditing,
		"made.up":                               Deployment,
	} {
		if got := openClawArea(id); got != want {
			t.Errorf("%s: %s, want %s", id, got, want)
		}
	}
}

func TestScrub(t *testing.T) {
	sc := &scrubber{secrets: []string{"hunter2-but-longer"}}
	for in, want := range map[string]string{
		"password hunter2-but-longer set":                                        "password hu… <18 characters> set",
		"key sk-ant-api03-abcdEFGH1234ijkl":                                      "key sk… <29 characters>",
		"/home/u/.openclaw/agents/main/agent/openclaw-agent.sqlite":              "/home/u/.openclaw/agents/main/agent/openclaw-agent.sqlite",
		"/tmp/TestOpenClawAuditReal3779246525/001/.openclaw":                     "/tmp/TestOpenClawAuditReal3779246525/001/.openclaw",
		"gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback=true":        "gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback=true",
		"token 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08": "token 9f… <64 characters>",
	} {
		if got := sc.scrub(in); got != want {
			t.Errorf("scrub(%q) = %q, want %q", in, got, want)
		}
	}
}

// collectOpenClawComments reads the `// openclaw: <checkId>, ...` comments
// inside the Rule literals of audit/*.go and returns, for each OpenClaw
// checkId pattern ("<provider>" segments as "*"; secrets audit's codes,
// such as PLAINTEXT_FOUND, as "secrets.plaintext_found"), the ids of the
// rules whose literal carries it. A list ending in "," continues on the
// next line; a checkId followed by "(partly)" is not an equivalent.
func collectOpenClawComments(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var parsed []*ast.File
	consts := map[string]string{} // string constants and variables, for IDs given by name
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") || file == "openclaw.go" {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, f)
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, sp := range g.Specs {
				vs, ok := sp.(*ast.ValueSpec)
				if !ok {
					continue
				}
				for i, v := range vs.Values {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING && i < len(vs.Names) {
						consts[vs.Names[i].Name], _ = strconv.Unquote(lit.Value)
					}
				}
			}
		}
	}
	checkRe := regexp.MustCompile(`^[a-z][a-z0-9_]*(\.(<[a-zA-Z]+>|[a-z0-9_*]+))+$`)
	codeRe := regexp.MustCompile(`^[A-Z][A-Z_]+$`)
	out := map[string][]string{}
	for _, f := range parsed {
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			id := ""
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				if k, ok := kv.Key.(*ast.Ident); !ok || k.Name != "ID" {
					continue
				}
				switch v := kv.Value.(type) {
				case *ast.BasicLit:
					id, _ = strconv.Unquote(v.Value)
				case *ast.Ident:
					id = consts[v.Name]
				}
			}
			if id == "" {
				return true
			}
			for _, cg := range f.Comments {
				if cg.Pos() < lit.Lbrace || cg.End() > lit.Rbrace {
					continue
				}
				lines := strings.Split(cg.Text(), "\n")
				for i := 0; i < len(lines); i++ {
					_, text, ok := strings.Cut(lines[i], "openclaw:")
					if !ok {
						continue
					}
					for strings.HasSuffix(strings.TrimSpace(text), ",") && i+1 < len(lines) {
						i++
						text += " " + lines[i]
					}
					for _, item := range strings.Split(text, ",") {
						w := strings.Fields(item)
						if len(w) == 0 || (len(w) > 1 && strings.HasPrefix(w[1], "(partly")) {
							continue
						}
						var pattern string
						switch {
						case codeRe.MatchString(w[0]):
							pattern = "secrets." + strings.ToLower(w[0])
						case checkRe.MatchString(w[0]):
							pattern = regexp.MustCompile(`<[a-zA-Z]+>`).ReplaceAllString(w[0], "*")
						default:
							continue
						}
						if !slices.Contains(out[pattern], id) {
							out[pattern] = append(out[pattern], id)
						}
					}
				}
			}
			return true
		})
	}
	return out
}

// TestOpenClawEquivalentsMatchComments: the fold table is exactly what the
// native rules' comments say, and names only rules that exist. On a
// mismatch it prints the table to paste into openclaw.go.
func TestOpenClawEquivalentsMatchComments(t *testing.T) {
	want := collectOpenClawComments(t)
	rules := map[string]bool{}
	for _, r := range Rules() {
		rules[r.ID] = true
	}
	for pattern, ids := range openClawEquivalents {
		for _, id := range ids {
			if !rules[id] {
				t.Errorf("openClawEquivalents[%q] names %s, which is not a rule", pattern, id)
			}
		}
	}
	same := len(want) == len(openClawEquivalents)
	for k, v := range want {
		sort.Strings(v)
		got := slices.Sorted(slices.Values(openClawEquivalents[k]))
		same = same && slices.Equal(v, got)
	}
	if !same {
		var b strings.Builder
		for _, k := range slices.Sorted(mapsKeys(want)) {
			fmt.Fprintf(&b, "\t%q: {", k)
			for i, id := range want[k] {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "%q", id)
			}
			b.WriteString("},\n")
		}
		t.Errorf("openClawEquivalents differs from the `// openclaw:` comments; want:\n%s", b.String())
	}
}
