package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/openclaw"
	"github.com/clawhold/clawhold/up"
)

func (a *app) upCmd() *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run clawhold: the front door, the egress proxy and one sandboxed OpenClaw cell per tenant",
		Long: `up runs the whole deployment until interrupted (SIGINT or SIGTERM stop
everything, cells included). With no configuration it uses SQLite and a
local root key in the data dir, provisions the pinned OpenClaw from the npm
registry and prints a one-time link to create the first administrator.
--check validates the configuration and the host (the sandbox's kernel
features) and exits. See docs/cells.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if check {
				cfg, err := a.loadConfig()
				if err != nil {
					return err
				}
				_, warnings, err := up.Check(ctx, cfg)
				if err != nil {
					return err
				}
				for _, w := range warnings {
					fmt.Fprintln(a.stderr, "warning:", w)
				}
				fmt.Fprintf(a.stdout, "configuration %s and host: ok\n", orDefaults(cfg.Path))
				return nil
			}
			in, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			defer in.Close()
			if in.CreatedRootKey != "" {
				fmt.Fprintf(a.stderr, "WARNING: generated a local root key at %s. Everything clawhold stores is sealed under it: back it up,\n"+
					"and in production use a KMS instead (root_key.backend: vault-transit, aws-kms or gcp-kms; docs/config.md).\n", in.CreatedRootKey)
			}
			return up.Run(ctx, up.Options{
				Instance: in, OpenClawDir: os.Getenv(openclaw.DirEnv), Version: version,
				Out: a.stdout, Stderr: a.stderr, Logger: a.logger(),
			})
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "validate the configuration and the host, then exit")
	return cmd
}

func orDefaults(path string) string {
	if path == "" {
		return "(defaults)"
	}
	return path
}
