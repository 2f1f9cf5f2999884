// Package plugin holds clawhold-toolgate, the OpenClaw plugin that runs in
// every cell's gateway and forwards each tool call to clawhold over the cell
// socket (see package cellapi), blocking the call unless clawhold answers
// {"allow":true}.
//
// The plugin is plain ESM JavaScript with no dependencies (index.js,
// package.json, openclaw.plugin.json beside this file), embedded here so that
// clawhold can materialize it for a cell with Write and load it with Config.
package plugin

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/clawhold/clawhold/datadir"
)

// ID is the plugin id, as in openclaw.plugin.json.
const ID = "clawhold-toolgate"

// DefaultTimeout is how long the plugin waits for clawhold's decision before
// it blocks the call; index.js has the same default.
const DefaultTimeout = 10 * time.Second

// hookTimeoutMs is the OpenClaw runner's budget for our before_tool_call
// handler: a second above ours, so the plugin's own timeout (and its clearer
// block reason) fires first, and below the runner's 15 s default. The runner
// fails closed on it anyway.
const hookTimeoutMs = int(DefaultTimeout/time.Millisecond) + 1000

// afterHookTimeoutMs bounds the after_tool_call report (2 s in index.js).
const afterHookTimeoutMs = 3000

//go:embed package.json openclaw.plugin.json index.js
var files embed.FS

// Write materializes the plugin into dir (created 0755, files 0644: it is
// public code read by the sandboxed gateway's uid), atomically enough that a
// concurrent reader never sees half a file: each file is written to a
// temporary name in dir and renamed into place.
func Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("plugin: creating %s: %w", dir, err)
	}
	// MkdirAll is subject to the umask and leaves an existing dir alone.
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("plugin: chmod %s: %w", dir, err)
	}
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return fmt.Errorf("plugin: reading embedded files: %w", err)
	}
	for _, e := range entries {
		b, err := files.ReadFile(e.Name())
		if err != nil {
			return fmt.Errorf("plugin: reading embedded %s: %w", e.Name(), err)
		}
		if err := datadir.WriteFileAtomic(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return fmt.Errorf("plugin: %w", err)
		}
	}
	return nil
}

// Config returns the OpenClaw config fragment that loads the plugin from dir
// and points it at socket: plugins.load.paths [dir], plugins.allow [ID] (a
// config-origin plugin with no install record is not loaded without it) and
// plugins.entries[ID] with the plugin's config and hook budgets. Merge it
// into the cell's config; note that plugins.allow is an allowlist, so other
// non-bundled plugins the cell needs must be added to it.
func Config(dir, socket string) map[string]any {
	return map[string]any{
		"plugins": map[string]any{
			"load":  map[string]any{"paths": []any{dir}},
			"allow": []any{ID},
			"entries": map[string]any{
				ID: map[string]any{
					"enabled": true,
					"config":  map[string]any{"socket": socket},
					"hooks": map[string]any{
						"timeouts": map[string]any{
							"before_tool_call": hookTimeoutMs,
							"after_tool_call":  afterHookTimeoutMs,
						},
					},
				},
			},
		},
	}
}
