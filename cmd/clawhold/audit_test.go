package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// auditRun runs the built binary in dir with a minimal environment and
// returns stdout, stderr and the exit code.
func auditRun(t *testing.T, bin, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"audit"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + dir}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	t.Fatalf("clawhold audit %s: %v", strings.Join(args, " "), err)
	return "", "", 0
}

// writeState writes an OpenClaw state dir under dir holding config.
func writeState(t *testing.T, dir, config string) string {
	t.Helper()
	state := filepath.Join(dir, "deploy", "openclaw")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "openclaw.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return state
}

// Configs: one open to the network without authentication and with a
// plaintext model key, one as a careful operator would leave it.
const (
	badOpenClawConfig = `{
  // JSON5, as OpenClaw writes it
  gateway: { mode: "local", bind: "lan", port: 18789, auth: { mode: "none" } },
  models: { providers: { openai: { apiKey: "sk-proj-Zq8vN3kT7wLp2XyR5mB9cD4fH6jK1sA0eUiOg" } } },
}
`
	goodOpenClawConfig = `{
  gateway: {
    mode: "local", bind: "loopback", port: 18789,
    auth: { mode: "token", token: { source: "env", provider: "default", id: "OPENCLAW_GATEWAY_TOKEN" } },
    controlUi: { allowedOrigins: ["http://127.0.0.1:18789"] },
  },
  discovery: { mdns: { mode: "off" } },
  session: { dmScope: "per-channel-peer" },
  agents: { defaults: { sandbox: { mode: "all" } } },
  tools: { exec: { security: "allowlist", ask: "on-miss" } },
  proxy: { enabled: true, proxyUrl: "http://127.0.0.1:3128" },
  logging: { file: "~/.openclaw/logs/openclaw.log" },
}
`
)

type auditReport struct {
	Schema  string
	Summary struct{ Critical, Warn, Info int }
	Errors  []string
}

func TestAuditCLI(t *testing.T) {
	bin := buildBinary(t)
	bad, good := t.TempDir(), t.TempDir()
	badState, goodState := writeState(t, bad, badOpenClawConfig), writeState(t, good, goodOpenClawConfig)
	off := []string{"--openclaw", "off"}

	// --json parses and is the versioned schema.
	out, errOut, code := auditRun(t, bin, bad, nil, append(off, "--state-dir", badState, "--json")...)
	var rep auditReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json: %v (exit %d)\n%s\nstderr: %s", err, code, out, errOut)
	}
	if rep.Schema != "clawhold.audit/v1" || len(rep.Errors) > 0 {
		t.Fatalf("--json: schema %q, errors %q", rep.Schema, rep.Errors)
	}
	if rep.Summary.Critical == 0 {
		t.Fatalf("an unauthenticated gateway on the LAN with a plaintext key has no critical finding:\n%s", out)
	}
	if strings.Contains(out, "Zq8vN3kT7wLp2XyR5mB9cD4fH6jK1sA0eUiOg") {
		t.Errorf("--json output holds the plaintext key")
	}
	if code != 1 {
		t.Errorf("critical finding, default --fail-on: exit %d, want 1 (stderr %q)", code, errOut)
	}
	// Text: grouped by area, no color on a pipe, nothing on stderr for a
	// failing threshold.
	out, errOut, code = auditRun(t, bin, bad, nil, append(off, "--state-dir", badState, "--fail-on", "critical")...)
	if code != 1 || errOut != "" {
		t.Errorf("--fail-on critical with a critical: exit %d, stderr %q; want 1 and nothing", code, errOut)
	}
	if strings.Contains(out, "\x1b[") || !strings.Contains(out, "CRITICAL") || !strings.Contains(out, "critical,") {
		t.Errorf("text output:\n%s", out)
	}

	// The careful config: nothing critical, so the default threshold
	// passes; each threshold fails exactly when the report has a finding
	// that severe.
	out, errOut, code = auditRun(t, bin, good, nil, append(off, "--state-dir", goodState, "--json")...)
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json: %v\n%s\nstderr: %s", err, out, errOut)
	}
	if code != 0 || rep.Summary.Critical != 0 {
		t.Errorf("careful config: exit %d, %d critical; want 0 and none:\n%s", code, rep.Summary.Critical, out)
	}
	for _, c := range []struct {
		failOn string
		fails  bool
	}{
		{"critical", rep.Summary.Critical > 0},
		{"warn", rep.Summary.Critical+rep.Summary.Warn > 0},
		{"info", rep.Summary.Critical+rep.Summary.Warn+rep.Summary.Info > 0},
	} {
		want := 0
		if c.fails {
			want = 1
		}
		if _, errOut, code := auditRun(t, bin, good, nil, append(off, "--state-dir", goodState, "--fail-on", c.failOn)...); code != want {
			t.Errorf("careful config --fail-on %s: exit %d, want %d (summary %+v) %s", c.failOn, code, want, rep.Summary, errOut)
		}
	}

	// --sarif validates against the OASIS schema; run from the
	// repository root, locations are relative to it.
	out, errOut, _ = auditRun(t, bin, bad, nil, append(off, "--state-dir", badState, "--sarif")...)
	if err := validateSARIFFile(t, out); err != nil {
		t.Fatalf("--sarif does not validate: %v\n%s\nstderr: %s", err, out, errOut)
	}
	if !strings.Contains(out, `"uri": "deploy/openclaw/openclaw.json"`) || !strings.Contains(out, `"uriBaseId": "%SRCROOT%"`) {
		t.Errorf("--sarif locations are not relative to the repository:\n%s", out)
	}
	// GITHUB_WORKSPACE wins over the working directory.
	out, _, _ = auditRun(t, bin, t.TempDir(), []string{"GITHUB_WORKSPACE=" + bad}, append(off, "--state-dir", badState, "--sarif")...)
	if !strings.Contains(out, `"uri": "deploy/openclaw/openclaw.json"`) {
		t.Errorf("--sarif ignores GITHUB_WORKSPACE:\n%s", out)
	}

	// OPENCLAW_STATE_DIR is the default state dir.
	if _, errOut, code := auditRun(t, bin, bad, []string{"OPENCLAW_STATE_DIR=" + badState}, off...); code != 1 {
		t.Errorf("OPENCLAW_STATE_DIR: exit %d, want 1 (%s)", code, errOut)
	}
}

func TestAuditCLIErrors(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	state := writeState(t, dir, "{ gateway: { bind: \"lan\", \n")
	cfg := filepath.Join(state, "openclaw.json")
	good := writeState(t, t.TempDir(), goodOpenClawConfig)
	for _, c := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"config does not parse", []string{"--state-dir", state}, cfg},
		{"--config does not parse", []string{"--state-dir", good, "--config", cfg}, cfg},
		{"bad --fail-on", []string{"--state-dir", good, "--fail-on", "high"}, "--fail-on"},
		{"--json and --sarif", []string{"--state-dir", good, "--json", "--sarif"}, "exclusive"},
		{"unknown flag", []string{"--state-dir", good, "--bogus"}, "bogus"},
		{"argument", []string{"--state-dir", good, "extra"}, "no arguments"},
		{"--dry-run alone", []string{"--state-dir", good, "--dry-run"}, "--dry-run needs --fix"},
		{"missing --data-dir", []string{"--state-dir", good, "--data-dir", filepath.Join(dir, "nope")}, "nope"},
		{"missing --openclaw", []string{"--state-dir", good, "--openclaw", filepath.Join(dir, "nope")}, "--openclaw"},
		{"missing image", []string{"--state-dir", good, "--openclaw", "off", "--image", filepath.Join(dir, "nope.tar")}, "audit incomplete"},
	} {
		out, errOut, code := auditRun(t, bin, dir, nil, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q (stdout %q)", c.name, code, errOut, c.want, out)
		}
	}
}

// validateSARIFFile validates doc against the OASIS SARIF 2.1.0 schema
// kept with the audit package.
func validateSARIFFile(t *testing.T, doc string) error {
	t.Helper()
	f, err := os.Open("../../audit/testdata/sarif/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	schemaDoc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("file:///sarif-schema-2.1.0.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("file:///sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

// TestAuditCIExampleFlags keeps docs/examples/audit-ci.yml in step with
// the command: it is YAML, and every flag its audit step passes exists.
func TestAuditCIExampleFlags(t *testing.T) {
	b, err := os.ReadFile("../../docs/examples/audit-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Steps []struct{ ID, Run, Uses string }
		}
	}
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatalf("audit-ci.yml: %v", err)
	}
	var run string
	uploads := false
	for _, j := range wf.Jobs {
		for _, s := range j.Steps {
			if run == "" && strings.Contains(s.Run, "clawhold audit") {
				run = s.Run
			}
			uploads = uploads || strings.HasPrefix(s.Uses, "github/codeql-action/upload-sarif@")
		}
	}
	if run == "" || !uploads {
		t.Fatalf("audit-ci.yml: no clawhold audit step (%v) or no upload-sarif step (%v)", run != "", uploads)
	}
	cmd, _, err := newRoot(strings.NewReader(""), io.Discard, io.Discard).Find([]string{"audit"})
	if err != nil {
		t.Fatal(err)
	}
	flags := 0
	for _, w := range strings.Fields(run[strings.Index(run, "clawhold audit"):]) {
		if !strings.HasPrefix(w, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(w, "--"), "=")
		if cmd.Flags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil {
			t.Errorf("audit-ci.yml passes --%s, which clawhold audit does not have", name)
		}
		flags++
	}
	if flags == 0 || !strings.Contains(run, "--sarif") || !strings.Contains(run, "--fail-on critical") {
		t.Errorf("audit-ci.yml's audit step:\n%s", run)
	}
}

// TestAuditOpenClawArgv resolves --openclaw: off, auto (the managed
// install, then PATH, else none) and an explicit install dir or file.
func TestAuditOpenClawArgv(t *testing.T) {
	in := openclawtest.Install(t)
	a := &app{}
	bin := t.TempDir()
	exe := filepath.Join(bin, "openclaw")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, flag, dirEnv, path string
		want                     []string
	}{
		{"off", "off", in.Dir, bin, nil},
		{"auto: managed install", "auto", in.Dir, bin, []string{in.Node, in.CLI}},
		{"auto: on PATH", "auto", "", bin, []string{exe}},
		{"auto: none", "auto", "", t.TempDir(), nil},
		{"auto: broken managed install falls back to PATH", "auto", t.TempDir(), bin, []string{exe}},
		{"install dir", in.Dir, "", "", []string{in.Node, in.CLI}},
		{"executable", exe, "", "", []string{exe}},
	} {
		t.Setenv("CLAWHOLD_OPENCLAW_DIR", c.dirEnv)
		t.Setenv("PATH", c.path)
		got, err := a.openclawArgv(c.flag, "")
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
	if _, err := a.openclawArgv(filepath.Join(bin, "missing"), ""); err == nil {
		t.Error("a missing --openclaw path is accepted")
	}
	if _, err := a.openclawArgv(bin, ""); err == nil {
		t.Error("a dir without an install is accepted as --openclaw")
	}
}

type fixReport struct {
	Findings []struct {
		ID       string
		Fixable  bool
		Location struct{ File, Key string }
	}
	Errors []string
}

func (r fixReport) fixable() []string {
	var ids []string
	for _, f := range r.Findings {
		if f.Fixable {
			ids = append(ids, f.ID+" "+f.Location.File+" "+f.Location.Key)
		}
	}
	return ids
}

// TestAuditCLIFix drives --fix through the binary: --dry-run changes
// nothing, --fix repairs (config rewritten with a 0600 backup, modes
// tightened, the plaintext key moved into clawhold's store) and the
// report printed is the audit after fixing.
func TestAuditCLIFix(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	runBin(t, bin, "", "--data-dir", data, "init")
	const key = "sk-proj-Zq8vN3kT7wLp2XyR5mB9cD4fH6jK1sA0eUiOg"
	state := writeState(t, dir, `{
  gateway: {
    mode: "local", bind: "lan", port: 18789,
    auth: { mode: "token", token: { source: "env", provider: "default", id: "OPENCLAW_GATEWAY_TOKEN" } },
  },
  discovery: { mdns: { mode: "full" } },
  models: { providers: { openai: { apiKey: "`+key+`" } } },
}
`)
	cfg := filepath.Join(state, "openclaw.json")
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--openclaw", "off", "--data-dir", data, "--state-dir", state, "--json"}
	audit := func(extra ...string) (fixReport, string, int) {
		t.Helper()
		out, errOut, code := auditRun(t, bin, dir, nil, append(args, extra...)...)
		var r fixReport
		if err := json.Unmarshal([]byte(out), &r); err != nil || code == 2 {
			t.Fatalf("audit %q: exit %d, %v\n%s\nstderr: %s", extra, code, err, out, errOut)
		}
		if strings.Contains(out+errOut, key) {
			t.Errorf("audit %q prints the plaintext key (stdout %v, stderr %v)", extra, strings.Contains(out, key), strings.Contains(errOut, key))
		}
		return r, errOut, code
	}
	before, _, _ := audit()
	if len(before.fixable()) == 0 {
		t.Fatalf("nothing fixable in %+v", before)
	}
	orig, _ := os.ReadFile(cfg)

	dry, errOut, _ := audit("--fix", "--dry-run")
	after, _ := os.ReadFile(cfg)
	fi, _ := os.Stat(cfg)
	if !bytes.Equal(orig, after) || fi.Mode().Perm() != 0o644 || !strings.Contains(errOut, "would") {
		t.Errorf("--dry-run changed the config (mode %o) or showed nothing: %s", fi.Mode().Perm(), errOut)
	}
	if !slices.Equal(dry.fixable(), before.fixable()) {
		t.Errorf("--dry-run report differs: %q, before %q", dry.fixable(), before.fixable())
	}

	fixed, errOut, _ := audit("--fix")
	t.Logf("--fix said:\n%s", errOut)
	left := fixed.fixable()
	for _, id := range left {
		if !slices.Contains(before.fixable(), id) {
			t.Errorf("--fix left a new fixable finding %s", id)
		}
	}
	if len(left) >= len(before.fixable()) {
		t.Errorf("--fix fixed nothing: before %q, after %q", before.fixable(), left)
	}
	for _, id := range left {
		if strings.HasPrefix(id, "exposure.mdns_full ") || strings.HasPrefix(id, "secrets.config_plaintext ") {
			t.Errorf("--fix left %s", id)
		}
	}
	after, _ = os.ReadFile(cfg)
	if fi, _ = os.Stat(cfg); fi.Mode().Perm() != 0o600 || bytes.Contains(after, []byte(key)) {
		t.Errorf("after --fix the config is mode %o and holds the key: %v", fi.Mode().Perm(), bytes.Contains(after, []byte(key)))
	}
	// The rewritten config keeps OpenClaw's types and names clawhold's
	// data dir absolutely (the gateway runs the provider from elsewhere).
	var c struct {
		Gateway struct{ Port any }
		Secrets struct {
			Providers map[string]struct{ Args []string }
		}
	}
	if err := json.Unmarshal(after, &c); err != nil {
		t.Fatalf("fixed config: %v", err)
	}
	if _, ok := c.Gateway.Port.(float64); !ok {
		t.Errorf("--fix turned gateway.port into %T %v", c.Gateway.Port, c.Gateway.Port)
	}
	if p := c.Secrets.Providers["clawhold"].Args; len(p) < 2 || p[0] != "--data-dir" || p[1] != data {
		t.Errorf("SecretRef provider args = %q, want --data-dir %s first", p, data)
	}
	backups, _ := filepath.Glob(cfg + ".clawhold-*")
	if len(backups) == 0 {
		t.Errorf("--fix kept no backup of %s", cfg)
	}
	for _, b := range backups {
		if fi, err := os.Stat(b); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("backup %s: %v, mode %o", b, err, fi.Mode().Perm())
		}
	}
}
