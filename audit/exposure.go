package audit

import (
	"context"
	"crypto/subtle"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Exposure rules: who can reach the gateway and with what credential.
// Where OpenClaw's `security audit` has the same check, its checkId is
// noted as "openclaw: <checkId>" so the merge step can fold the two.
var (
	ruleBindNoAuth = Rule{ID: "exposure.bind_no_auth", Area: Deployment, Severity: Critical, // openclaw: gateway.bind_no_auth
		Title:       "Gateway binds beyond loopback without auth (openclaw: gateway.bind_no_auth)",
		Remediation: `Set gateway.bind to "loopback", or set gateway.auth.mode to "token" with a long random gateway.auth.token (a SecretRef, e.g. {source:"env",provider:"default",id:"OPENCLAW_GATEWAY_TOKEN"}), or put an authenticating proxy in front with gateway.auth.mode "trusted-proxy".`,
		Fixable:     true}
	ruleAuthNone = Rule{ID: "exposure.auth_none", Area: Deployment, Severity: Warn, // openclaw: gateway.http.no_auth, gateway.loopback_no_auth, gateway.bind_no_auth
		Title:       `Gateway auth mode is "none" (openclaw: gateway.http.no_auth)`,
		Remediation: `Set gateway.auth.mode to "token" and gateway.auth.token to a SecretRef holding a long random token (openssl rand -hex 32), or to "trusted-proxy" behind an authenticating proxy.`,
		Fixable:     true}
	ruleSecretPlaceholder = Rule{ID: "exposure.auth_secret_placeholder", Area: Deployment, Severity: Critical, // openclaw: gateway.token_placeholder_value, gateway.password_placeholder_value
		Title:       "Gateway token or password is blank, a placeholder or a published example (openclaw: gateway.token_placeholder_value)",
		Remediation: "Replace the credential with a long random secret (openssl rand -hex 32) kept in a SecretRef, e.g. gateway.auth.token: {source: \"env\", provider: \"default\", id: \"OPENCLAW_GATEWAY_TOKEN\"}; `clawhold audit --fix` generates one.",
		Fixable:     true}
	ruleSecretShort = Rule{ID: "exposure.auth_secret_short", Area: Deployment, Severity: Warn, // openclaw: gateway.token_too_short, gateway.password_too_short
		Title:       "Gateway token or password is shorter than 24 characters (openclaw: gateway.token_too_short)",
		Remediation: "Use a random secret of at least 32 characters (openssl rand -hex 32) for gateway.auth.token or gateway.auth.password; `clawhold audit --fix` generates one.",
		Fixable:     true}
	ruleSecretLowEntropy = Rule{ID: "exposure.auth_secret_low_entropy", Area: Deployment, Severity: Warn,
		Title:       "Gateway token or password is long but guessable (low estimated entropy)",
		Remediation: "Replace it with a random secret (openssl rand -hex 32) rather than a phrase, a repeated or sequential string; `clawhold audit --fix` generates one.",
		Fixable:     true}
	ruleEnvTokenOverride = Rule{ID: "exposure.env_token_overrides_config", Area: Deployment, Severity: Warn, // openclaw: gateway.env_token_overrides_config
		Title:       "OPENCLAW_GATEWAY_TOKEN differs from the configured gateway.auth.token (openclaw: gateway.env_token_overrides_config)",
		Remediation: `Unset OPENCLAW_GATEWAY_TOKEN (shell, ~/.openclaw/.env, service unit), or make it canonical with gateway.auth.token: {source: "env", provider: "default", id: "OPENCLAW_GATEWAY_TOKEN"}.`}
	ruleTPNoProxies = Rule{ID: "exposure.trusted_proxy_no_proxies", Area: Deployment, Severity: Critical, // openclaw: gateway.trusted_proxy_no_proxies
		Title:       "Trusted-proxy auth without gateway.trustedProxies (openclaw: gateway.trusted_proxy_no_proxies)",
		Remediation: "Set gateway.trustedProxies to the exact IP(s) of the authenticating reverse proxy (not a subnet)."}
	ruleTPNoUserHeader = Rule{ID: "exposure.trusted_proxy_no_user_header", Area: Deployment, Severity: Critical, // openclaw: gateway.trusted_proxy_no_user_header
		Title:       "Trusted-proxy auth without gateway.auth.trustedProxy.userHeader (openclaw: gateway.trusted_proxy_no_user_header)",
		Remediation: `Set gateway.auth.trustedProxy.userHeader to the identity header the proxy overwrites, e.g. "x-forwarded-user".`}
	ruleTPNoAllowlist = Rule{ID: "exposure.trusted_proxy_no_allowlist", Area: Deployment, Severity: Warn, // openclaw: gateway.trusted_proxy_no_allowlist
		Title:       "Trusted-proxy auth admits any user the proxy authenticates (openclaw: gateway.trusted_proxy_no_allowlist)",
		Remediation: `Set gateway.auth.trustedProxy.allowUsers to the immutable identities allowed in (e.g. issuer-qualified OIDC subjects).`}
	ruleTPSharedToken = Rule{ID: "exposure.trusted_proxy_shared_token", Area: Deployment, Severity: Critical,
		Title:       "Trusted-proxy auth with a shared gateway token configured",
		Remediation: "Remove gateway.auth.token and unset OPENCLAW_GATEWAY_TOKEN: a shared token bypasses the proxy's per-user identity, and OpenClaw refuses to start with both."}
	ruleTPAllowLoopback = Rule{ID: "exposure.trusted_proxy_allow_loopback", Area: Deployment, Severity: Warn, // openclaw: gateway.trusted_proxy_allow_loopback
		Title:       "Trusted-proxy auth accepts loopback sources (openclaw: gateway.trusted_proxy_allow_loopback)",
		Remediation: "Set gateway.auth.trustedProxy.allowLoopback to false (and remove 127.0.0.1/::1 from gateway.trustedProxies) unless a same-host proxy is the deliberate trust boundary: any local process can forge identity headers."}
	ruleOriginsWildcard = Rule{ID: "exposure.control_ui_origins_wildcard", Area: Deployment, Severity: Warn, // openclaw: gateway.control_ui.allowed_origins_wildcard
		Title:       `Control UI allowed origins contain "*" (openclaw: gateway.control_ui.allowed_origins_wildcard)`,
		Remediation: `Replace "*" in gateway.controlUi.allowedOrigins with the exact origins that serve the Control UI, e.g. ["https://openclaw.example.com"].`}
	ruleOriginsMissing = Rule{ID: "exposure.control_ui_origins_missing", Area: Deployment, Severity: Critical, // openclaw: gateway.control_ui.allowed_origins_required
		Title:       "Control UI reachable beyond loopback without allowed origins (openclaw: gateway.control_ui.allowed_origins_required)",
		Remediation: `Set gateway.controlUi.allowedOrigins to the exact origins that serve the Control UI, or gateway.controlUi.enabled to false.`}
	ruleHostHeaderFallback = Rule{ID: "exposure.host_header_origin_fallback", Area: Deployment, Severity: Warn, // openclaw: gateway.control_ui.host_header_origin_fallback
		Title:       "Control UI Host-header origin fallback enabled (openclaw: gateway.control_ui.host_header_origin_fallback)",
		Remediation: "Remove gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback (or set it to false) and list the origins in gateway.controlUi.allowedOrigins."}
	ruleDangerousFlag = Rule{ID: "exposure.dangerous_flag", Area: Deployment, Severity: Warn, // openclaw: config.insecure_or_dangerous_flags
		Title:       "Insecure or dangerous config flag enabled, current or retired (openclaw: config.insecure_or_dangerous_flags)",
		Remediation: "Remove the key named in the evidence (or set it back to its safe default); retired keys are removed by `openclaw doctor --fix`."}
	ruleTailscaleFunnel = Rule{ID: "exposure.tailscale_funnel", Area: Deployment, Severity: Critical, // openclaw: gateway.tailscale_funnel
		Title:       "Tailscale Funnel publishes the gateway on the internet (openclaw: gateway.tailscale_funnel)",
		Remediation: `Set gateway.tailscale.mode to "serve" (tailnet only) or "off".`}
	ruleMDNSFull = Rule{ID: "exposure.mdns_full", Area: Deployment, Severity: Warn, // openclaw: discovery.mdns_full_mode
		Title:       "mDNS full mode advertises host metadata on the local network (openclaw: discovery.mdns_full_mode)",
		Remediation: `Set discovery.mdns.mode to "off" (or "minimal").`,
		Fixable:     true}
	ruleRealIPFallback = Rule{ID: "exposure.real_ip_fallback", Area: Deployment, Severity: Warn, // openclaw: gateway.real_ip_fallback_enabled
		Title:       "X-Real-IP fallback trusted (openclaw: gateway.real_ip_fallback_enabled)",
		Remediation: "Set gateway.allowRealIpFallback to false and have the proxy overwrite X-Forwarded-For."}
	ruleHooksTokenReuse = Rule{ID: "exposure.hooks_token_reuse", Area: Deployment, Severity: Critical, // openclaw: hooks.token_reuse_gateway_token
		Title:       "Hooks token equals the gateway token or password (openclaw: hooks.token_reuse_gateway_token)",
		Remediation: "Give hooks.token its own random secret (openssl rand -hex 32), distinct from gateway.auth.token and gateway.auth.password."}
	ruleHooksTokenShort = Rule{ID: "exposure.hooks_token_short", Area: Deployment, Severity: Warn, // openclaw: hooks.token_too_short
		Title:       "Hooks token is shorter than 24 characters (openclaw: hooks.token_too_short)",
		Remediation: "Set hooks.token to a random secret of at least 32 characters (openssl rand -hex 32)."}
	ruleHooksPathRoot = Rule{ID: "exposure.hooks_path_root", Area: Deployment, Severity: Critical, // openclaw: hooks.path_root
		Title:       `Hooks base path is "/" (openclaw: hooks.path_root)`,
		Remediation: `Set hooks.path to a dedicated path such as "/hooks".`}
)

// minSecretLen is OpenClaw's threshold for a short gateway or hooks secret.
const minSecretLen = 24

// minSecretBits is the entropy estimate below which a long secret is
// still guessable: 64 bits is far below a 32-hex-digit random token (128).
const minSecretBits = 64

func exposureChecks() []check {
	return []check{
		{name: "exposure.gateway", rules: []Rule{ruleBindNoAuth, ruleAuthNone, ruleSecretPlaceholder, ruleSecretShort,
			ruleSecretLowEntropy, ruleEnvTokenOverride, ruleTailscaleFunnel, ruleMDNSFull, ruleRealIPFallback}, run: checkGatewayAuth},
		{name: "exposure.trusted_proxy", rules: []Rule{ruleTPNoProxies, ruleTPNoUserHeader, ruleTPNoAllowlist, ruleTPSharedToken,
			ruleTPAllowLoopback}, run: checkTrustedProxy},
		{name: "exposure.control_ui", rules: []Rule{ruleOriginsWildcard, ruleOriginsMissing, ruleHostHeaderFallback}, run: checkControlUI},
		{name: "exposure.flags", rules: []Rule{ruleDangerousFlag}, run: checkDangerousFlags},
		{name: "exposure.hooks", rules: []Rule{ruleHooksTokenReuse, ruleHooksTokenShort, ruleHooksPathRoot}, run: checkHooks},
	}
}

// gatewayExposed reports whether the gateway is reachable beyond
// loopback: a non-loopback bind or Tailscale Funnel.
func gatewayExposed(c *Config) bool {
	return !loopbackBind(c) || c.String("gateway.tailscale.mode") == "funnel"
}

// loopbackBind reports whether gateway.bind keeps the gateway on loopback
// (OpenClaw's default when unset).
func loopbackBind(c *Config) bool {
	switch c.String("gateway.bind") {
	case "", "loopback":
		return true
	case "custom":
		a, err := netip.ParseAddr(c.String("gateway.customBindHost"))
		return err == nil && a.IsLoopback()
	}
	return false
}

func bindDesc(c *Config) string {
	b := c.String("gateway.bind")
	if b == "" {
		b = "loopback"
	}
	if c.String("gateway.tailscale.mode") == "funnel" {
		return fmt.Sprintf("gateway.bind is %q with Tailscale Funnel on", b)
	}
	return fmt.Sprintf("gateway.bind is %q", b)
}

// secretInput is a credential as the config gives it: a plaintext string,
// or a SecretRef (object or "${NAME}"/"$NAME" env shorthand).
type secretInput struct {
	set       bool
	plaintext bool   // the value is in the config itself
	ref       string // "env:default:NAME" for a SecretRef
	envID     string // the variable of an env SecretRef
	value     string // the value, when known (plaintext or env found in t.Env)
	known     bool
	origin    string // where the value came from, for evidence
}

// readSecret resolves the credential at key, consulting only t.Env (never
// a file or exec provider: the native audit runs nothing).
func readSecret(t *Target, key string) secretInput {
	v, ok := t.Config.Get(key)
	if !ok || v == nil {
		return secretInput{}
	}
	switch x := v.(type) {
	case string:
		if id, ok := envShorthand(x); ok {
			s := secretInput{set: true, ref: "env:default:" + id, envID: id, origin: "$" + id}
			s.value, s.known = t.Env[id]
			return s
		}
		return secretInput{set: true, plaintext: true, value: x, known: true, origin: key + " in " + filepath.Base(t.Config.Path)}
	case map[string]any:
		src, _ := x["source"].(string)
		id, _ := x["id"].(string)
		prov, _ := x["provider"].(string)
		if prov == "" {
			prov = "default"
		}
		s := secretInput{set: true, ref: src + ":" + prov + ":" + id}
		if src == "env" && id != "" {
			s.envID, s.origin = id, "$"+id
			s.value, s.known = t.Env[id]
		}
		return s
	}
	return secretInput{set: true}
}

// envShorthand parses OpenClaw's "${NAME}" and "$NAME" env SecretRef forms.
func envShorthand(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "${") && strings.HasSuffix(s, "}") {
		s = "$" + s[2:len(s)-1]
	}
	if len(s) < 2 || s[0] != '$' || len(s) > 129 {
		return "", false
	}
	name := s[1:]
	for i, r := range name {
		if !(r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '_')) {
			return "", false
		}
	}
	return name, true
}

// gatewaySecret is the effective token or password (kind) of the gateway:
// the config's value, else the OPENCLAW_GATEWAY_* variable.
func gatewaySecret(t *Target, kind string) secretInput {
	s := readSecret(t, "gateway.auth."+kind)
	if s.set {
		return s
	}
	env := "OPENCLAW_GATEWAY_" + strings.ToUpper(kind)
	if v, ok := t.Env[env]; ok && strings.TrimSpace(v) != "" {
		return secretInput{set: true, envID: env, value: v, known: true, origin: "$" + env}
	}
	return secretInput{}
}

// authMode is gateway.auth.mode, or the mode OpenClaw infers from the
// credentials present ("" when there are none).
func authMode(t *Target) string {
	if m := t.Config.String("gateway.auth.mode"); m != "" {
		return m
	}
	if gatewaySecret(t, "token").set {
		return "token"
	}
	if gatewaySecret(t, "password").set {
		return "password"
	}
	return ""
}

// placeholderSecrets are values that are no credential: what blank input
// and JavaScript string coercion leave, OpenClaw's published examples
// (known-weak-gateway-secrets) and its redaction sentinels (redact-sentinel).
var placeholderSecrets = map[string]bool{
	"": true, "undefined": true, "null": true,
	"change-me-to-a-long-random-token": true, "change-me-now": true, "change-me-to-a-strong-password": true,
	"__OPENCLAW_REDACTED__": true, "REDACTED": true, "xoxb-REDACTED": true, "xapp-REDACTED": true, "***": true,
	"[redacted]": true, "[REDACTED]": true, "<redacted>": true, "[REDACTED_PRIVATE_KEY]": true, "[REDACTED CREDENTIAL]": true,
}

// commonWeakSecrets are words operators type for a "temporary" secret;
// any of them, whatever its length, is guessed first.
var commonWeakSecrets = []string{"changeme", "change-me", "password", "secret", "openclaw", "letmein", "admin", "token", "example", "test", "default", "qwerty"}

// secretWeakness classifies a secret value: "placeholder", "short",
// "low-entropy" or "" when it looks random enough.
func secretWeakness(v string) string {
	s := strings.TrimSpace(v)
	if placeholderSecrets[s] {
		return "placeholder"
	}
	l := strings.ToLower(s)
	for _, w := range commonWeakSecrets {
		if l == w || strings.Trim(strings.ReplaceAll(l, w, ""), "-_.0123456789!") == "" {
			return "placeholder"
		}
	}
	if len(s) < minSecretLen {
		return "short"
	}
	if entropyBits(s) < minSecretBits {
		return "low-entropy"
	}
	return ""
}

// entropyBits estimates a secret's entropy: the lesser of its length times
// the Shannon entropy of its characters and its length times the log of
// the alphabet its character classes span, with runs and sequences
// (aaaa, abcd, 1234) counted as one character each.
func entropyBits(s string) float64 {
	if s == "" {
		return 0
	}
	// Effective length: a character continuing a run or a ±1 sequence
	// adds almost nothing an attacker has to guess.
	eff := 1.0
	for i := 1; i < len(s); i++ {
		d := int(s[i]) - int(s[i-1])
		if d >= -1 && d <= 1 {
			continue
		}
		eff++
	}
	counts := map[rune]int{}
	n := 0
	var lower, upper, digit, other bool
	for _, r := range s {
		counts[r]++
		n++
		switch {
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		case r >= '0' && r <= '9':
			digit = true
		default:
			other = true
		}
	}
	shannon := 0.0
	for _, c := range counts {
		p := float64(c) / float64(n)
		shannon -= p * math.Log2(p)
	}
	alphabet := 0
	for _, c := range []struct {
		in   bool
		size int
	}{{lower, 26}, {upper, 26}, {digit, 10}, {other, 33}} {
		if c.in {
			alphabet += c.size
		}
	}
	return min(eff*shannon, eff*math.Log2(float64(alphabet)))
}

func checkGatewayAuth(_ context.Context, t *Target, r *results) {
	c := t.Config
	if c == nil {
		return
	}
	exposed := gatewayExposed(c)
	mode := authMode(t)
	switch {
	case mode == "none":
		f := r.add(ruleAuthNone.ID, c.Loc("gateway.auth.mode"), fmt.Sprintf(`gateway.auth.mode is "none" and %s`, bindDesc(c)))
		if exposed {
			f.Severity = Critical
		}
	case mode == "trusted-proxy":
	case exposed && (mode == "" || !gatewaySecret(t, mode).set):
		m := mode
		if m == "" {
			m = "unset"
		}
		r.add(ruleBindNoAuth.ID, c.Loc("gateway.bind"), fmt.Sprintf("%s and gateway.auth.mode is %q with no token or password configured", bindDesc(c), m))
	}
	for _, kind := range []string{"token", "password"} {
		if mode != kind {
			continue
		}
		s := gatewaySecret(t, kind)
		if !s.set || !s.known {
			continue // an unresolved SecretRef is not weak by itself
		}
		loc := c.Loc("gateway.auth." + kind)
		if _, inCfg := c.Get("gateway.auth." + kind); !inCfg {
			loc = c.Loc("gateway.auth.mode")
		}
		what := fmt.Sprintf("the gateway %s (from %s) is %s", kind, s.origin, redact(s.value))
		switch secretWeakness(s.value) {
		case "placeholder":
			r.add(ruleSecretPlaceholder.ID, loc, what+": blank, a common word or a published placeholder")
		case "short":
			r.add(ruleSecretShort.ID, loc, fmt.Sprintf("%s, fewer than %d characters", what, minSecretLen))
		case "low-entropy":
			f := r.add(ruleSecretLowEntropy.ID, loc, fmt.Sprintf("%s with about %.0f bits of estimated entropy (want %d or more)", what, entropyBits(strings.TrimSpace(s.value)), minSecretBits))
			if exposed {
				f.Severity = Critical
			}
		}
	}
	// An env token that differs from the configured one: clients and the
	// service disagree on which credential is current.
	if envTok, ok := t.Env["OPENCLAW_GATEWAY_TOKEN"]; ok && strings.TrimSpace(envTok) != "" &&
		c.String("gateway.mode") != "remote" && (mode == "token" || mode == "") {
		cfgTok := readSecret(t, "gateway.auth.token")
		if cfgTok.set && cfgTok.envID != "OPENCLAW_GATEWAY_TOKEN" &&
			!(cfgTok.known && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(cfgTok.value)), []byte(strings.TrimSpace(envTok))) == 1) {
			src := "a plaintext token"
			if !cfgTok.plaintext {
				src = "SecretRef " + cfgTok.ref
			}
			r.add(ruleEnvTokenOverride.ID, c.Loc("gateway.auth.token"),
				fmt.Sprintf("OPENCLAW_GATEWAY_TOKEN is set in the environment (%s) while gateway.auth.token is %s with a different value", redact(envTok), src))
		}
	}
	if c.String("gateway.tailscale.mode") == "funnel" {
		r.add(ruleTailscaleFunnel.ID, c.Loc("gateway.tailscale.mode"), `gateway.tailscale.mode is "funnel": the gateway is published on the public internet`)
	}
	if c.String("discovery.mdns.mode") == "full" {
		f := r.add(ruleMDNSFull.ID, c.Loc("discovery.mdns.mode"), `discovery.mdns.mode is "full" (publishes cliPath and sshPort) and `+bindDesc(c))
		if exposed {
			f.Severity = Critical
		}
	}
	if v, _ := c.Bool("gateway.allowRealIpFallback"); v {
		nonLoopProxy := false
		for _, p := range c.Strings("gateway.trustedProxies") {
			if !strictLoopbackEntry(p) {
				nonLoopProxy = true
			}
		}
		f := r.add(ruleRealIPFallback.ID, c.Loc("gateway.allowRealIpFallback"), "gateway.allowRealIpFallback is true and "+bindDesc(c))
		if exposed || mode == "trusted-proxy" && nonLoopProxy {
			f.Severity = Critical
		}
	}
}

// strictLoopbackEntry reports whether a trustedProxies entry names only
// loopback (127.0.0.1, ::1, or those as /32, /128).
func strictLoopbackEntry(e string) bool {
	e = strings.TrimSpace(e)
	if p, err := netip.ParsePrefix(e); err == nil {
		return p.Addr().IsLoopback() && p.Bits() == p.Addr().BitLen()
	}
	a, err := netip.ParseAddr(e)
	return err == nil && a.IsLoopback()
}

func checkTrustedProxy(_ context.Context, t *Target, r *results) {
	c := t.Config
	if c == nil || c.String("gateway.auth.mode") != "trusted-proxy" {
		return
	}
	if len(c.Strings("gateway.trustedProxies")) == 0 {
		r.add(ruleTPNoProxies.ID, c.Loc("gateway.auth.mode"), `gateway.auth.mode is "trusted-proxy" and gateway.trustedProxies is empty or unset`)
	}
	if strings.TrimSpace(c.String("gateway.auth.trustedProxy.userHeader")) == "" {
		r.add(ruleTPNoUserHeader.ID, c.Loc("gateway.auth.mode"), `gateway.auth.mode is "trusted-proxy" and gateway.auth.trustedProxy.userHeader is not set`)
	}
	if len(c.Strings("gateway.auth.trustedProxy.allowUsers")) == 0 {
		loc := c.Loc("gateway.auth.trustedProxy")
		if _, ok := c.Get("gateway.auth.trustedProxy"); !ok {
			loc = c.Loc("gateway.auth.mode")
		}
		r.add(ruleTPNoAllowlist.ID, loc, "gateway.auth.trustedProxy.allowUsers is empty: every user the proxy authenticates gets in")
	}
	if tok := readSecret(t, "gateway.auth.token"); tok.set {
		r.add(ruleTPSharedToken.ID, c.Loc("gateway.auth.token"), `gateway.auth.mode is "trusted-proxy" and gateway.auth.token is also set`)
	} else if v := strings.TrimSpace(t.Env["OPENCLAW_GATEWAY_TOKEN"]); v != "" {
		r.add(ruleTPSharedToken.ID, c.Loc("gateway.auth.mode"), fmt.Sprintf(`gateway.auth.mode is "trusted-proxy" and OPENCLAW_GATEWAY_TOKEN is set in the environment (%s)`, redact(v)))
	}
	var loopProxies []string
	for _, p := range c.Strings("gateway.trustedProxies") {
		if pr, err := netip.ParsePrefix(strings.TrimSpace(p)); err == nil && pr.Addr().IsLoopback() {
			loopProxies = append(loopProxies, p)
		} else if a, err := netip.ParseAddr(strings.TrimSpace(p)); err == nil && a.IsLoopback() {
			loopProxies = append(loopProxies, p)
		}
	}
	if v, _ := c.Bool("gateway.auth.trustedProxy.allowLoopback"); v {
		ev := "gateway.auth.trustedProxy.allowLoopback is true"
		if len(loopProxies) > 0 {
			ev += " and gateway.trustedProxies lists " + strings.Join(loopProxies, ", ")
		}
		r.add(ruleTPAllowLoopback.ID, c.Loc("gateway.auth.trustedProxy.allowLoopback"), ev)
	}
}

func checkControlUI(_ context.Context, t *Target, r *results) {
	c := t.Config
	if c == nil {
		return
	}
	if v, set := c.Bool("gateway.controlUi.enabled"); set && !v {
		return
	}
	exposed := gatewayExposed(c)
	origins := c.Strings("gateway.controlUi.allowedOrigins")
	fallback, _ := c.Bool("gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback")
	for _, o := range origins {
		if strings.TrimSpace(o) == "*" {
			f := r.add(ruleOriginsWildcard.ID, c.Loc("gateway.controlUi.allowedOrigins"), `gateway.controlUi.allowedOrigins includes "*" and `+bindDesc(c))
			if exposed {
				f.Severity = Critical
			}
			break
		}
	}
	if exposed && len(origins) == 0 && !fallback {
		loc := c.Loc("gateway.controlUi.allowedOrigins")
		if _, ok := c.Get("gateway.controlUi.allowedOrigins"); !ok {
			loc = c.Loc("gateway.bind")
		}
		r.add(ruleOriginsMissing.ID, loc, bindDesc(c)+", the Control UI is enabled and gateway.controlUi.allowedOrigins is empty")
	}
	if fallback {
		f := r.add(ruleHostHeaderFallback.ID, c.Loc("gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback"),
			"gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback is true and "+bindDesc(c))
		if exposed {
			f.Severity = Critical
		}
	}
}

// retiredFlags are dangerous keys OpenClaw 2026.9.6 no longer honours and
// no longer audits, though its schema still accepts some of them: they
// show intent to weaken auth and take effect again on a downgrade.
var retiredFlags = map[string]string{
	"gateway.controlUi.dangerouslyDisableDeviceAuth": "retired in OpenClaw (ignored, not reported by its audit); it disabled Control UI device pairing",
	"gateway.controlUi.allowInsecureAuth":            "retired in OpenClaw (removed by doctor, not reported by its audit); it allowed token auth over plain HTTP without device identity",
}

// dangerousFlag is one enabled flag: its key path and what it does.
type dangerousFlag struct{ path, value, note string }

// dangerousFlags lists the enabled insecure flags of c: every
// dangerous*/dangerously* key set to true (the schema's naming rule for
// them, so plugin and future keys are covered), OpenClaw's audit list
// (core-dangerous-config-flags), and the retired ones.
func dangerousFlags(c *Config) []dangerousFlag {
	var out []dangerousFlag
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(x)) {
				p := k
				if path != "" {
					p = path + "." + k
				}
				if b, ok := x[k].(bool); ok && b && (strings.HasPrefix(k, "dangerous") || retiredFlags[p] != "") {
					if p != "gateway.controlUi.dangerouslyAllowHostHeaderOriginFallback" { // its own rule
						out = append(out, dangerousFlag{path: p, value: "true", note: retiredFlags[p]})
					}
					continue
				}
				walk(x[k], p)
			}
		case []any:
			for i, e := range x {
				walk(e, path+"["+strconv.Itoa(i)+"]")
			}
		}
	}
	walk(c.Root, "")
	add := func(path, value, note string) { out = append(out, dangerousFlag{path, value, note}) }
	if v, _ := c.Bool("hooks.gmail.allowUnsafeExternalContent"); v {
		add("hooks.gmail.allowUnsafeExternalContent", "true", "feeds unsanitised external mail to the agent")
	}
	if ms, ok := mustGet[[]any](c, "hooks.mappings"); ok {
		for i, m := range ms {
			if mm, ok := m.(map[string]any); ok && mm["allowUnsafeExternalContent"] == true {
				add(fmt.Sprintf("hooks.mappings[%d].allowUnsafeExternalContent", i), "true", "feeds unsanitised external content to the agent")
			}
		}
	}
	if v, set := c.Bool("tools.exec.applyPatch.workspaceOnly"); set && !v {
		add("tools.exec.applyPatch.workspaceOnly", "false", "apply_patch may write outside the workspace")
	}
	if v, set := c.Bool("tools.fs.workspaceOnly"); set && !v {
		add("tools.fs.workspaceOnly", "false", "file tools may read and write outside the workspace")
	}
	if v, _ := c.Bool("hooks.allowRequestSessionKey"); v {
		add("hooks.allowRequestSessionKey", "true", "hook callers choose the session key")
	}
	if s, ok := mustGet[[]any](c, "security.audit.suppressions"); ok && len(s) > 0 {
		add("security.audit.suppressions", fmt.Sprintf("%d entries", len(s)), "OpenClaw's audit hides matching findings")
	}
	if c.String("plugins.entries.acpx.config.permissionMode") == "approve-all" {
		add("plugins.entries.acpx.config.permissionMode", `"approve-all"`, "ACP agents run every tool without approval")
	}
	return out
}

func mustGet[T any](c *Config, path string) (T, bool) {
	v, _ := c.Get(path)
	x, ok := v.(T)
	return x, ok
}

// flagLoc locates a flag path that may hold array indexes: the line is the
// nearest key before the first index.
func flagLoc(c *Config, path string) Location {
	base, _, _ := strings.Cut(path, "[")
	loc := c.Loc(base)
	loc.Key = path
	return loc
}

func checkDangerousFlags(_ context.Context, t *Target, r *results) {
	if t.Config == nil {
		return
	}
	for _, f := range dangerousFlags(t.Config) {
		ev := fmt.Sprintf("%s is %s", f.path, f.value)
		if f.note != "" {
			ev += ": " + f.note
		}
		r.add(ruleDangerousFlag.ID, flagLoc(t.Config, f.path), ev)
	}
}

func checkHooks(_ context.Context, t *Target, r *results) {
	c := t.Config
	if c == nil {
		return
	}
	if v, _ := c.Bool("hooks.enabled"); !v {
		return
	}
	hook := readSecret(t, "hooks.token")
	if hook.known && strings.TrimSpace(hook.value) != "" {
		hv := strings.TrimSpace(hook.value)
		if len(hv) < minSecretLen {
			r.add(ruleHooksTokenShort.ID, c.Loc("hooks.token"), fmt.Sprintf("hooks.token is %s, fewer than %d characters", redact(hv), minSecretLen))
		}
		for _, kind := range []string{"token", "password"} {
			g := gatewaySecret(t, kind)
			if !g.known {
				continue
			}
			// Constant time: the audit may run where timing is observable,
			// and compares two live credentials.
			if subtle.ConstantTimeCompare([]byte(hv), []byte(strings.TrimSpace(g.value))) == 1 {
				r.add(ruleHooksTokenReuse.ID, c.Loc("hooks.token"), fmt.Sprintf("hooks.token has the same value as the gateway %s (from %s)", kind, g.origin))
			}
		}
	}
	if strings.TrimSpace(c.String("hooks.path")) == "/" {
		r.add(ruleHooksPathRoot.ID, c.Loc("hooks.path"), `hooks.path is "/": hook routes shadow every other gateway endpoint`)
	}
}

// dotenv reads the KEY=VALUE lines of a .env file (no expansion); a
// missing file is empty.
func dotenv(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "export "))
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		}
		out[strings.TrimSpace(k)] = v
	}
	return out
}
