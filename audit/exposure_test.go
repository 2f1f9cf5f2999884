package audit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// strongToken is random-looking and long enough for every rule.
const strongToken = "9f2c4e7a1b8d3f6e0a5c9b2d7e4f1a8c"

// exposureCases break the baseline for each exposure rule.
func exposureCases() []ruleCase {
	lan := func(f *fixture) { f.set("gateway.bind", "lan") }
	plainToken := func(v string) func(f *fixture) {
		return func(f *fixture) { f.set("gateway.auth.token", v) }
	}
	trustedProxy := func(f *fixture) {
		f.set("gateway.bind", "lan")
		f.set("gateway.auth", map[string]any{"mode": "trusted-proxy", "trustedProxy": map[string]any{
			"userHeader": "x-forwarded-user", "allowUsers": []any{"alice@example.com"}}})
		f.set("gateway.trustedProxies", []any{"10.0.0.1"})
	}
	hooks := func(token string) func(f *fixture) {
		return func(f *fixture) {
			f.set("hooks", map[string]any{"enabled": true, "token": token, "path": "/hooks"})
		}
	}
	return []ruleCase{
		{id: "exposure.bind_no_auth", name: "lan_no_credential", break_: func(f *fixture) {
			lan(f)
			f.set("gateway.auth", nil)
		}},
		{id: "exposure.bind_no_auth", name: "token_mode_without_token", break_: func(f *fixture) {
			f.set("gateway.bind", "tailnet")
			f.set("gateway.auth.token", nil)
		}},
		{id: "exposure.auth_none", name: "loopback", break_: func(f *fixture) { f.set("gateway.auth", map[string]any{"mode": "none"}) }},
		{id: "exposure.auth_none", name: "lan", break_: func(f *fixture) {
			lan(f)
			f.set("gateway.auth", map[string]any{"mode": "none"})
		}},
		{id: "exposure.auth_secret_placeholder", name: "published_example", break_: plainToken("change-me-to-a-long-random-token")},
		{id: "exposure.auth_secret_placeholder", name: "blank", break_: plainToken("  ")},
		{id: "exposure.auth_secret_placeholder", name: "redaction_sentinel", break_: plainToken("__OPENCLAW_REDACTED__")},
		{id: "exposure.auth_secret_placeholder", name: "password_changeme", break_: func(f *fixture) {
			f.set("gateway.auth", map[string]any{"mode": "password", "password": "changeme123"})
		}},
		{id: "exposure.auth_secret_placeholder", name: "env_ref_resolves_to_placeholder", break_: func(f *fixture) {
			f.env["OPENCLAW_GATEWAY_TOKEN"] = "change-me-now"
		}},
		{id: "exposure.auth_secret_short", name: "token", break_: plainToken("a8F3kd92LmQz")},
		{id: "exposure.auth_secret_short", name: "password_from_env", break_: func(f *fixture) {
			f.set("gateway.auth", map[string]any{"mode": "password"})
			f.env["OPENCLAW_GATEWAY_PASSWORD"] = "Xk29fLq0"
		}},
		{id: "exposure.auth_secret_low_entropy", name: "repeated", break_: plainToken("abababababababababababababababab")},
		{id: "exposure.auth_secret_low_entropy", name: "sequence", break_: plainToken("abcdefghijklmnopqrstuvwxyz012345")},
		{id: "exposure.env_token_overrides_config", name: "plaintext_config_token", break_: func(f *fixture) {
			f.set("gateway.auth.token", strongToken)
			f.env["OPENCLAW_GATEWAY_TOKEN"] = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
		}},
		{id: "exposure.env_token_overrides_config", name: "other_secretref", break_: func(f *fixture) {
			f.set("gateway.auth.token", "${OTHER_GATEWAY_TOKEN}")
			f.env["OPENCLAW_GATEWAY_TOKEN"] = strongToken
		}},
		{id: "exposure.trusted_proxy_no_proxies", break_: func(f *fixture) {
			trustedProxy(f)
			f.set("gateway.trustedProxies", nil)
		}},
		{id: "exposure.trusted_proxy_no_user_header", break_: func(f *fixture) {
			trustedProxy(f)
			f.set("gateway.auth.trustedProxy.userHeader", nil)
		}},
		{id: "exposure.trusted_proxy_no_allowlist", break_: func(f *fixture) {
			trustedProxy(f)
			f.set("gateway.auth.trustedProxy.allowUsers", []any{})
		}},
		{id: "exposure.trusted_proxy_shared_token", name: "config", break_: func(f *fixture) {
			trustedProxy(f)
			f.set("gateway.auth.token", "${OPENCLAW_GATEWAY_TOKEN}")
		}},
		{id: "exposure.trusted_proxy_shared_token", name: "env", break_: func(f *fixture) {
			trustedProxy(f)
			f.env["OPENCLAW_GATEWAY_TOKEN"] = strongToken
		}},
		{id: "exposure.trusted_proxy_allow_loopback", break_: func(f *fixture) {
			trustedProxy(f)
			f.set("gateway.auth.trustedProxy.allowLoopback", true)
			f.set("gateway.trustedProxies", []any{"127.0.0.1"})
		}},
		{id: "exposure.control_ui_origins_wildcard", name: "loopback", break_: func(f *fixture) {
			f.set("gateway.controlUi.allowedOrigins", []any{"*"})
		}},
		{id: "exposure.control_ui_origins_wildcard", name: "lan", break_: func(f *fixture) {
			lan(f)
			f.set("gateway.controlUi.allowedOrigins", []any{"https://ok.example.com", "*"})
		}},
		{id: "exposure.control_ui_origins_missing", name: "lan", break_: func(f *fixture) {
			lan(f)
			f.set("gateway.controlUi", nil)
		}},
		{id: "exposure.control_ui_origins_missing", name: "funnel_empty_list", break_: func(f *fixture) {
			f.set("gateway.tailscale.mode", "funnel")
			f.set("gateway.controlUi.allowedOrigins", []any{})
		}},
		{id: "exposure.host_header_origin_fallback", break_: func(f *fixture) {
			f.set("gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback", true)
		}},
		{id: "exposure.dangerous_flag", name: "dangerously_key", break_: func(f *fixture) {
			f.set("browser.ssrfPolicy.dangerouslyAllowPrivateNetwork", true)
		}},
		{id: "exposure.dangerous_flag", name: "retired_device_auth", break_: func(f *fixture) {
			f.set("gateway.controlUi.dangerouslyDisableDeviceAuth", true)
		}},
		{id: "exposure.dangerous_flag", name: "retired_insecure_auth", break_: func(f *fixture) {
			f.set("gateway.controlUi.allowInsecureAuth", true)
		}},
		{id: "exposure.dangerous_flag", name: "sandbox_docker", break_: func(f *fixture) {
			f.set("agents.defaults.sandbox.docker", map[string]any{"dangerouslyAllowContainerNamespaceJoin": true})
		}},
		{id: "exposure.dangerous_flag", name: "hooks_mapping_unsafe_content", break_: func(f *fixture) {
			f.set("hooks.mappings", []any{map[string]any{"match": map[string]any{"path": "x"}, "allowUnsafeExternalContent": true}})
		}},
		{id: "exposure.dangerous_flag", name: "fs_outside_workspace", break_: func(f *fixture) { f.set("tools.fs.workspaceOnly", false) }},
		{id: "exposure.dangerous_flag", name: "audit_suppressions", break_: func(f *fixture) {
			f.set("security.audit.suppressions", []any{map[string]any{"checkId": "gateway.bind_no_auth", "reason": "x"}})
		}},
		{id: "exposure.tailscale_funnel", break_: func(f *fixture) { f.set("gateway.tailscale.mode", "funnel") }},
		{id: "exposure.mdns_full", break_: func(f *fixture) { f.set("discovery.mdns.mode", "full") }},
		{id: "exposure.real_ip_fallback", break_: func(f *fixture) { f.set("gateway.allowRealIpFallback", true) }},
		{id: "exposure.hooks_token_reuse", name: "gateway_token_from_env", break_: func(f *fixture) {
			f.env["OPENCLAW_GATEWAY_TOKEN"] = strongToken
			hooks(strongToken)(f)
		}},
		{id: "exposure.hooks_token_reuse", name: "gateway_password", break_: func(f *fixture) {
			f.set("gateway.auth", map[string]any{"mode": "password", "password": "${OPENCLAW_GATEWAY_PASSWORD}"})
			f.env["OPENCLAW_GATEWAY_PASSWORD"] = strongToken
			hooks("${HOOKS_TOKEN}")(f)
			f.env["HOOKS_TOKEN"] = strongToken
		}},
		{id: "exposure.hooks_token_short", break_: hooks("shorthookstoken")},
		{id: "exposure.hooks_path_root", break_: func(f *fixture) {
			hooks(strongToken)(f)
			f.set("hooks.path", "/")
		}},
	}
}

func TestSecretWeakness(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "placeholder"},
		{"undefined", "placeholder"},
		{" null ", "placeholder"},
		{"change-me-now", "placeholder"},
		{"change-me-to-a-strong-password", "placeholder"},
		{"[REDACTED]", "placeholder"},
		{"password123", "placeholder"},
		{"changeme-changeme-changeme", "placeholder"},
		{"openclaw2026!", "placeholder"},
		{"Zq8#kd", "short"},
		{"a8F3kd92LmQz5Tw", "short"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "low-entropy"},
		{"abcabcabcabcabcabcabcabcabcabcabc", "low-entropy"},
		{"0123456789abcdefghijklmnopqrstuv", "low-entropy"},
		{strongToken, ""},
		{"kP3vX9qL2mZ8wR4tY7nB1cF6hJ0sD5gA", ""},
		{"dGhpcyBpcyBhIHJhbmRvbSB0b2tlbiE9", ""},
	} {
		if got := secretWeakness(c.in); got != c.want {
			t.Errorf("secretWeakness(%q) = %q (%.0f bits), want %q", c.in, got, entropyBits(c.in), c.want)
		}
	}
}

func TestEnvShorthand(t *testing.T) {
	for in, want := range map[string]string{"${OPENCLAW_GATEWAY_TOKEN}": "OPENCLAW_GATEWAY_TOKEN", "$TOK_1": "TOK_1", " ${A} ": "A",
		"$lower": "", "${1BAD}": "", "plain": "", "$": "", "abc$DEF": ""} {
		got, ok := envShorthand(in)
		if got != want || ok != (want != "") {
			t.Errorf("envShorthand(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestExposureFindingsNeverQuoteSecrets: evidence shows a secret's shape
// only, even for short ones.
func TestExposureFindingsNeverQuoteSecrets(t *testing.T) {
	f := newFixture(t)
	f.set("gateway.auth.token", "Xk29fLq0zz")
	f.env["OPENCLAW_GATEWAY_TOKEN"] = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f"
	f.set("hooks", map[string]any{"enabled": true, "token": "hookhook99"})
	rep := f.run()
	for _, fd := range rep.Findings {
		for _, s := range []string{"Xk29fLq0zz", "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f", "hookhook99"} {
			if strings.Contains(fd.Evidence, s) {
				t.Errorf("%s evidence quotes a secret: %s", fd.ID, fd.Evidence)
			}
		}
	}
	if len(findingsOf(rep, "exposure.auth_secret_short")) == 0 || len(findingsOf(rep, "exposure.env_token_overrides_config")) == 0 {
		t.Errorf("expected short-token and env-override findings, got %v", ids(rep))
	}
}

func TestExposureSeverityFollowsReach(t *testing.T) {
	for _, c := range []struct {
		name string
		brk  func(f *fixture)
		id   string
		want Severity
	}{
		{"auth_none_loopback", func(f *fixture) { f.set("gateway.auth", map[string]any{"mode": "none"}) }, "exposure.auth_none", Warn},
		{"auth_none_lan", func(f *fixture) { f.set("gateway.bind", "lan"); f.set("gateway.auth", map[string]any{"mode": "none"}) }, "exposure.auth_none", Critical},
		{"mdns_lan", func(f *fixture) { f.set("gateway.bind", "lan"); f.set("discovery.mdns.mode", "full") }, "exposure.mdns_full", Critical},
		{"custom_loopback_host", func(f *fixture) {
			f.set("gateway.bind", "custom")
			f.set("gateway.customBindHost", "127.0.0.1")
			f.set("discovery.mdns.mode", "full")
		}, "exposure.mdns_full", Warn},
		{"wildcard_funnel", func(f *fixture) {
			f.set("gateway.tailscale.mode", "funnel")
			f.set("gateway.controlUi.allowedOrigins", []any{"*"})
		}, "exposure.control_ui_origins_wildcard", Critical},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.brk(f)
			got := findingsOf(f.run(), c.id)
			if len(got) != 1 || got[0].Severity != c.want {
				t.Fatalf("%s: got %+v, want one %s", c.id, got, c.want)
			}
		})
	}
}

// TestExposureOpenClawWrittenConfig audits a config written by the real
// OpenClaw CLI (`openclaw config set`) with the gateway on the LAN and auth
// off, and checks the finding points at the key's line in that file.
func TestExposureOpenClawWrittenConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the OpenClaw CLI")
	}
	inst := openclawtest.Install(t)
	home := filepath.Join(t.TempDir(), "home")
	if err := os.MkdirAll(filepath.Join(home, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, kv := range [][2]string{{"gateway.bind", "lan"}, {"gateway.auth.mode", "none"}} {
		if out, err := inst.Command(ctx, home, "config", "set", kv[0], kv[1]).CombinedOutput(); err != nil {
			t.Fatalf("openclaw config set %s %s: %v\n%s", kv[0], kv[1], err, out)
		}
	}
	state := filepath.Join(home, ".openclaw")
	tg, err := NewTarget(state, "", map[string]string{"HOME": home})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, tg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("findings on the CLI-written config (%v): %v", rep.Duration, ids(rep))
	got := findingsOf(rep, "exposure.auth_none")
	if len(got) != 1 {
		t.Fatalf("exposure.auth_none: got %v (all: %v)", got, ids(rep))
	}
	loc := got[0].Location
	if loc.File != filepath.Join(state, "openclaw.json") || loc.Key != "gateway.auth.mode" || loc.Line <= 0 || got[0].Severity != Critical {
		t.Errorf("finding %+v: want critical at %s gateway.auth.mode with a line", got[0], filepath.Join(state, "openclaw.json"))
	}
	src, _ := os.ReadFile(loc.File)
	if lines := strings.Split(string(src), "\n"); loc.Line > len(lines) || !strings.Contains(lines[loc.Line-1], `"mode"`) {
		t.Errorf("line %d of the CLI's config is not the mode key:\n%s", loc.Line, src)
	}
	if len(findingsOf(rep, "exposure.control_ui_origins_missing")) != 1 {
		t.Errorf("exposure.control_ui_origins_missing did not fire on a LAN bind without allowedOrigins: %v", ids(rep))
	}
}
