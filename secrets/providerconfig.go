package secrets

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ProviderConfig is the `secrets.providers.<alias>` entry OpenClaw needs to
// run clawhold as its exec SecretRef provider.
type ProviderConfig struct {
	Source    string   `json:"source"` // always "exec"
	Command   string   `json:"command"`
	Args      []string `json:"args"`
	PassEnv   []string `json:"passEnv,omitempty"`
	JSONOnly  bool     `json:"jsonOnly"`
	TimeoutMs int      `json:"timeoutMs"`
}

// NewProviderConfig builds the entry for command (clawhold's absolute path)
// serving tenant from dataDir. OpenClaw runs the command with an empty
// environment, so everything it needs is in args.
func NewProviderConfig(command, dataDir, configPath, tenant string, passEnv []string) ProviderConfig {
	args := []string{"--data-dir", dataDir}
	if configPath != "" {
		args = append(args, "--config", configPath)
	}
	args = append(args, "secrets", "provider", "--tenant", tenant)
	return ProviderConfig{Source: "exec", Command: command, Args: args, PassEnv: passEnv, JSONOnly: true, TimeoutMs: 5000}
}

// CheckProviderCommand applies OpenClaw's own trust checks on an exec
// provider's command, so an operator learns at configuration time, not at
// gateway start: an absolute path, not a symlink, not group- or
// world-writable, and owned by the uid the gateway runs as.
func CheckProviderCommand(path string, gatewayUID int) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("provider command %s is not an absolute path", path)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("provider command: %w", err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		real, _ := filepath.EvalSymlinks(path)
		return fmt.Errorf("provider command %s is a symlink: OpenClaw refuses symlinks; use the real path %s", path, real)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("provider command %s is not a regular file", path)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("provider command %s is mode %04o: OpenClaw refuses group- or world-writable commands; run chmod go-w %s",
			path, fi.Mode().Perm(), path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != gatewayUID {
		return fmt.Errorf("provider command %s is owned by uid %d, but OpenClaw requires the gateway's uid %d: install a copy owned by the gateway's user (chown %d %s)",
			path, st.Uid, gatewayUID, gatewayUID, path)
	}
	return nil
}

// EnsureProvider adds secrets.providers.<alias> = pc to an openclaw.json
// written as plain JSON (as ExtractOpenClaw writes it) unless an entry with
// that alias exists. It reports whether it added one. An existing entry is
// never overwritten: the operator may have tuned it.
func EnsureProvider(configJSON []byte, alias string, pc ProviderConfig) ([]byte, bool, error) {
	dec := json.NewDecoder(bytes.NewReader(configJSON))
	dec.UseNumber() // keep numbers exactly as written
	var cfg map[string]any
	if err := dec.Decode(&cfg); err != nil {
		return nil, false, fmt.Errorf("reading rewritten openclaw.json: %w", err)
	}
	section := func(parent map[string]any, key string) (map[string]any, error) {
		switch v := parent[key].(type) {
		case nil:
			m := map[string]any{}
			parent[key] = m
			return m, nil
		case map[string]any:
			return v, nil
		default:
			return nil, fmt.Errorf("openclaw.json: %s is a %T, not an object", key, v)
		}
	}
	sec, err := section(cfg, "secrets")
	if err != nil {
		return nil, false, err
	}
	providers, err := section(sec, "providers")
	if err != nil {
		return nil, false, err
	}
	if _, ok := providers[alias]; ok {
		return configJSON, false, nil
	}
	providers[alias] = pc
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, false, err
	}
	return append(out, '\n'), true, nil
}
