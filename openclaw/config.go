package openclaw

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// gatewayConfig turns the caller's config (nil, a JSON document as
// json.RawMessage, []byte or string, or any value encoding to a JSON object)
// into a JSON object and fills in what a private gateway needs:
//
//   - gateway.port = port (always; the runner owns the port)
//   - gateway.mode = "local" unless set (without it the gateway refuses to start)
//   - logging.file = logFile unless set (the default log is in /tmp, outside home)
//   - update.checkOnStart = false unless set (no update check on start)
//   - discovery.mdns.mode = "off" unless set (no LAN advertisement)
//
// It returns the encoded config and the logging.file in effect.
func gatewayConfig(cfg any, port int, logFile string) ([]byte, string, error) {
	m, err := configObject(cfg)
	if err != nil {
		return nil, "", err
	}
	if err := setPath(m, true, port, "gateway", "port"); err != nil {
		return nil, "", err
	}
	defaults := []struct {
		val  any
		path []string
	}{
		{"local", []string{"gateway", "mode"}},
		{logFile, []string{"logging", "file"}},
		{false, []string{"update", "checkOnStart"}},
		{"off", []string{"discovery", "mdns", "mode"}},
	}
	for _, d := range defaults {
		if err := setPath(m, false, d.val, d.path...); err != nil {
			return nil, "", err
		}
	}
	effectiveLog, _ := m["logging"].(map[string]any)["file"].(string)
	if effectiveLog == "" {
		return nil, "", fmt.Errorf("openclaw: config logging.file must be a non-empty string")
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, "", fmt.Errorf("openclaw: encoding config: %w", err)
	}
	return append(b, '\n'), effectiveLog, nil
}

func configObject(cfg any) (map[string]any, error) {
	var raw []byte
	switch c := cfg.(type) {
	case nil:
		return map[string]any{}, nil
	case json.RawMessage:
		raw = c
	case []byte:
		raw = c
	case string:
		raw = []byte(c)
	default:
		b, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("openclaw: encoding config: %w", err)
		}
		raw = b
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep large integers exact
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("openclaw: config must be a JSON object: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("openclaw: config has trailing data after the JSON object")
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// setPath sets m[path[0]][path[1]]... = val, creating intermediate objects.
// Unless overwrite is set, an existing value is kept.
func setPath(m map[string]any, overwrite bool, val any, path ...string) error {
	for i, k := range path[:len(path)-1] {
		next, ok := m[k]
		if !ok || next == nil {
			nm := map[string]any{}
			m[k] = nm
			m = nm
			continue
		}
		nm, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("openclaw: config %s is %T, want an object", strings.Join(path[:i+1], "."), next)
		}
		m = nm
	}
	last := path[len(path)-1]
	if _, ok := m[last]; ok && !overwrite {
		return nil
	}
	m[last] = val
	return nil
}

// secretKeyWords are substrings of config keys and env var names whose
// string values are treated as secrets and redacted from LogTail.
var secretKeyWords = []string{"token", "password", "passphrase", "secret", "apikey", "api_key", "api-key", "authorization", "privatekey", "private_key", "credential"}

func isSecretName(name string) bool {
	name = strings.ToLower(name)
	return name == "key" || slices.ContainsFunc(secretKeyWords, func(w string) bool { return strings.Contains(name, w) })
}

// minSecretLen keeps short, common strings ("on", "token") from being
// treated as secrets and mangling unrelated log text.
const minSecretLen = 6

// collectSecrets returns the string values in the config stored under
// secret-looking keys, and the values of secret-looking env vars.
func collectSecrets(config []byte, env []string) []string {
	var out []string
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if _, ok := v["source"]; ok {
				if _, ok := v["id"]; ok {
					return // a SecretRef: names a secret, holds none
				}
			}
			for k, vv := range v {
				walk(k, vv)
			}
		case []any:
			for _, vv := range v {
				walk(key, vv)
			}
		case string:
			if isSecretName(key) && len(v) >= minSecretLen {
				out = append(out, v)
			}
		}
	}
	var m any
	if json.Unmarshal(config, &m) == nil {
		walk("", m)
	}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && isSecretName(k) && len(v) >= minSecretLen {
			out = append(out, v)
		}
	}
	// Longest first, so a secret containing another is replaced whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out)
}
