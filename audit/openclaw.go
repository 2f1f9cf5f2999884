package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// OpenClaw's own audits, merged: `openclaw security audit --json` and
// `openclaw secrets audit --json`, run against the target's state dir and
// config, their findings converted to Findings and folded into the native
// ones that report the same problem. Native checks never depend on this.

// openClawTimeout bounds each OpenClaw command. Measured on 2026.9.6:
// security audit takes 2–8 s, secrets audit 2–4 s; a loaded CI runner may
// take several times that.
const openClawTimeout = 2 * time.Minute

// maxOpenClawOutput bounds what is read of a command's output.
const maxOpenClawOutput = 32 << 20

// openclawDocs is where OpenClaw documents its checkIds.
const openclawDocs = "https://docs.openclaw.ai/gateway/security/audit-checks"

// openClawFindings runs OpenClaw's own audits with argv and returns their
// findings and, for each audit that could not run or whose output did not
// parse, an error. The two audits run concurrently.
func openClawFindings(ctx context.Context, t *Target, argv []string) ([]Finding, []string) {
	return openClawFindingsTimeout(ctx, t, argv, openClawTimeout)
}

func openClawFindingsTimeout(ctx context.Context, t *Target, argv []string, timeout time.Duration) ([]Finding, []string) {
	if len(argv) == 0 {
		return nil, []string{"openclaw: no command"}
	}
	sc := newScrubber(t)
	var (
		wg       sync.WaitGroup
		sec, srt []Finding
		secErr   error
		srtErr   error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		var out []byte
		if out, secErr = runOpenClaw(ctx, t, argv, timeout, sc, "security", "audit", "--json"); secErr == nil {
			sec, secErr = parseSecurityAudit(t, out, sc)
		}
	}()
	go func() {
		defer wg.Done()
		var out []byte
		if out, srtErr = runOpenClaw(ctx, t, argv, timeout, sc, "secrets", "audit", "--json"); srtErr == nil {
			srt, srtErr = parseSecretsAudit(t, out, sc)
		}
	}()
	wg.Wait()
	var errs []string
	if secErr != nil {
		errs = append(errs, SourceOpenClawAudit+": "+secErr.Error())
	}
	if srtErr != nil {
		errs = append(errs, SourceOpenClawSecrets+": "+srtErr.Error())
	}
	return append(sec, srt...), errs
}

// runOpenClaw runs argv with args in the target's environment and returns
// its standard output. The exit status alone is no error: security audit
// exits 0 with criticals and secrets audit may exit non-zero when it finds
// something, so the output decides.
func runOpenClaw(ctx context.Context, t *Target, argv []string, timeout time.Duration, sc *scrubber, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], append(slices.Clone(argv[1:]), args...)...)
	cmd.Env = openClawEnv(t, argv[0])
	if fi, err := os.Stat(t.StateDir); err == nil && fi.IsDir() {
		cmd.Dir = t.StateDir
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &limitWriter{w: &stdout, n: maxOpenClawOutput}
	cmd.Stderr = &limitWriter{w: &stderr, n: 64 << 10}
	// Workers the CLI starts may keep the pipes open after it exits.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("`%s` timed out after %v", strings.Join(args, " "), timeout)
	}
	if cerr := context.Cause(ctx); cerr != nil && !errors.Is(cerr, context.DeadlineExceeded) {
		return nil, fmt.Errorf("`%s`: %w", strings.Join(args, " "), cerr)
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, fmt.Errorf("running `%s`: %w", strings.Join(args, " "), err)
	}
	out := jsonDocument(stdout.Bytes())
	if out == nil {
		status := "exit status 0"
		if err != nil {
			status = err.Error()
		}
		return nil, fmt.Errorf("`%s` printed no JSON report (%s): %s", strings.Join(args, " "), status,
			sc.scrub(tail(stderr.String()+stdout.String(), 300)))
	}
	return out, nil
}

// openClawEnv is the target's environment with OpenClaw pointed at its
// state dir and config. Without a PATH, the command's own directory (the
// bundled node) and the system's are used.
func openClawEnv(t *Target, cmd string) []string {
	env := map[string]string{}
	for k, v := range t.Env {
		env[k] = v
	}
	env["OPENCLAW_STATE_DIR"] = t.StateDir
	env["OPENCLAW_CONFIG_PATH"] = t.ConfigPath
	if env["HOME"] == "" {
		env["HOME"] = filepath.Dir(t.StateDir)
	}
	if env["PATH"] == "" {
		env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
		if filepath.IsAbs(cmd) {
			env["PATH"] = filepath.Dir(cmd) + ":" + env["PATH"]
		}
	}
	env["NO_COLOR"] = "1"
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// jsonDocument returns the first JSON object in out that starts a line
// (the CLI may print a banner or warnings around it), or nil.
func jsonDocument(out []byte) []byte {
	for off := 0; off < len(out); {
		i := bytes.IndexByte(out[off:], '{')
		if i < 0 {
			return nil
		}
		i += off
		if i == 0 || out[i-1] == '\n' {
			var doc json.RawMessage
			if json.NewDecoder(bytes.NewReader(out[i:])).Decode(&doc) == nil {
				return doc
			}
		}
		off = i + 1
	}
	return nil
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

type limitWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if room := l.n - l.w.Len(); room > 0 {
		l.w.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// securityAudit is `openclaw security audit --json` (2026.9.6).
type securityAudit struct {
	Findings []struct {
		CheckID     string `json:"checkId"`
		Severity    string `json:"severity"`
		Title       string `json:"title"`
		Detail      string `json:"detail"`
		Remediation string `json:"remediation"`
	} `json:"findings"`
	SecretDiagnostics []string `json:"secretDiagnostics"`
}

func parseSecurityAudit(t *Target, out []byte, sc *scrubber) ([]Finding, error) {
	var rep securityAudit
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("parsing the JSON report: %v", err)
	}
	if rep.Findings == nil {
		return nil, errors.New("the JSON report has no findings list")
	}
	var fs []Finding
	for _, f := range rep.Findings {
		if f.CheckID == "" {
			continue
		}
		rem := sc.scrub(f.Remediation)
		if rem == "" {
			rem = fmt.Sprintf("See OpenClaw's description of %s: %s", f.CheckID, openclawDocs)
		}
		fs = append(fs, Finding{
			ID:          "openclaw:" + f.CheckID,
			Severity:    openClawSeverity(f.Severity),
			Area:        openClawArea(f.CheckID),
			Title:       sc.scrub(f.Title),
			Evidence:    sc.scrub(f.Detail),
			Remediation: rem,
			Location:    openClawLocation(t, f.CheckID, f.Detail),
			Source:      SourceOpenClawAudit,
		})
	}
	return fs, nil
}

// secretsAudit is `openclaw secrets audit --json` (2026.9.6). Its
// findings name files and key paths only; message is scrubbed anyway.
type secretsAudit struct {
	Version  int `json:"version"`
	Findings []struct {
		Code     string `json:"code"`
		Severity string `json:"severity"`
		File     string `json:"file"`
		JSONPath string `json:"jsonPath"`
		Message  string `json:"message"`
		Provider string `json:"provider"`
	} `json:"findings"`
}

// secretsAuditCodes titles secrets audit's finding codes.
var secretsAuditCodes = map[string]struct {
	title string
	area  Area
	fix   string
}{
	"PLAINTEXT_FOUND": {"Plaintext secret stored outside a SecretRef", Encryption,
		"Move the value into a secret provider and reference it with a SecretRef (`clawhold audit --fix` or `openclaw secrets configure`)."},
	"REF_UNRESOLVED": {"SecretRef does not resolve", Deployment,
		"Define the referenced secret (environment variable, file or store entry) or fix the SecretRef."},
	"PLACEHOLDER_VALUE": {"SecretRef resolves to a redacted placeholder", Deployment,
		"Store the real value behind the SecretRef; the placeholder is not a credential."},
	"REF_SHADOWED": {"SecretRef is shadowed by an auth profile credential", Deployment,
		"Remove the stale auth profile credential or the unused config ref so one source of the credential remains."},
	"STORE_PLAINTEXT_RESIDUE": {"Plaintext copy of a stored secret left in the config", Encryption,
		"Replace the plaintext value with its SecretRef to the store."},
	"LEGACY_RESIDUE": {"Legacy credential store residue", Encryption,
		"Run `openclaw doctor --fix` to migrate the legacy credential store, then delete the residue."},
}

func parseSecretsAudit(t *Target, out []byte, sc *scrubber) ([]Finding, error) {
	var rep secretsAudit
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("parsing the JSON report: %v", err)
	}
	if rep.Findings == nil {
		return nil, errors.New("the JSON report has no findings list")
	}
	var fs []Finding
	for _, f := range rep.Findings {
		if f.Code == "" {
			continue
		}
		c, ok := secretsAuditCodes[f.Code]
		if !ok {
			c.title, c.area = "OpenClaw secrets audit: "+f.Code, Encryption
			c.fix = "See `openclaw secrets audit` in OpenClaw's documentation (docs/cli/secrets.md)."
		}
		fs = append(fs, Finding{
			ID:          "openclaw:secrets." + strings.ToLower(f.Code),
			Severity:    openClawSeverity(f.Severity),
			Area:        c.area,
			Title:       c.title,
			Evidence:    sc.scrub(f.Message),
			Remediation: c.fix,
			Location:    secretsLocation(t, f.File, f.JSONPath),
			Source:      SourceOpenClawSecrets,
		})
	}
	return fs, nil
}

// secretsLocation resolves secrets audit's file (absolute, or
// "openclaw.json" for the config) and key path.
func secretsLocation(t *Target, file, key string) Location {
	switch {
	case file == "" || file == "openclaw.json":
		file = t.ConfigPath
	case !filepath.IsAbs(file):
		file = filepath.Join(t.StateDir, file)
	}
	if filepath.Clean(file) == filepath.Clean(t.ConfigPath) && t.Config != nil && key != "" && !strings.HasPrefix(key, "$") {
		return t.Config.Loc(key)
	}
	return Location{File: file, Key: key}
}

func openClawSeverity(s string) Severity {
	if v, err := ParseSeverity(s); err == nil {
		return v
	}
	return Warn // an unknown level is treated as a problem, not dropped
}

// openClawAreas maps checkId prefixes to areas; the longest prefix wins.
var openClawAreas = []struct {
	prefix string
	area   Area
}{
	{"fs.", Isolation},
	{"fs.config", Encryption}, // also fs.config_include: the config holds secrets
	{"fs.auth_profiles.", Encryption},
	{"fs.credentials_dir.", Encryption},
	{"fs.synced_dir", Encryption},
	{"fs.log_file.", Auditing},
	{"gateway.", Deployment},
	{"discovery.", Deployment},
	{"config.", Deployment},
	{"config.secrets.", Encryption},
	{"security.audit.", Auditing},
	{"security.exposure.", Sandboxing},
	{"security.trust_model.", Isolation},
	{"hooks.", Deployment},
	{"browser.", Sandboxing},
	{"sandbox.", Sandboxing},
	{"tools.", Sandboxing},
	{"tools.profile_", Isolation},
	{"skills.", Sandboxing},
	{"plugins.", Isolation},
	{"channels.", Isolation},
	{"session", Isolation},
	{"models.", Sandboxing},
	{"mcp.", Sandboxing},
	{"summary.", Deployment},
}

func openClawArea(checkID string) Area {
	// As clawhold's own filesystem rules: who can read a file is the
	// confidentiality of data at rest, who can write it the boundary
	// between users.
	if strings.HasPrefix(checkID, "fs.") {
		switch {
		case strings.Contains(checkID, "writable"):
			return Isolation
		case strings.Contains(checkID, "readable"):
			return Encryption
		}
	}
	best, area := -1, Deployment
	for _, p := range openClawAreas {
		if strings.HasPrefix(checkID, p.prefix) && len(p.prefix) > best {
			best, area = len(p.prefix), p.area
		}
	}
	return area
}

// openClawKeys maps checkIds to the config key path they concern. In a
// pattern, "*" matches one segment of the checkId and, in the key, stands
// for the segments matched, in order.
var openClawKeys = map[string]string{
	"gateway.bind_no_auth":                                        "gateway.bind",
	"gateway.loopback_no_auth":                                    "gateway.auth.mode",
	"gateway.trusted_proxies_missing":                             "gateway.trustedProxies",
	"gateway.http.no_auth":                                        "gateway.auth.mode",
	"gateway.http.session_key_override_enabled":                   "gateway.http.allowSessionKeyOverride",
	"gateway.tools_invoke_http.dangerous_allow":                   "gateway.tools.allow",
	"gateway.nodes.allow_commands_dangerous":                      "gateway.nodes.commands.allow",
	"gateway.nodes.deny_commands_ineffective":                     "gateway.nodes.commands.deny",
	"gateway.tailscale_funnel":                                    "gateway.tailscale.mode",
	"gateway.tailscale_serve":                                     "gateway.tailscale.mode",
	"gateway.control_ui.allowed_origins_required":                 "gateway.controlUi.allowedOrigins",
	"gateway.control_ui.allowed_origins_wildcard":                 "gateway.controlUi.allowedOrigins",
	"gateway.control_ui.host_header_origin_fallback":              "gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback",
	"gateway.real_ip_fallback_enabled":                            "gateway.allowRealIpFallback",
	"gateway.password_placeholder_value":                          "gateway.auth.password",
	"gateway.password_too_short":                                  "gateway.auth.password",
	"gateway.token_placeholder_value":                             "gateway.auth.token",
	"gateway.token_too_short":                                     "gateway.auth.token",
	"gateway.env_token_overrides_config":                          "gateway.auth.token",
	"gateway.auth_no_rate_limit":                                  "gateway.auth.rateLimit",
	"gateway.trusted_proxy_auth":                                  "gateway.auth.mode",
	"gateway.trusted_proxy_no_proxies":                            "gateway.trustedProxies",
	"gateway.trusted_proxy_no_user_header":                        "gateway.auth.trustedProxy.userHeader",
	"gateway.trusted_proxy_no_allowlist":                          "gateway.auth.trustedProxy.allowUsers",
	"gateway.trusted_proxy_allow_loopback":                        "gateway.auth.trustedProxy.allowLoopback",
	"gateway.trusted_proxy_device_auto_approve":                   "gateway.auth.trustedProxy.deviceAutoApprove",
	"gateway.trusted_proxy_device_auto_approve_admin":             "gateway.auth.trustedProxy.deviceAutoApprove",
	"discovery.mdns_full_mode":                                    "discovery.mdns.mode",
	"config.secrets.gateway_password_in_config":                   "gateway.auth.password",
	"config.secrets.hooks_token_in_config":                        "hooks.token",
	"security.audit.suppressions.active":                          "security.audit.suppressions",
	"security.trust_model.group_scope_main":                       "session.groupScope",
	"hooks.token_reuse_gateway_token":                             "hooks.token",
	"hooks.token_too_short":                                       "hooks.token",
	"hooks.default_session_key_unset":                             "hooks.defaultSessionKey",
	"hooks.allowed_agent_ids_unrestricted":                        "hooks.allowedAgentIds",
	"hooks.request_session_key_enabled":                           "hooks.allowRequestSessionKey",
	"hooks.request_session_key_prefixes_missing":                  "hooks.allowedSessionKeyPrefixes",
	"hooks.path_root":                                             "hooks.path",
	"browser.extension_relay_legacy_auth":                         "browser.extensionRelay.allowLegacyAuth",
	"tools.exec.host_sandbox_no_sandbox_defaults":                 "tools.exec.host",
	"tools.exec.security_full_configured":                         "tools.exec.security",
	"tools.exec.safe_bins_interpreter_unprofiled":                 "tools.exec.safeBins",
	"tools.exec.safe_bins_broad_behavior":                         "tools.exec.safeBins",
	"tools.exec.safe_bin_trusted_dirs_risky":                      "tools.exec.safeBinTrustedDirs",
	"tools.elevated.allowFrom.*.wildcard":                         "tools.elevated.allowFrom.*",
	"tools.elevated.allowFrom.*.large":                            "tools.elevated.allowFrom.*",
	"plugins.extensions_no_allowlist":                             "plugins.allow",
	"plugins.allow_phantom_entries":                               "plugins.allow",
	"channels.*.dm.open":                                          "channels.*.dmPolicy",
	"channels.*.dm.open_invalid":                                  "channels.*.allowFrom",
	"channels.*.dm.scope_main_multiuser":                          "session.dmScope",
	"channels.*.groups.open":                                      "channels.*.groupPolicy",
	"tools.exec.allowlist_interpreter_without_strict_inline_eval": "tools.exec.strictInlineEval",
}

// matchCheckID matches checkId against pattern and returns the segments
// "*" matched.
func matchCheckID(pattern, checkID string) ([]string, bool) {
	ps, cs := strings.Split(pattern, "."), strings.Split(checkID, ".")
	if len(ps) != len(cs) {
		return nil, false
	}
	var caps []string
	for i := range ps {
		switch {
		case ps[i] == "*":
			caps = append(caps, cs[i])
		case ps[i] != cs[i]:
			return nil, false
		}
	}
	return caps, true
}

// absPath finds the first absolute path in an fs.* finding's detail
// ("/home/u/.openclaw/openclaw.json mode=644; ...").
var absPath = regexp.MustCompile(`(?:^|[\s"'=(])(/[^\s"';,)]+)`)

// openClawLocation is where a checkId points: the file an fs.* check
// names, else the config and the checkId's key path when known.
func openClawLocation(t *Target, checkID, detail string) Location {
	if strings.HasPrefix(checkID, "fs.") {
		if m := absPath.FindStringSubmatch(detail); m != nil {
			return Location{File: m[1]}
		}
		switch {
		case strings.HasPrefix(checkID, "fs.state_dir."):
			return Location{File: t.StateDir}
		case strings.HasPrefix(checkID, "fs.config."):
			return Location{File: t.ConfigPath}
		case strings.HasPrefix(checkID, "fs.credentials_dir."):
			return Location{File: filepath.Join(t.StateDir, "credentials")}
		}
		return Location{File: t.StateDir}
	}
	for pattern, key := range openClawKeys {
		caps, ok := matchCheckID(pattern, checkID)
		if !ok {
			continue
		}
		for _, c := range caps {
			key = strings.Replace(key, "*", c, 1)
		}
		return t.Config.Loc(key)
	}
	return Location{File: t.ConfigPath}
}

// scrubber removes secret values from OpenClaw's text before it becomes
// evidence: every secret-looking value of the target's config and
// environment, and anything else shaped like a credential.
type scrubber struct{ secrets []string }

// secretKey matches config keys and variable names that hold secrets.
var secretKey = regexp.MustCompile(`(?i)(token|password|passwd|secret|api_?key|apikey|credential|private_?key|auth$|cookie|webhook_?url)`)

// tokenLike matches credential-shaped words that are not part of a path.
var tokenLike = regexp.MustCompile(`(^|[^/\w.\-])((?:sk|pk|rk|ghp|gho|ghs|xox[abpr]|glpat|AKIA|AIza)[\w\-]{10,}|[A-Za-z0-9_\-+=]{24,})`)

func newScrubber(t *Target) *scrubber {
	sc := &scrubber{}
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				walk(k, e)
			}
		case []any:
			for _, e := range v {
				walk(key, e)
			}
		case string:
			if len(v) >= 6 && secretKey.MatchString(key) {
				sc.secrets = append(sc.secrets, v)
			}
		}
	}
	if t.Config != nil {
		walk("", t.Config.Root)
	}
	for k, v := range t.Env {
		if len(v) >= 6 && secretKey.MatchString(k) {
			sc.secrets = append(sc.secrets, v)
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	sort.Slice(sc.secrets, func(i, j int) bool { return len(sc.secrets[i]) > len(sc.secrets[j]) })
	return sc
}

func (sc *scrubber) scrub(s string) string {
	for _, v := range sc.secrets {
		if strings.Contains(s, v) {
			s = strings.ReplaceAll(s, v, redact(v))
		}
	}
	return tokenLike.ReplaceAllStringFunc(s, func(m string) string {
		sub := tokenLike.FindStringSubmatch(m)
		if !credentialShaped(sub[2]) {
			return m
		}
		return sub[1] + redact(sub[2])
	})
}

// credentialShaped: long, letters and digits mixed, and random enough
// (Shannon entropy above 3.5 bits per character) not to be a word.
func credentialShaped(s string) bool {
	var letter, digit bool
	counts := map[rune]int{}
	for _, r := range s {
		letter = letter || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		digit = digit || (r >= '0' && r <= '9')
		counts[r]++
	}
	if !letter || !digit {
		return false
	}
	var h float64
	for _, c := range counts {
		p := float64(c) / float64(len(s))
		h -= p * math.Log2(p)
	}
	return h > 3.5
}

// openClawEquivalents maps OpenClaw checkIds (patterns as in openClawKeys;
// secrets audit's codes as "secrets.<code>") to the native rules that
// report the same problem. It is collected from the `// openclaw:
// <checkId>` comments next to the native rules in audit/*.go (a checkId
// marked "(partly)" is not the same problem and is not folded);
// TestOpenClawEquivalentsMatchComments keeps the two in step.
var openClawEquivalents = map[string][]string{
	"channels.*.dm.scope_main_multiuser":               {"isolation.dm_scope_main_multiuser"},
	"config.insecure_or_dangerous_flags":               {"exposure.dangerous_flag"},
	"config.plaintext_secrets":                         {"secrets.config_plaintext"},
	"config.secrets.gateway_password_in_config":        {"secrets.config_plaintext"},
	"config.secrets.hooks_token_in_config":             {"secrets.config_plaintext_unsupported"},
	"discovery.mdns_full_mode":                         {"exposure.mdns_full"},
	"fs.auth_profiles.perms_readable":                  {"fs.credentials_file_readable", "fs.sqlite_readable"},
	"fs.auth_profiles.perms_writable":                  {"fs.credentials_file_writable", "fs.sqlite_writable"},
	"fs.config.perms_group_readable":                   {"fs.config_readable"},
	"fs.config.perms_world_readable":                   {"fs.config_readable"},
	"fs.config.perms_writable":                         {"fs.config_writable"},
	"fs.config.symlink":                                {"fs.symlinked_path"},
	"fs.config_include.perms_group_readable":           {"fs.config_readable"},
	"fs.config_include.perms_world_readable":           {"fs.config_readable"},
	"fs.config_include.perms_writable":                 {"fs.config_writable"},
	"fs.credentials_dir.perms_readable":                {"fs.credentials_file_readable"},
	"fs.credentials_dir.perms_writable":                {"fs.credentials_file_writable"},
	"fs.log_file.perms_readable":                       {"fs.log_file_readable"},
	"fs.sessions_store.perms_readable":                 {"fs.sqlite_readable"},
	"fs.state_dir.perms_group_writable":                {"fs.state_dir_writable"},
	"fs.state_dir.perms_readable":                      {"fs.state_dir_readable"},
	"fs.state_dir.perms_world_writable":                {"fs.state_dir_writable"},
	"fs.state_dir.symlink":                             {"fs.symlinked_path"},
	"gateway.bind_no_auth":                             {"exposure.auth_none", "exposure.bind_no_auth"},
	"gateway.control_ui.allowed_origins_required":      {"exposure.control_ui_origins_missing"},
	"gateway.control_ui.allowed_origins_wildcard":      {"exposure.control_ui_origins_wildcard"},
	"gateway.control_ui.host_header_origin_fallback":   {"exposure.host_header_origin_fallback"},
	"gateway.env_token_overrides_config":               {"exposure.env_token_overrides_config"},
	"gateway.http.no_auth":                             {"exposure.auth_none"},
	"gateway.loopback_no_auth":                         {"exposure.auth_none"},
	"gateway.password_placeholder_value":               {"exposure.auth_secret_placeholder"},
	"gateway.password_too_short":                       {"exposure.auth_secret_short"},
	"gateway.real_ip_fallback_enabled":                 {"exposure.real_ip_fallback"},
	"gateway.tailscale_funnel":                         {"exposure.tailscale_funnel"},
	"gateway.token_placeholder_value":                  {"exposure.auth_secret_placeholder"},
	"gateway.token_too_short":                          {"exposure.auth_secret_short"},
	"gateway.trusted_proxy_allow_loopback":             {"exposure.trusted_proxy_allow_loopback"},
	"gateway.trusted_proxy_no_allowlist":               {"exposure.trusted_proxy_no_allowlist"},
	"gateway.trusted_proxy_no_proxies":                 {"exposure.trusted_proxy_no_proxies"},
	"gateway.trusted_proxy_no_user_header":             {"exposure.trusted_proxy_no_user_header"},
	"hooks.path_root":                                  {"exposure.hooks_path_root"},
	"hooks.token_reuse_gateway_token":                  {"exposure.hooks_token_reuse"},
	"hooks.token_too_short":                            {"exposure.hooks_token_short"},
	"plugins.extensions_no_allowlist":                  {"isolation.plugins_no_allowlist"},
	"secrets.plaintext_found":                          {"secrets.config_plaintext"},
	"security.exposure.open_channels_with_exec":        {"sandboxing.open_channels_exec"},
	"security.exposure.open_groups_with_elevated":      {"isolation.elevated_open_senders"},
	"security.exposure.open_groups_with_runtime_or_fs": {"isolation.tools_broad_open_channels"},
	"security.trust_model.multi_user_heuristic":        {"isolation.multi_user_without_cells"},
	"tools.exec.security_full_configured":              {"sandboxing.exec_security_full"},
}

// equivalentRules returns the native rule ids equivalent to an OpenClaw
// finding id ("openclaw:<checkId>") in table.
func equivalentRules(table map[string][]string, id string) []string {
	checkID, ok := strings.CutPrefix(id, "openclaw:")
	if !ok {
		return nil
	}
	var out []string
	for pattern, rules := range table {
		if _, ok := matchCheckID(pattern, checkID); ok {
			out = append(out, rules...)
		}
	}
	return out
}

// fold merges OpenClaw's findings into the native ones, folding each that
// reports the same problem as a native finding into it: the native finding
// keeps its id, severity and evidence and names the other source in
// AlsoReportedBy. The same problem is an equivalent rule (by the table) at
// the same location: the same file when both name one, and, when the
// native rule fired at several places, the same config key.
func fold(native, theirs []Finding) []Finding {
	return foldWith(openClawEquivalents, native, theirs)
}

func foldWith(table map[string][]string, native, theirs []Finding) []Finding {
	out := slices.Clone(native)
	n := len(out)
	for _, o := range theirs {
		rules := equivalentRules(table, o.ID)
		target := -1
		if len(rules) > 0 {
			var cands []int
			for i := range out[:n] {
				if slices.Contains(rules, out[i].ID) && sameFile(out[i].Location, o.Location) {
					cands = append(cands, i)
				}
			}
			switch {
			case len(cands) == 1 && keysAgree(out[cands[0]].Location.Key, o.Location.Key, true):
				target = cands[0]
			case len(cands) > 1:
				for _, i := range cands {
					if keysAgree(out[i].Location.Key, o.Location.Key, false) {
						target = i
						break
					}
				}
			}
		}
		if target < 0 {
			out = append(out, o)
			continue
		}
		if !slices.Contains(out[target].AlsoReportedBy, o.Source) {
			out[target].AlsoReportedBy = append(out[target].AlsoReportedBy, o.Source)
		}
	}
	return out
}

func sameFile(a, b Location) bool {
	return a.File == "" || b.File == "" || filepath.Clean(a.File) == filepath.Clean(b.File)
}

// keysAgree: equal, one unknown, or (when lenient, for a rule that fired
// once) one a prefix of the other or both under the same top-level
// section, as when OpenClaw points at gateway.bind and clawhold at
// gateway.auth.mode for "bound beyond loopback without auth".
func keysAgree(native, theirs string, lenient bool) bool {
	if native == "" || theirs == "" || native == theirs {
		return true
	}
	if strings.HasPrefix(native, theirs+".") || strings.HasPrefix(theirs, native+".") {
		return true
	}
	if !lenient {
		return false
	}
	ns, _, _ := strings.Cut(native, ".")
	ts, _, _ := strings.Cut(theirs, ".")
	return ns == ts
}
