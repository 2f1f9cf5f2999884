package audit

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/sandbox"
)

// Sandboxing rules: where commands run and what they can reach.
var (
	ruleSandboxOff = Rule{ID: "sandboxing.sandbox_off_with_exec", Area: Sandboxing, Severity: Warn, // openclaw: security.exposure.open_groups_with_runtime_or_fs (partly)
		Title:       "Sandbox is off while exec or elevated tools are available",
		Remediation: `Set agents.defaults.sandbox.mode to "all" (or "non-main"), or deny exec with tools.deny: ["group:runtime"].`}
	ruleExecFull = Rule{ID: "sandboxing.exec_security_full", Area: Sandboxing, Severity: Warn, // openclaw: tools.exec.security_full_configured
		Title:       `Host exec runs with security "full" (openclaw: tools.exec.security_full_configured)`,
		Remediation: `Set tools.exec.mode to "ask" (allowlist, ask on miss) or "allowlist", and remove tools.exec.security "full".`}
	ruleElevatedWildcard = Rule{ID: "sandboxing.elevated_wildcard", Area: Sandboxing, Severity: Critical, // openclaw: tools.elevated.allowFrom.<provider>.wildcard
		Title:       `Elevated exec is allowed for every sender ("*") (openclaw: tools.elevated.allowFrom.<provider>.wildcard)`,
		Remediation: `Replace "*" in tools.elevated.allowFrom.<provider> with the stable ids of the operators allowed to escape the sandbox, or set tools.elevated.enabled to false.`}
	ruleOpenChannelsExec = Rule{ID: "sandboxing.open_channels_exec", Area: Sandboxing, Severity: Warn, // openclaw: security.exposure.open_channels_with_exec
		Title:       "Open channels reach the exec tool (openclaw: security.exposure.open_channels_with_exec)",
		Remediation: `Close the channels (dmPolicy "pairing" or "allowlist", groupPolicy "allowlist"), or deny exec to them with tools.deny: ["group:runtime"].`}
	ruleEgressOff = Rule{ID: "sandboxing.egress_proxy_off", Area: Sandboxing, Severity: Warn,
		Title:       "No egress proxy: OpenClaw's outbound traffic is unfiltered",
		Remediation: `Set proxy.enabled to true and proxy.proxyUrl to the egress proxy (e.g. clawhold egress serve on "http://127.0.0.1:3128"), or set OPENCLAW_PROXY_URL in ~/.openclaw/.env.`}
	ruleCellNoLimits = Rule{ID: "sandboxing.cell_no_limits", Area: Sandboxing, Severity: Warn,
		Title:       "Cells run without resource limits",
		Remediation: "Give the cells' sandbox profile limits (limits.cpu, limits.memory, limits.pids) and each egress policy a connection cap (egress.policies.<name>.limits.max_conns, default 512)."}
)

func sandboxingChecks() []check {
	return []check{
		{name: "sandboxing.exec", rules: []Rule{ruleSandboxOff, ruleExecFull, ruleElevatedWildcard, ruleOpenChannelsExec}, run: checkExecSandbox},
		{name: "sandboxing.egress", rules: []Rule{ruleEgressOff}, run: checkEgressProxy},
		{name: "sandboxing.cells", rules: []Rule{ruleCellNoLimits}, run: checkCellLimits},
	}
}

// agentScopes are the config prefixes that carry a tool and sandbox policy:
// the defaults ("") and each agents.entries.<id>.
func agentScopes(c *Config) []string {
	out := []string{""}
	for _, id := range c.Keys("agents.entries") {
		out = append(out, "agents.entries."+id+".")
	}
	return out
}

// sandboxMode is the sandbox mode of a scope, inheriting the defaults'
// (OpenClaw's default is "off").
func sandboxMode(c *Config, scope string) (mode, key string) {
	if scope != "" {
		if m := c.String(scope + "sandbox.mode"); m != "" {
			return m, scope + "sandbox.mode"
		}
	}
	if m := c.String("agents.defaults.sandbox.mode"); m != "" {
		return m, "agents.defaults.sandbox.mode"
	}
	return "off", "agents.defaults.sandbox.mode"
}

// execSecurity is the configured exec security of a scope ("" when
// unset): tools.exec.mode is canonical, tools.exec.security the legacy key.
func execSecurity(c *Config, scope string) (sec, key string) {
	for _, s := range []string{scope, ""} {
		switch m := c.String(s + "tools.exec.mode"); m {
		case "deny", "full", "allowlist":
			return m, s + "tools.exec.mode"
		case "ask", "auto":
			return "allowlist", s + "tools.exec.mode"
		}
		if m := c.String(s + "tools.exec.security"); m != "" {
			return m, s + "tools.exec.security"
		}
		if s == "" {
			break
		}
	}
	return "", ""
}

// execAvailable reports whether the exec tool is available in scope.
func execAvailable(c *Config, scope string) bool {
	if sec, _ := execSecurity(c, scope); sec == "deny" {
		return false
	}
	for _, s := range []string{scope, ""} {
		if toolsDenied(c, s, "exec", "group:runtime") {
			return false
		}
	}
	return true
}

func elevatedEnabled(c *Config, scope string) bool {
	if scope != "" {
		if v, set := c.Bool(scope + "tools.elevated.enabled"); set {
			return v
		}
	}
	v, _ := c.Bool("tools.elevated.enabled")
	return v
}

func checkExecSandbox(_ context.Context, t *Target, r *results) {
	c := t.Config
	if c == nil {
		return
	}
	open := openSurfaces(c)
	for _, scope := range agentScopes(c) {
		name := "the default agent"
		if scope != "" {
			name = strings.TrimSuffix(scope, ".")
		}
		mode, modeKey := sandboxMode(c, scope)
		exec, elev := execAvailable(c, scope), elevatedEnabled(c, scope)
		if mode == "off" && (exec || elev) && (scope == "" || modeKey == scope+"sandbox.mode") {
			var what []string
			if exec {
				what = append(what, "exec")
			}
			if elev {
				what = append(what, "elevated tools")
			}
			val := fmt.Sprintf("%s is %q", modeKey, mode)
			if _, ok := c.Get(modeKey); !ok {
				val = modeKey + ` is unset (default "off")`
			}
			f := r.add(ruleSandboxOff.ID, c.Loc(modeKey), fmt.Sprintf("%s and %s has %s on the gateway host", val, name, strings.Join(what, " and ")))
			if len(open) > 0 {
				f.Severity = Critical
			}
		}
		if sec, key := execSecurity(c, scope); sec == "full" && key != "" && strings.HasPrefix(key, scope) {
			f := r.add(ruleExecFull.ID, c.Loc(key), fmt.Sprintf("%s is %q for %s", key, c.String(key), name))
			if len(open) > 0 {
				f.Severity = Critical
			}
		}
		for _, k := range c.Match(scope + "tools.elevated.allowFrom.*") {
			if slices.Contains(trimmed(c.Strings(k)), "*") {
				r.add(ruleElevatedWildcard.ID, c.Loc(k), fmt.Sprintf(`%s includes "*": every sender on that channel may run elevated (host) commands`, k))
			}
		}
		if scope == "" && len(open) > 0 && exec {
			sec, _ := execSecurity(c, scope)
			f := r.add(ruleOpenChannelsExec.ID, c.Loc(open[0].key), fmt.Sprintf("%s can run exec (sandbox %q, exec security %q) and channels accept any sender: %s", name, mode, orDefault(sec, "full (default)"), surfaceKeys(open)))
			if mode == "off" || sec == "" || sec == "full" {
				f.Severity = Critical
			}
		}
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func checkEgressProxy(_ context.Context, t *Target, r *results) {
	c := t.Config
	if c == nil {
		return
	}
	if v, set := c.Bool("proxy.enabled"); set && !v {
		r.add(ruleEgressOff.ID, c.Loc("proxy.enabled"), "proxy.enabled is false: outbound traffic bypasses the egress proxy")
		return
	}
	if strings.TrimSpace(c.String("proxy.proxyUrl")) != "" || strings.TrimSpace(t.Env["OPENCLAW_PROXY_URL"]) != "" {
		return
	}
	if strings.TrimSpace(dotenv(filepath.Join(t.StateDir, ".env"))["OPENCLAW_PROXY_URL"]) != "" {
		return
	}
	r.add(ruleEgressOff.ID, c.Loc("proxy.proxyUrl"), "neither proxy.proxyUrl nor OPENCLAW_PROXY_URL (environment or the state dir's .env) is set: outbound traffic is unfiltered")
}

// cellLimitGaps lists what is unlimited in the cells' sandbox profile p and
// in the egress policies of cfg, as config keys.
func cellLimitGaps(p *config.SandboxProfile, cfg *config.Config) []string {
	var gaps []string
	if p != nil {
		if p.Limits.CPU == 0 {
			gaps = append(gaps, p.Path+" limits.cpu")
		}
		if p.Limits.Memory == 0 {
			gaps = append(gaps, p.Path+" limits.memory")
		}
		if p.Limits.Pids == 0 {
			gaps = append(gaps, p.Path+" limits.pids")
		}
	}
	if cfg != nil {
		names := make([]string, 0, len(cfg.Egress.Policies))
		for n := range cfg.Egress.Policies {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			if cfg.Egress.Policies[n].Limits.MaxConns == 0 {
				gaps = append(gaps, "egress.policies."+n+".limits.max_conns")
			}
		}
	}
	return gaps
}

func checkCellLimits(_ context.Context, t *Target, r *results) {
	if t.ClawholdConfig == "" {
		return
	}
	cfg, err := config.Load(t.ClawholdConfig)
	if err != nil {
		r.fail("loading clawhold's config: %v", err)
		return
	}
	// Cells always run under the built-in openclaw profile (cell.NewManager).
	p, err := sandbox.LoadProfile("openclaw")
	if err != nil {
		r.fail("loading the cells' sandbox profile: %v", err)
		return
	}
	gaps := cellLimitGaps(p, cfg)
	if len(gaps) == 0 {
		return
	}
	key := gaps[0]
	if strings.Contains(key, " ") {
		key = ""
	}
	r.add(ruleCellNoLimits.ID, Location{File: t.ClawholdConfig, Key: key}, "unlimited (0): "+strings.Join(gaps, ", "))
}
