package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/clawhold/clawhold/secrets"
)

// The secrets rules serve the encryption area: each finds a credential
// stored in plaintext at rest (in the config, a .env file, the agent
// workspace, a repository's history or an image layer) instead of in an
// encrypted secret store behind a SecretRef.
const (
	ruleConfigPlaintext     = "secrets.config_plaintext"
	ruleConfigUnsupported   = "secrets.config_plaintext_unsupported"
	ruleDotEnv              = "secrets.dotenv"
	ruleWorkspace           = "secrets.workspace"
	ruleGitHistory          = "secrets.git_history"
	ruleImageLayer          = "secrets.image_layer"
	secretsConfigRemediaton = "Run `clawhold audit --fix` (or `clawhold secrets import openclaw.json`) to move the value into clawhold's encrypted secret store; the key then holds a SecretRef such as {\"source\":\"exec\",\"provider\":\"clawhold\",\"id\":\"gateway/auth/token\"}. Or set the key to an env SecretRef / \"${VAR}\" and keep the value out of the file. Rotate the credential if the file was ever shared, backed up or committed."
)

func secretChecks() []check {
	return []check{
		{
			name: "secrets.config",
			rules: []Rule{
				{
					// openclaw: config.secrets.gateway_password_in_config (gateway.auth.password only)
					// openclaw: config.plaintext_secrets (doctor)
					// openclaw: PLAINTEXT_FOUND (openclaw secrets audit)
					ID: ruleConfigPlaintext, Area: Encryption, Severity: Warn,
					Title:       "Plaintext credential in openclaw.json (gateway token/password, model API key, channel token, ...)",
					Remediation: secretsConfigRemediaton,
					Fixable:     true,
				},
				{
					// openclaw: config.secrets.hooks_token_in_config (hooks.token only)
					ID: ruleConfigUnsupported, Area: Encryption, Severity: Warn,
					Title:       "Plaintext credential in openclaw.json at a key that takes no SecretRef (hooks.token, ...)",
					Remediation: "OpenClaw takes no SecretRef here: use \"${VAR}\" env substitution (e.g. \"hooks\": {\"token\": \"${OPENCLAW_HOOKS_TOKEN}\"}) with the variable set in the service environment, keep openclaw.json at mode 0600, and rotate the value if the file was ever shared.",
				},
			},
			run: runConfigSecrets,
		},
		{
			name: "secrets.files",
			rules: []Rule{
				{
					ID: ruleDotEnv, Area: Encryption, Severity: Warn,
					Title:       "Plaintext secret in a .env file",
					Remediation: "Import the variables into clawhold's encrypted store (`clawhold secrets import FILE`) and delete them from the .env file, or keep the file at mode 0600 outside any backup or repository; rotate any value that was ever shared.",
				},
				{
					ID: ruleWorkspace, Area: Encryption, Severity: Warn,
					Title:       "Secret in the agent workspace (files the agent and its model provider can read)",
					Remediation: "Remove the secret from the workspace file (the agent reads workspace files and sends them to its model provider), rotate it, and give the agent the credential through a SecretRef instead.",
				},
			},
			run: runFileSecrets,
		},
		{
			name: "secrets.history",
			rules: []Rule{
				{
					ID: ruleGitHistory, Area: Encryption, Severity: Critical,
					Title:       "Secret in git history (any commit, including ones deleted later)",
					Remediation: "Rotate the credential now: it is in every clone of the repository. Then remove it from history (git filter-repo --replace-text, or BFG) and force-push; deleting it in a later commit does not remove it.",
				},
				{
					ID: ruleImageLayer, Area: Encryption, Severity: Critical,
					Title:       "Secret in a container image layer (including files deleted in a later layer)",
					Remediation: "Rotate the credential: every layer ships with the image, so deleting the file in a later layer does not remove it. Rebuild without copying it in (use build secrets, `RUN --mount=type=secret`, or runtime injection) and delete the pushed image.",
				},
			},
			run: runHistorySecrets,
		},
	}
}

// runConfigSecrets reports every plaintext string at a credential key of
// openclaw.json. What counts as plaintext and which keys are credentials
// follow the secrets package's importer, which `--fix` uses to move them.
func runConfigSecrets(_ context.Context, t *Target, r *results) {
	if t.Config == nil {
		return
	}
	supported, unsupported := secrets.OpenClawCredentialPaths()
	sup, unsup := splitKeyPatterns(supported), splitKeyPatterns(unsupported)
	walkConfigStrings(t.Config.Root, nil, func(path []string, s string) {
		if !isPlaintextValue(s) {
			return
		}
		var id string
		switch {
		case matchKeyPattern(unsup, path):
			id = ruleConfigUnsupported
		case matchKeyPattern(sup, path):
			id = ruleConfigPlaintext
		default:
			return
		}
		key := displayKey(path)
		r.add(id, configLoc(t.Config, path), fmt.Sprintf("%s holds a plaintext value (%s), not a SecretRef or ${VAR}", key, redact(s)))
	})
}

// configLoc is Loc for a path that may pass through arrays: the line is
// that of the path without its indexes (the first such key), which is
// close enough to point a reader there.
func configLoc(c *Config, path []string) Location {
	var keys []string
	for _, k := range path {
		if !strings.HasPrefix(k, "[") {
			keys = append(keys, k)
		}
	}
	loc := c.Loc(strings.Join(keys, "."))
	loc.Key = displayKey(path)
	return loc
}

// displayKey joins a path as OpenClaw prints it: "hooks.mappings[0].sessionKey".
func displayKey(path []string) string {
	var b strings.Builder
	for i, k := range path {
		if i > 0 && !strings.HasPrefix(k, "[") {
			b.WriteByte('.')
		}
		b.WriteString(k)
	}
	return b.String()
}

// walkConfigStrings calls fn for every string in v with its path; array
// elements appear as "[i]". SecretRef objects are not descended into.
func walkConfigStrings(v any, path []string, fn func(path []string, s string)) {
	switch v := v.(type) {
	case map[string]any:
		if isSecretRefObject(v) {
			return
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walkConfigStrings(v[k], append(slices.Clip(path), k), fn)
		}
	case []any:
		for i, e := range v {
			walkConfigStrings(e, append(slices.Clip(path), "["+strconv.Itoa(i)+"]"), fn)
		}
	case string:
		fn(path, v)
	}
}

func splitKeyPatterns(ps []string) [][]string {
	out := make([][]string, len(ps))
	for i, p := range ps {
		out[i] = strings.Split(p, ".")
	}
	return out
}

// matchKeyPattern reports whether path matches a pattern: "*" matches any
// object key, "[]" any array index.
func matchKeyPattern(patterns [][]string, path []string) bool {
	return slices.ContainsFunc(patterns, func(p []string) bool {
		if len(p) != len(path) {
			return false
		}
		for i, k := range path {
			isIndex := strings.HasPrefix(k, "[")
			switch {
			case isIndex && p[i] != "[]":
				return false
			case !isIndex && p[i] != "*" && p[i] != k:
				return false
			}
		}
		return true
	})
}

// isSecretRefObject reports whether m is a SecretRef ({source, provider, id}).
func isSecretRefObject(m map[string]any) bool {
	for _, k := range []string{"source", "provider", "id"} {
		if _, ok := m[k].(string); !ok {
			return false
		}
	}
	return true
}

// envRefRE matches OpenClaw's env shorthands: "$VAR" alone, or "${VAR}"
// anywhere (substitution).
var envRefRE = regexp.MustCompile(`^\$[A-Z][A-Z0-9_]{0,127}$|\$\{[A-Z][A-Z0-9_]{0,127}\}`)

// isPlaintextValue reports whether a config string is a literal value
// rather than a reference to one; it agrees with the secrets importer.
// The empty string and OpenClaw's redaction placeholder are neither.
func isPlaintextValue(s string) bool {
	return s != "" && s != "__OPENCLAW_REDACTED__" && !envRefRE.MatchString(s)
}

// runFileSecrets scans the .env files and the agent workspaces.
func runFileSecrets(ctx context.Context, t *Target, r *results) {
	files := dotEnvFiles(t)
	dirs := workspaceDirs(t)
	if len(files) == 0 && len(dirs) == 0 {
		return
	}
	sc, err := NewSecretScanner()
	if err != nil {
		r.fail("%v", err)
		return
	}
	for _, f := range files {
		hits, _, err := sc.File(ctx, f)
		if err != nil {
			r.fail("%v", err)
			continue
		}
		lines := map[int]bool{}
		for _, h := range hits {
			lines[h.Location.Line] = true
			r.add(ruleDotEnv, h.Location, hitEvidence(h))
		}
		// gitleaks' rules want a known key shape or high entropy; a .env
		// variable named like a credential is one whatever its value.
		for _, v := range dotEnvCredentials(f) {
			if !lines[v.line] {
				r.add(ruleDotEnv, Location{File: f, Key: v.name, Line: v.line},
					fmt.Sprintf("%s:%d: variable %s, named like a credential, holds a plaintext value (%s)", f, v.line, v.name, redact(v.value)))
			}
		}
	}
	for _, d := range dirs {
		hits, st, err := sc.Dir(ctx, d)
		if err != nil {
			r.fail("scanning workspace %s: %v", d, err)
		}
		for _, h := range hits {
			r.add(ruleWorkspace, h.Location, hitEvidence(h))
		}
		if st.Dropped > 0 {
			r.fail("workspace %s: %d more secrets not listed", d, st.Dropped)
		}
	}
}

// runHistorySecrets scans the repositories' histories and the images'
// layers, each source in turn (each scan is parallel inside).
func runHistorySecrets(ctx context.Context, t *Target, r *results) {
	if len(t.Repos) == 0 && len(t.Images) == 0 {
		return
	}
	sc, err := NewSecretScanner()
	if err != nil {
		r.fail("%v", err)
		return
	}
	for _, repo := range t.Repos {
		hits, st, err := sc.Git(ctx, repo)
		if err != nil {
			r.fail("%v", err)
			continue
		}
		for _, h := range hits {
			r.add(ruleGitHistory, h.Location, hitEvidence(h))
		}
		if st.Dropped > 0 {
			r.fail("repository %s: %d more secrets not listed", repo, st.Dropped)
		}
	}
	for _, img := range t.Images {
		hits, st, err := sc.Image(ctx, img)
		if err != nil {
			r.fail("%v", err)
			continue
		}
		for _, h := range hits {
			r.add(ruleImageLayer, h.Location, hitEvidence(h))
		}
		if st.Dropped > 0 {
			r.fail("image %s: %d more secrets not listed", img, st.Dropped)
		}
	}
}

// hitEvidence names the rule, the place and the secret's shape only.
func hitEvidence(h SecretHit) string {
	where := h.Location.String()
	if h.Commit != "" {
		where = fmt.Sprintf("%s in commit %s", where, shortSHA(h.Commit))
	}
	return fmt.Sprintf("gitleaks rule %q matched at %s: %s", h.RuleID, where, h.Redacted)
}

func shortSHA(s string) string { return s[:min(len(s), 12)] }

// dotEnvFiles are the .env files OpenClaw loads: the state dir's and the
// one next to the config (when the config lives elsewhere).
func dotEnvFiles(t *Target) []string {
	var out []string
	for _, d := range []string{t.StateDir, filepath.Dir(t.ConfigPath)} {
		if d == "" || d == "." && t.ConfigPath == "" {
			continue
		}
		p := filepath.Join(d, ".env")
		if slices.Contains(out, p) {
			continue
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	return out
}

// workspaceDirs are the agent workspaces: OPENCLAW_WORKSPACE_DIR or
// agents.defaults.workspace (default <stateDir>/workspace), and each
// agents.entries.*.workspace, "~" expanded, the existing ones only.
func workspaceDirs(t *Target) []string {
	def := t.Env["OPENCLAW_WORKSPACE_DIR"]
	if def == "" {
		def = t.Config.String("agents.defaults.workspace")
	}
	if def == "" && t.StateDir != "" {
		def = filepath.Join(t.StateDir, "workspace")
	}
	cands := []string{def}
	for _, k := range t.Config.Match("agents.entries.*.workspace") {
		cands = append(cands, t.Config.String(k))
	}
	var out []string
	for _, d := range cands {
		d = expandHome(d, t)
		if d == "" || slices.Contains(out, d) {
			continue
		}
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			out = append(out, d)
		}
	}
	return out
}

// expandHome expands a leading "~" with the target's HOME (OPENCLAW_HOME
// first, as OpenClaw does).
func expandHome(p string, t *Target) string {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p
	}
	home := t.Env["OPENCLAW_HOME"]
	if home == "" {
		home = t.Env["HOME"]
	}
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, strings.TrimPrefix(p, "~"))
}

// dotEnvVar is a .env assignment.
type dotEnvVar struct {
	name, value string
	line        int
}

// credentialNameRE matches variable names that hold credentials.
// Names of references to credentials (TOKEN_FILE, SECRET_PATH) are not.
var (
	credentialNameRE = regexp.MustCompile(`(?i)(^|_)(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASS|PRIVATE_?KEY|ACCESS_?KEY)($|_)`)
	credentialRefRE  = regexp.MustCompile(`(?i)_(FILE|PATH|DIR|URL|MODE|ID|NAME|USER|USERNAME)$`)
)

// dotEnvCredentials returns the assignments in file whose name looks like
// a credential and whose value is a literal. The parse is line-based
// (KEY=VALUE, optional "export", quotes stripped): it only has to find
// the lines, and never reports a value beyond its shape.
func dotEnvCredentials(file string) []dotEnvVar {
	b, err := os.ReadFile(file)
	if err != nil || len(b) > maxScanFileBytes {
		return nil
	}
	var out []dotEnvVar
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		val = strings.TrimSpace(val)
		if len(val) >= 2 && (val[0] == '"' || val[0] == '\'') && val[len(val)-1] == val[0] {
			val = val[1 : len(val)-1]
		} else if j := strings.Index(val, " #"); j >= 0 {
			val = strings.TrimSpace(val[:j])
		}
		if !credentialNameRE.MatchString(name) || credentialRefRE.MatchString(name) || !isPlaintextValue(val) || len(val) < 8 {
			continue
		}
		out = append(out, dotEnvVar{name: name, value: val, line: i + 1})
	}
	return out
}
