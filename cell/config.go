package cell

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/frontdoor/proxy"
)

// Ports inside every cell: the gateway, and the forwarder init runs to
// the egress proxy. Each cell has its own network namespace.
const (
	GatewayPort = 18789
	ProxyPort   = 3128
)

// UserHeader carries the authenticated user from the front door.
const UserHeader = "x-forwarded-user"

// ProviderAlias is the secrets.providers key of clawhold's exec provider:
// SecretRefs {"source":"exec","provider":"clawhold","id":"<secret name>"}.
const ProviderAlias = "clawhold"

// Member is a user of the tenant, as the gateway must know them.
type Member struct {
	Name string
	Role string // viewer, operator or admin
}

// ConfigInput is everything the generated openclaw.json depends on.
type ConfigInput struct {
	Layout    Layout
	Members   []Member       // enabled users of the tenant
	PublicURL string         // the front door's origin (Control UI allowedOrigins)
	Exe       string         // the clawhold binary, as seen inside the cell
	PluginDir string         // the tool-call plugin, as seen inside the cell
	Plugin    map[string]any // plugin.Config's fragment
	// Overlays are OpenClaw config objects merged in order under
	// clawhold's own keys (cells.openclaw_config, then the tenant's).
	Overlays []map[string]any
}

// ownedKeys are the config paths an overlay may not set: they are the
// cell's security boundary.
var ownedKeys = [][]string{
	{"gateway", "mode"}, {"gateway", "bind"}, {"gateway", "port"}, {"gateway", "customBindHost"},
	{"gateway", "trustedProxies"}, {"gateway", "allowRealIpFallback"}, {"gateway", "auth"},
	{"gateway", "controlUi"}, {"gateway", "tailscale"}, {"gateway", "tls"},
	{"gateway", "reload"}, // auth changes (a user removed) must reach the gateway
	{"proxy"}, {"plugins"}, {"logging"}, {"discovery"}, {"update"},
	{"secrets", "providers", ProviderAlias}, {"security", "audit"},
}

// roleScopes are the session scopes a trusted-proxy user gets on the
// WebSocket (gateway.auth.identityScopes), the same set the front door
// sends as x-openclaw-scopes on HTTP.
func roleScopes(role string) ([]string, error) {
	s, ok := proxy.ScopesForRole(role)
	if !ok {
		return nil, fmt.Errorf("cell: unknown role %q", role)
	}
	return s, nil
}

// Generate returns the cell's openclaw.json.
func Generate(in ConfigInput) (map[string]any, error) {
	m := map[string]any{}
	for i, o := range in.Overlays {
		for _, k := range ownedKeys {
			if has(o, k...) {
				return nil, fmt.Errorf("cell: OpenClaw config overlay %d sets %s, which clawhold owns for the cell's safety: remove it", i+1, strings.Join(k, "."))
			}
		}
		merge(m, o)
	}
	users := make([]string, 0, len(in.Members))
	scopes := map[string]any{}
	for _, u := range in.Members {
		s, err := roleScopes(u.Role)
		if err != nil {
			return nil, err
		}
		users = append(users, u.Name)
		scopes[u.Name] = s
	}
	sort.Strings(users)
	if len(users) == 0 {
		// An empty allowUsers admits any user; the front door only sends
		// the tenant's, but the gateway must not rely on that alone.
		users = []string{"-no-users-"}
	}
	gw, _ := m["gateway"].(map[string]any) // an overlay's gateway.http, gateway.tools
	if gw == nil {
		gw = map[string]any{}
	}
	merge(gw, map[string]any{
		"mode": "local",
		"bind": "loopback",
		"port": GatewayPort,
		// The only peer that can reach the port is the cell's init, which
		// relays the front door's unix socket from 127.0.0.1: the command
		// and its children are barred from the port by Landlock.
		"trustedProxies": []any{"127.0.0.1"},
		"auth": map[string]any{
			"mode":           "trusted-proxy",
			"identityScopes": scopes,
			"trustedProxy": map[string]any{
				"userHeader":      UserHeader,
				"requiredHeaders": []any{"x-forwarded-proto", "x-forwarded-host"},
				"allowUsers":      toAny(users),
				"allowLoopback":   true,
			},
		},
		"controlUi": map[string]any{"allowedOrigins": []any{in.PublicURL}},
	})
	m["gateway"] = gw
	// loopbackMode proxy: the cell's own loopback holds nothing the
	// gateway may call (its port is closed to it by Landlock), so loopback
	// URLs, such as a model server on the host, go through the egress
	// proxy and its policy too.
	m["proxy"] = map[string]any{"enabled": true, "proxyUrl": fmt.Sprintf("http://127.0.0.1:%d", ProxyPort), "loopbackMode": "proxy"}
	m["logging"] = map[string]any{"file": in.Layout.LogFile()}
	m["discovery"] = map[string]any{"mdns": map[string]any{"mode": "off"}}
	m["update"] = map[string]any{"checkOnStart": false}
	merge(m, in.Plugin) // {"plugins": {...}}
	setPath(m, map[string]any{
		"source":            "exec",
		"command":           in.Layout.ProviderFile(),
		"jsonOnly":          true,
		"timeoutMs":         10000,
		"noOutputTimeoutMs": 10000,
	}, "secrets", "providers", ProviderAlias)
	setPath(m, map[string]any{"suppressions": []any{
		map[string]any{
			"checkId": "gateway.trusted_proxy_auth",
			"reason":  "clawhold's front door is the proxy: it authenticates users (password + TOTP or OIDC) and is the only peer that can reach this gateway's port",
		},
		map[string]any{
			"checkId": "gateway.trusted_proxy_allow_loopback",
			"reason":  "the loopback peer is the cell's init relaying clawhold's unix socket; Landlock keeps the gateway's own processes off the port",
		},
	}}, "security", "audit")
	return m, nil
}

// WriteConfig writes cfg as the cell's openclaw.json, atomically, owned by
// the cell's uid (OpenClaw checks its config belongs to it) and 0600.
func WriteConfig(l Layout, ids IDs, cfg map[string]any) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("cell: encoding openclaw.json: %w", err)
	}
	return writeOwned(l.ConfigFile(), append(b, '\n'), 0o600, ids)
}

// WriteProvider writes the exec secret provider OpenClaw runs: a script
// owned by the cell's uid (OpenClaw requires the command to belong to the
// gateway's uid) that runs clawhold's provider against the cell socket.
func WriteProvider(l Layout, ids IDs, exe string) error {
	for _, p := range []string{exe, l.CellSocket()} {
		if strings.ContainsAny(p, "'\n") {
			return fmt.Errorf("cell: path %q cannot be quoted for the provider script", p)
		}
	}
	script := fmt.Sprintf("#!/bin/sh\n# Written by clawhold: OpenClaw's exec SecretRef provider for this cell.\nexec '%s' secrets provider --cell-socket '%s'\n", exe, l.CellSocket())
	return writeOwned(l.ProviderFile(), []byte(script), 0o500, ids)
}

func writeOwned(path string, data []byte, mode os.FileMode, ids IDs) error {
	return datadir.WriteFileAtomicFunc(path, data, mode, func(f *os.File) error {
		if os.Geteuid() != 0 {
			return nil
		}
		return f.Chown(ids.UID, ids.GID)
	})
}

// LoadOverlay reads an OpenClaw config overlay (a JSON object).
func LoadOverlay(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cell: reading OpenClaw config overlay: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("cell: OpenClaw config overlay %s: not a JSON object: %w", path, err)
	}
	return m, nil
}

func has(m map[string]any, path ...string) bool {
	for i, k := range path {
		v, ok := m[k]
		if !ok {
			return false
		}
		if i == len(path)-1 {
			return true
		}
		if m, ok = v.(map[string]any); !ok {
			return false
		}
	}
	return false
}

func setPath(m map[string]any, v any, path ...string) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// merge copies src into dst, merging nested objects. Objects are copied,
// never shared, so that dst's later changes never reach an overlay.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sv, ok := v.(map[string]any); ok {
			dv, ok := dst[k].(map[string]any)
			if !ok {
				dv = map[string]any{}
				dst[k] = dv
			}
			merge(dv, sv)
			continue
		}
		dst[k] = v
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
