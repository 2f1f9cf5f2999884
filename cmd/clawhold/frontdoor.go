package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/frontdoor"
	"github.com/clawhold/clawhold/instance"
)

func (a *app) frontdoorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "frontdoor",
		Short: "Run the identity-aware TLS gateway in front of OpenClaw",
	}
	cmd.AddCommand(a.frontdoorServeCmd())
	return cmd
}

func (a *app) frontdoorServeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Serve the front door until interrupted (configuration: the frontdoor section)",
		Long: `serve authenticates every request to OpenClaw: accounts with a password and
TOTP (or OIDC single sign-on), server-side sessions, Origin checks, and the
trusted-proxy identity headers OpenClaw's gateway.auth.mode "trusted-proxy"
reads. On first start it prints a one-time link to create the first
administrator. See docs/frontdoor.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			inst, err := a.open(ctx, false)
			if err != nil {
				return err
			}
			defer inst.Close()
			db, err := inst.DB(ctx, instance.SystemTenant)
			if err != nil {
				return err
			}
			kr, err := inst.Keyring(ctx, instance.SystemTenant)
			if err != nil {
				return err
			}
			return frontdoor.Serve(ctx, frontdoor.ServeOptions{
				Config: inst.Config.Frontdoor, DataDir: inst.DataDir, DB: db, Keyring: kr,
				Secret: func(ctx context.Context, name string) ([]byte, error) {
					st, err := inst.Secrets(ctx, instance.SystemTenant)
					if err != nil {
						return nil, err
					}
					v, _, err := st.Get(ctx, "frontdoor", name)
					return v, err
				},
				Out: a.stderr, Logger: a.logger(),
			})
		},
	}
}
