package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/openclaw"
)

func (a *app) openclawCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "openclaw",
		Short: "Manage the pinned OpenClaw installation",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.openclawInstallCmd())
	return cmd
}

func (a *app) openclawInstallCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the pinned OpenClaw and its private Node runtime",
		Long: fmt.Sprintf(`install puts OpenClaw %s and its private Node runtime (>= %s) into an npm
prefix with npm ci, so the pinned lockfile (exact versions and integrity
hashes) is enforced. It needs Node.js 20+ with npm only to bootstrap, and does
nothing when the install there is already up to date.

The install dir is --dir, else $%s, else <data dir>/openclaw. It prints the
dir on stdout; progress and npm's output go to stderr.`, openclaw.Version, openclaw.MinNodeVersion, openclaw.DirEnv),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				d, err := a.defaultOpenClawDir()
				if err != nil {
					return err
				}
				dir = d
			}
			// Progress always goes to stderr; -v adds detail.
			level := slog.LevelInfo
			if a.verbose {
				level = slog.LevelDebug
			}
			in, err := openclaw.Provision(cmd.Context(), openclaw.ProvisionOptions{
				Dir:    dir,
				Stderr: a.stderr,
				Logger: slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level})),
			})
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, struct {
					Dir  string `json:"dir"`
					Node string `json:"node"`
					CLI  string `json:"cli"`
				}{in.Dir, in.Node, in.CLI})
			}
			fmt.Fprintln(a.stdout, in.Dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", fmt.Sprintf("install dir (default: $%s, else <data dir>/openclaw)", openclaw.DirEnv))
	return cmd
}

// defaultOpenClawDir is $CLAWHOLD_OPENCLAW_DIR, else openclaw in the data
// dir resolved as every other command does (creating the data dir 0700 if
// needed, so its parent stays private).
func (a *app) defaultOpenClawDir() (string, error) {
	if d := os.Getenv(openclaw.DirEnv); d != "" {
		return d, nil
	}
	var cfg *config.Config
	var err error
	if a.configPath != "" {
		cfg, err = config.Load(a.configPath)
	} else {
		cfg, err = config.LoadDefault()
	}
	if err != nil {
		return "", err
	}
	data := datadir.Resolve(a.dataDir, cfg)
	if err := datadir.Ensure(data); err != nil {
		return "", err
	}
	return filepath.Join(data, "openclaw"), nil
}
