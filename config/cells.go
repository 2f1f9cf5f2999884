package config

import (
	"fmt"
	"time"
)

// Cells configures the tenant cells clawhold up runs: one sandboxed
// OpenClaw gateway per tenant. See docs/cells.md.
type Cells struct {
	// OpenClawDir is where the pinned OpenClaw is provisioned (default
	// <data dir>/openclaw).
	OpenClawDir string `yaml:"openclaw_dir"`
	// OpenClawConfig is a JSON file merged into every cell's generated
	// openclaw.json (models, agents, tools). Keys clawhold owns (gateway
	// auth and proxies, proxy, plugins.allow, secrets.providers.clawhold,
	// logging, discovery) cannot be set there.
	OpenClawConfig string `yaml:"openclaw_config"`
	// StartTimeout bounds a cell's start, to its first 200 from /readyz.
	StartTimeout Duration `yaml:"start_timeout"`
	// IdleTimeout stops a cell no request has reached for this long (scale
	// to zero); 0 keeps cells running.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// EncryptedState keeps each cell's state dir on disk only as
	// ciphertext (cellfs, a FUSE filesystem mounted in the cell alone).
	// Default true; it needs /dev/fuse.
	EncryptedState bool `yaml:"encrypted_state"`
	// ToolRules decide each tool call the cells report, first match wins;
	// a call no rule matches is allowed (OpenClaw's own tool policy still
	// applies).
	ToolRules []ToolRule `yaml:"tool_rules"`
}

// ToolRule allows or denies the tool calls of one tool ("*": any).
type ToolRule struct {
	Tool   string `yaml:"tool"`
	Action string `yaml:"action"` // allow | deny
	Reason string `yaml:"reason"` // shown to the agent when denied
}

// Tenant is the per-tenant configuration, under tenants.<name>.
type Tenant struct {
	// EgressPolicy names the policy under egress.policies the tenant's cell
	// uses (default: the policy named like the tenant, else "default").
	EgressPolicy string `yaml:"egress_policy"`
	// OpenClawConfig is merged after cells.openclaw_config.
	OpenClawConfig string `yaml:"openclaw_config"`
}

func defaultCells() Cells {
	return Cells{
		StartTimeout:   Duration(2 * time.Minute),
		IdleTimeout:    Duration(30 * time.Minute),
		EncryptedState: true,
	}
}

func (v *validator) cells(c Cells, tenants map[string]Tenant, policies map[string]EgressPolicy) {
	v.absPath("cells.openclaw_dir", c.OpenClawDir)
	v.absPath("cells.openclaw_config", c.OpenClawConfig)
	if c.StartTimeout < Duration(5*time.Second) {
		v.errorf("cells.start_timeout", "cells.start_timeout is %s: OpenClaw needs several seconds to start; use at least 5s (default 2m)", c.StartTimeout)
	}
	if c.IdleTimeout < 0 {
		v.errorf("cells.idle_timeout", "cells.idle_timeout is %s: use 0 to keep cells running, or a positive duration (default 30m)", c.IdleTimeout)
	}
	for i, r := range c.ToolRules {
		key := fmt.Sprintf("cells.tool_rules[%d]", i)
		if r.Tool == "" {
			v.errorf(key+".tool", "%s.tool is empty: name a tool (e.g. exec) or * for any", key)
		}
		v.oneOf(key+".action", r.Action, "allow", "deny")
	}
	for name, t := range tenants {
		key := "tenants." + name
		v.absPath(key+".openclaw_config", t.OpenClawConfig)
		if t.EgressPolicy != "" {
			if _, ok := policies[t.EgressPolicy]; !ok {
				v.errorf(key+".egress_policy", "%s.egress_policy is %q, which is not under egress.policies: define it or remove the key", key, t.EgressPolicy)
			}
		}
	}
}

// EgressPolicyFor returns the egress policy of tenant's cell.
func (c *Config) EgressPolicyFor(tenant string) string {
	if p := c.Tenants[tenant].EgressPolicy; p != "" {
		return p
	}
	if _, ok := c.Egress.Policies[tenant]; ok {
		return tenant
	}
	return "default"
}
