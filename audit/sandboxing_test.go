package audit

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/clawhold/clawhold/config"
)

// sandboxingCases break the baseline for each sandboxing rule.
func sandboxingCases() []ruleCase {
	openTelegram := map[string]any{"enabled": true, "dmPolicy": "open", "allowFrom": []any{"*"}}
	return []ruleCase{
		{id: "sandboxing.sandbox_off_with_exec", name: "mode_off", break_: func(f *fixture) {
			f.set("agents.defaults.sandbox.mode", "off")
		}},
		{id: "sandboxing.sandbox_off_with_exec", name: "unset", break_: func(f *fixture) {
			f.set("agents.defaults.sandbox", nil)
		}},
		{id: "sandboxing.sandbox_off_with_exec", name: "agent_entry_off_elevated", break_: func(f *fixture) {
			f.set("tools.deny", []any{"exec"})
			f.set("agents.entries.ops", map[string]any{"sandbox": map[string]any{"mode": "off"}, "tools": map[string]any{"elevated": map[string]any{"enabled": true}}})
		}},
		{id: "sandboxing.exec_security_full", name: "mode", break_: func(f *fixture) { f.set("tools.exec.mode", "full") }},
		{id: "sandboxing.exec_security_full", name: "legacy_security", break_: func(f *fixture) {
			f.set("tools.exec", map[string]any{"security": "full", "ask": "off"})
		}},
		{id: "sandboxing.exec_security_full", name: "agent_entry", break_: func(f *fixture) {
			f.set("agents.entries.ops.tools.exec.mode", "full")
		}},
		{id: "sandboxing.elevated_wildcard", name: "global", break_: func(f *fixture) {
			f.set("tools.elevated", map[string]any{"enabled": true, "allowFrom": map[string]any{"discord": []any{"*"}}})
		}},
		{id: "sandboxing.elevated_wildcard", name: "agent_entry", break_: func(f *fixture) {
			f.set("agents.entries.ops.tools.elevated.allowFrom.telegram", []any{"id:1", "*"})
		}},
		{id: "sandboxing.open_channels_exec", name: "open_dm", break_: func(f *fixture) { f.set("channels.telegram", openTelegram) }},
		{id: "sandboxing.open_channels_exec", name: "open_group_account", break_: func(f *fixture) {
			f.set("channels.slack", map[string]any{"accounts": map[string]any{"team": map[string]any{"groupPolicy": "open"}}})
		}},
		{id: "sandboxing.egress_proxy_off", name: "disabled", break_: func(f *fixture) { f.set("proxy.enabled", false) }},
		{id: "sandboxing.egress_proxy_off", name: "absent", break_: func(f *fixture) { f.set("proxy", nil) }},
		{id: "sandboxing.cell_no_limits", name: "egress_unlimited_conns", break_: func(f *fixture) {
			p := filepath.Join(f.home, "clawhold.yaml")
			if err := os.WriteFile(p, []byte("egress:\n  policies:\n    default:\n      profile: openclaw\n      limits:\n        max_conns: 0\n"), 0o600); err != nil {
				f.t.Fatal(err)
			}
			f.target.ClawholdConfig = p
		}},
	}
}

func TestEgressProxyFromEnv(t *testing.T) {
	f := newFixture(t)
	f.set("proxy", nil)
	f.env["OPENCLAW_PROXY_URL"] = "http://127.0.0.1:3128"
	if got := findingsOf(f.run(), "sandboxing.egress_proxy_off"); len(got) > 0 {
		t.Errorf("fired with OPENCLAW_PROXY_URL in the environment: %+v", got)
	}
	g := newFixture(t)
	g.set("proxy", nil)
	g.write(".env", "# proxy\nexport OPENCLAW_PROXY_URL=\"http://127.0.0.1:3128\"\n", 0o600)
	if got := findingsOf(g.run(), "sandboxing.egress_proxy_off"); len(got) > 0 {
		t.Errorf("fired with OPENCLAW_PROXY_URL in the state dir's .env: %+v", got)
	}
}

func TestOpenChannelsExecSeverity(t *testing.T) {
	f := newFixture(t)
	f.set("channels.telegram", map[string]any{"groupPolicy": "open"})
	got := findingsOf(f.run(), "sandboxing.open_channels_exec")
	if len(got) != 1 || got[0].Severity != Warn {
		t.Fatalf("sandboxed, approval-gated exec: got %+v, want one warn", got)
	}
	g := newFixture(t)
	g.set("channels.telegram", map[string]any{"groupPolicy": "open"})
	g.set("agents.defaults.sandbox.mode", "off")
	got = findingsOf(g.run(), "sandboxing.open_channels_exec")
	if len(got) != 1 || got[0].Severity != Critical {
		t.Fatalf("unsandboxed exec: got %+v, want one critical", got)
	}
	h := newFixture(t)
	h.set("channels.telegram", map[string]any{"groupPolicy": "open"})
	h.set("tools.deny", []any{"group:runtime"})
	if got := findingsOf(h.run(), "sandboxing.open_channels_exec"); len(got) > 0 {
		t.Errorf("fired with exec denied: %+v", got)
	}
}

func TestCellLimitGaps(t *testing.T) {
	p := config.DefaultSandboxProfile()
	p.Path = "test.yaml"
	p.Limits.Memory = 1 << 30
	cfg := config.Default()
	gaps := cellLimitGaps(&p, cfg)
	for _, want := range []string{"test.yaml limits.cpu", "test.yaml limits.pids"} {
		if !slices.Contains(gaps, want) {
			t.Errorf("gaps %v lack %q", gaps, want)
		}
	}
	if slices.Contains(gaps, "test.yaml limits.memory") {
		t.Errorf("memory is limited but reported: %v", gaps)
	}
	p.Limits.CPU, p.Limits.Pids = 1, 64
	if gaps := cellLimitGaps(&p, cfg); len(gaps) != 0 {
		t.Errorf("default clawhold config with a limited profile: %v", gaps)
	}
}
