package audit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Isolation rules: whether one user's conversations, tools and plugins
// stay apart from another's.
var (
	ruleDMScopeMain = Rule{ID: "isolation.dm_scope_main_multiuser", Area: Isolation, Severity: Warn, // openclaw: channels.<provider>.dm.scope_main_multiuser
		Title:       "Several DM senders share the main session (openclaw: channels.<provider>.dm.scope_main_multiuser)",
		Remediation: `Set session.dmScope to "per-channel-peer" (or "per-account-channel-peer") so each sender gets their own session.`}
	ruleMultiUserNoCells = Rule{ID: "isolation.multi_user_without_cells", Area: Isolation, Severity: Warn, // openclaw: security.trust_model.multi_user_heuristic
		Title:       "Several users share one OpenClaw gateway instead of one cell per tenant (openclaw: security.trust_model.multi_user_heuristic)",
		Remediation: "Run one cell per tenant with `clawhold up` (tenants.<name> in clawhold.yaml), or keep one gateway per user: OpenClaw's trust model is one personal assistant per gateway."}
	rulePluginsNoAllow = Rule{ID: "isolation.plugins_no_allowlist", Area: Isolation, Severity: Warn, // openclaw: plugins.extensions_no_allowlist
		Title:       "Plugins are installed without plugins.allow (openclaw: plugins.extensions_no_allowlist)",
		Remediation: "Set plugins.allow to the ids of the plugins you use (e.g. [\"my-plugin\"]) and remove the others from the extensions directory."}
	ruleToolsBroad = Rule{ID: "isolation.tools_broad_open_channels", Area: Isolation, Severity: Warn, // openclaw: security.exposure.open_groups_with_runtime_or_fs
		Title:       "Open channels reach a broad tool set (openclaw: security.exposure.open_groups_with_runtime_or_fs)",
		Remediation: `Set tools.profile to "messaging" (or "minimal") and tools.deny to at least ["group:runtime", "group:fs", "gateway", "plugins"], or close the channels (dmPolicy "pairing" or "allowlist", groupPolicy "allowlist").`}
	ruleElevatedOpen = Rule{ID: "isolation.elevated_open_senders", Area: Isolation, Severity: Critical, // openclaw: security.exposure.open_groups_with_elevated
		Title:       "Elevated tools are enabled while channels accept any sender (openclaw: security.exposure.open_groups_with_elevated)",
		Remediation: `Set tools.elevated.enabled to false, or close the open channels (dmPolicy "pairing" or "allowlist", groupPolicy "allowlist", no "*" in allowFrom).`}
)

func isolationChecks() []check {
	return []check{
		{name: "isolation.sessions", rules: []Rule{ruleDMScopeMain, ruleMultiUserNoCells}, run: checkSessionIsolation},
		{name: "isolation.tools", rules: []Rule{rulePluginsNoAllow, ruleToolsBroad, ruleElevatedOpen}, run: checkToolIsolation},
	}
}

// channelSurface is one channel, or one account of a channel, with the
// policies it inherits from the channel when it sets none.
type channelSurface struct {
	key         string // config path: channels.telegram, channels.slack.accounts.work
	provider    string
	dmPolicy    string // pairing (default) | allowlist | open | disabled
	groupPolicy string // allowlist (default) | open | disabled
	allowFrom   []string
}

// openDM reports whether anyone can DM the surface.
func (s channelSurface) openDM() bool {
	return s.dmPolicy == "open" || s.dmPolicy != "disabled" && slices.Contains(s.allowFrom, "*")
}

// open reports whether anyone can reach the agent through the surface.
func (s channelSurface) open() bool { return s.openDM() || s.groupPolicy == "open" }

func (s channelSurface) String() string {
	var p []string
	if s.dmPolicy == "open" {
		p = append(p, `dmPolicy "open"`)
	}
	if s.groupPolicy == "open" {
		p = append(p, `groupPolicy "open"`)
	}
	if slices.Contains(s.allowFrom, "*") {
		p = append(p, `allowFrom "*"`)
	}
	if len(p) == 0 {
		p = append(p, fmt.Sprintf("%d senders in allowFrom", len(s.allowFrom)))
	}
	return s.key + " (" + strings.Join(p, ", ") + ")"
}

// channelSurfaces lists the enabled channels and channel accounts of c.
func channelSurfaces(c *Config) []channelSurface {
	var out []channelSurface
	for _, p := range c.Keys("channels") {
		base := "channels." + p
		if _, ok := mustGet[map[string]any](c, base); !ok || p == "defaults" {
			continue
		}
		if v, set := c.Bool(base + ".enabled"); set && !v {
			continue
		}
		parent := channelSurface{key: base, provider: p, dmPolicy: c.String(base + ".dmPolicy"),
			groupPolicy: c.String(base + ".groupPolicy"), allowFrom: trimmed(c.Strings(base + ".allowFrom"))}
		if parent.dmPolicy == "" {
			parent.dmPolicy = "pairing"
		}
		if parent.groupPolicy == "" {
			parent.groupPolicy = "allowlist"
		}
		out = append(out, parent)
		for _, a := range c.Keys(base + ".accounts") {
			k := base + ".accounts." + a
			if v, set := c.Bool(k + ".enabled"); set && !v {
				continue
			}
			s := parent
			s.key = k
			if v := c.String(k + ".dmPolicy"); v != "" {
				s.dmPolicy = v
			}
			if v := c.String(k + ".groupPolicy"); v != "" {
				s.groupPolicy = v
			}
			if _, ok := c.Get(k + ".allowFrom"); ok {
				s.allowFrom = trimmed(c.Strings(k + ".allowFrom"))
			}
			out = append(out, s)
		}
	}
	return out
}

func trimmed(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// openSurfaces returns the surfaces anyone can reach.
func openSurfaces(c *Config) []channelSurface {
	var out []channelSurface
	for _, s := range channelSurfaces(c) {
		if s.open() {
			out = append(out, s)
		}
	}
	return out
}

func surfaceKeys(ss []channelSurface) string {
	var out []string
	for _, s := range ss {
		out = append(out, s.String())
	}
	return strings.Join(out, "; ")
}

// underCells reports whether the target runs as a clawhold cell: clawhold's
// data dir holds cells, or the config is a cell's generated one.
func underCells(t *Target) bool {
	if t.DataDir != "" {
		if ents, err := os.ReadDir(filepath.Join(t.DataDir, "cells")); err == nil {
			for _, e := range ents {
				if e.IsDir() {
					return true
				}
			}
		}
	}
	dir := filepath.Dir(t.ConfigPath)
	return filepath.Base(dir) == "config" && filepath.Base(filepath.Dir(filepath.Dir(dir))) == "cells"
}

func checkSessionIsolation(_ context.Context, t *Target, r *results) {
	c := t.Config
	if c == nil {
		return
	}
	scope := c.String("session.dmScope")
	if scope == "" || scope == "main" {
		var shared []channelSurface
		for _, s := range channelSurfaces(c) {
			if s.dmPolicy != "disabled" && (s.openDM() || len(s.allowFrom) >= 2) {
				shared = append(shared, s)
			}
		}
		if len(shared) > 0 {
			desc := `session.dmScope is "main"`
			if scope == "" {
				desc = `session.dmScope is unset (default "main")`
			}
			r.add(ruleDMScopeMain.ID, c.Loc("session.dmScope"), desc+" and several senders can DM: "+surfaceKeys(shared))
		}
	}
	if underCells(t) {
		return
	}
	var signals []string
	var first string
	note := func(key, s string) {
		if first == "" {
			first = key
		}
		signals = append(signals, s)
	}
	users := map[string]bool{}
	var userKey string
	for _, s := range channelSurfaces(c) {
		for _, u := range s.allowFrom {
			if u != "*" {
				users[s.provider+":"+u] = true
				if userKey == "" {
					userKey = s.key + ".allowFrom"
				}
			}
		}
	}
	if len(users) >= 2 {
		note(userKey, fmt.Sprintf("%d distinct senders in channel allowFrom lists", len(users)))
	}
	if n := len(trimmed(c.Strings("gateway.auth.trustedProxy.allowUsers"))); n >= 2 && c.String("gateway.auth.mode") == "trusted-proxy" {
		note("gateway.auth.trustedProxy.allowUsers", fmt.Sprintf("%d users in gateway.auth.trustedProxy.allowUsers", n))
	}
	for _, p := range c.Keys("channels") {
		if n := len(c.Keys("channels." + p + ".accounts")); n >= 2 {
			note("channels."+p+".accounts", fmt.Sprintf("%d accounts under channels.%s.accounts", n, p))
		}
	}
	if len(signals) > 0 {
		r.add(ruleMultiUserNoCells.ID, c.Loc(first), "the config serves several users ("+strings.Join(signals, "; ")+") from one gateway and it is not a clawhold cell")
	}
}

// installedPlugins lists the plugins installed outside OpenClaw's bundle:
// the extensions dir of the state dir and plugins.load.paths.
func installedPlugins(t *Target) []string {
	var out []string
	if ents, err := os.ReadDir(filepath.Join(t.StateDir, "extensions")); err == nil {
		for _, e := range ents {
			if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				out = append(out, e.Name())
			}
		}
	}
	out = append(out, trimmed(t.Config.Strings("plugins.load.paths"))...)
	sort.Strings(out)
	return out
}

// toolsDenied reports whether tools.deny (or the deny at prefix) holds one
// of names.
func toolsDenied(c *Config, prefix string, names ...string) bool {
	for _, d := range c.Strings(prefix + "tools.deny") {
		d = strings.TrimSpace(d)
		if d == "*" || slices.Contains(names, d) {
			return true
		}
	}
	return false
}

func checkToolIsolation(_ context.Context, t *Target, r *results) {
	c := t.Config
	if c == nil {
		return
	}
	if p := installedPlugins(t); len(p) > 0 && len(trimmed(c.Strings("plugins.allow"))) == 0 {
		r.add(rulePluginsNoAllow.ID, c.Loc("plugins.allow"), fmt.Sprintf("plugins.allow is empty or unset and %d plugin(s) are installed: %s", len(p), strings.Join(p, ", ")))
	}
	open := openSurfaces(c)
	if len(open) == 0 {
		return
	}
	profile := c.String("tools.profile")
	deny := trimmed(c.Strings("tools.deny"))
	if profile == "full" || len(deny) == 0 {
		var why []string
		key := "tools.deny"
		if profile == "full" {
			why = append(why, `tools.profile is "full"`)
			key = "tools.profile"
		}
		if len(deny) == 0 {
			why = append(why, "tools.deny is empty or unset")
		}
		r.add(ruleToolsBroad.ID, c.Loc(key), strings.Join(why, " and ")+" while channels are open: "+surfaceKeys(open))
	}
	if v, _ := c.Bool("tools.elevated.enabled"); v && !toolsDenied(c, "", "exec", "group:runtime") {
		r.add(ruleElevatedOpen.ID, c.Loc("tools.elevated.enabled"), "tools.elevated.enabled is true while channels accept any sender: "+surfaceKeys(open))
	}
}
