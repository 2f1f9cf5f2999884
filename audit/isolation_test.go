package audit

import (
	"os"
	"path/filepath"
	"testing"
)

// isolationCases break the baseline for each isolation rule.
func isolationCases() []ruleCase {
	telegram := func(extra map[string]any) map[string]any {
		m := map[string]any{"enabled": true, "botToken": "${TELEGRAM_BOT_TOKEN}"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	return []ruleCase{
		{id: "isolation.dm_scope_main_multiuser", name: "explicit_main_open_dms", break_: func(f *fixture) {
			f.set("session.dmScope", "main")
			f.set("channels.telegram", telegram(map[string]any{"dmPolicy": "open", "allowFrom": []any{"*"}}))
		}},
		{id: "isolation.dm_scope_main_multiuser", name: "default_scope_two_senders", break_: func(f *fixture) {
			f.set("session.dmScope", nil)
			f.set("channels.telegram", telegram(map[string]any{"dmPolicy": "allowlist", "allowFrom": []any{"111", "222"}}))
		}},
		{id: "isolation.dm_scope_main_multiuser", name: "account_wildcard", break_: func(f *fixture) {
			f.set("session.dmScope", "main")
			f.set("channels.slack", map[string]any{"accounts": map[string]any{"work": map[string]any{"allowFrom": []any{"*"}}}})
		}},
		{id: "isolation.multi_user_without_cells", name: "allowfrom_users", break_: func(f *fixture) {
			f.set("channels.telegram", telegram(map[string]any{"dmPolicy": "allowlist", "allowFrom": []any{"111", "222"}}))
		}},
		{id: "isolation.multi_user_without_cells", name: "trusted_proxy_users", break_: func(f *fixture) {
			f.set("gateway.auth", map[string]any{"mode": "trusted-proxy", "trustedProxy": map[string]any{
				"userHeader": "x-forwarded-user", "allowUsers": []any{"alice@example.com", "bob@example.com"}}})
			f.set("gateway.trustedProxies", []any{"10.0.0.1"})
		}},
		{id: "isolation.multi_user_without_cells", name: "channel_accounts", break_: func(f *fixture) {
			f.set("channels.discord", map[string]any{"accounts": map[string]any{"a": map[string]any{}, "b": map[string]any{}}})
		}},
		{id: "isolation.plugins_no_allowlist", name: "extensions_dir", break_: func(f *fixture) {
			f.write("extensions/acme-tools/package.json", `{"name":"acme-tools"}`, 0o600)
		}},
		{id: "isolation.plugins_no_allowlist", name: "load_paths", break_: func(f *fixture) {
			f.set("plugins.load.paths", []any{"/opt/plugins/acme"})
		}},
		{id: "isolation.tools_broad_open_channels", name: "no_deny", break_: func(f *fixture) {
			f.set("channels.telegram", telegram(map[string]any{"groupPolicy": "open"}))
		}},
		{id: "isolation.tools_broad_open_channels", name: "profile_full", break_: func(f *fixture) {
			f.set("channels.telegram", telegram(map[string]any{"dmPolicy": "open", "allowFrom": []any{"*"}}))
			f.set("tools.profile", "full")
			f.set("tools.deny", []any{"browser"})
		}},
		{id: "isolation.elevated_open_senders", break_: func(f *fixture) {
			f.set("channels.telegram", telegram(map[string]any{"groupPolicy": "open"}))
			f.set("tools.elevated", map[string]any{"enabled": true, "allowFrom": map[string]any{"telegram": []any{"id:111"}}})
		}},
	}
}

// TestIsolationQuietWhenSafe: per-peer sessions, one allowed sender, cells,
// an allowlisted plugin and denied runtime tools raise nothing.
func TestIsolationQuietWhenSafe(t *testing.T) {
	f := newFixture(t)
	f.set("channels.telegram", map[string]any{"dmPolicy": "allowlist", "allowFrom": []any{"111"}, "groupPolicy": "open"})
	f.set("tools.deny", []any{"group:runtime"})
	f.set("tools.profile", "messaging")
	f.set("plugins.allow", []any{"acme-tools"})
	f.write("extensions/acme-tools/package.json", `{}`, 0o600)
	rep := f.run()
	for _, id := range []string{"isolation.dm_scope_main_multiuser", "isolation.multi_user_without_cells", "isolation.plugins_no_allowlist", "isolation.tools_broad_open_channels"} {
		if got := findingsOf(rep, id); len(got) > 0 {
			t.Errorf("%s fired: %+v", id, got)
		}
	}
	// Several users, but each in its own clawhold cell.
	g := newFixture(t)
	g.set("channels.telegram", map[string]any{"dmPolicy": "allowlist", "allowFrom": []any{"111", "222"}})
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "cells", "acme"), 0o700); err != nil {
		t.Fatal(err)
	}
	g.target.DataDir = data
	if got := findingsOf(g.run(), "isolation.multi_user_without_cells"); len(got) > 0 {
		t.Errorf("multi_user_without_cells fired under cells: %+v", got)
	}
}
