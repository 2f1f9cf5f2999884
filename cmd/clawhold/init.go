package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/secrets"
)

// actor names who runs this command, for events.
func actor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("cli:%s(uid %d)", name, os.Getuid())
}

// executable is clawhold's own absolute, symlink-free path: what OpenClaw's
// exec provider must be given.
func executable() (string, error) {
	p, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(p)
}

func (a *app) initCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the data directory, a local root key if none is configured, and the stores",
		Long: `init prepares an installation: the data directory (0700), the system store and
a tenant store, their first key versions and, when root_key.backend is "file"
(the default) and no key exists, a new local root key file (0600).

A local root key protects everything only as well as that file is protected:
production deployments should use a KMS (root_key.backend vault-transit,
aws-kms or gcp-kms; see docs/config.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			defer in.Close()
			if err := in.EnsureTenant(ctx, tenant); err != nil {
				return err
			}
			if _, err := in.Keyrings(ctx); err != nil {
				return err
			}
			exe, err := executable()
			if err != nil {
				return err
			}
			pc := secrets.NewProviderConfig(exe, in.DataDir, in.Config.Path, tenant, nil)
			out := struct {
				DataDir        string                 `json:"data_dir"`
				Config         string                 `json:"config,omitempty"`
				RootKey        string                 `json:"root_key"`
				CreatedRootKey string                 `json:"created_root_key,omitempty"`
				Tenant         string                 `json:"tenant"`
				Provider       secrets.ProviderConfig `json:"openclaw_secrets_provider"`
				ProviderCheck  string                 `json:"provider_check,omitempty"`
			}{DataDir: in.DataDir, Config: in.Config.Path, RootKey: in.Root.ID(), CreatedRootKey: in.CreatedRootKey, Tenant: tenant, Provider: pc}
			if err := secrets.CheckProviderCommand(exe, os.Getuid()); err != nil {
				out.ProviderCheck = err.Error()
			}
			if in.CreatedRootKey != "" {
				fmt.Fprintf(a.stderr, `
WARNING: generated a LOCAL root key at %s
  Anyone who can read this file can decrypt every secret clawhold keeps, and
  losing it loses them all: back it up somewhere safe, apart from the data.
  For production, keep the root key in a KMS instead: set root_key.backend to
  vault-transit, aws-kms or gcp-kms (docs/config.md).

`, in.CreatedRootKey)
			}
			if a.json {
				return writeJSON(a.stdout, out)
			}
			fmt.Fprintf(a.stdout, "data dir:  %s\nroot key:  %s\ntenant:    %s\n", out.DataDir, out.RootKey, out.Tenant)
			if out.Config != "" {
				fmt.Fprintf(a.stdout, "config:    %s\n", out.Config)
			}
			block, _ := json.MarshalIndent(map[string]any{"secrets": map[string]any{"providers": map[string]any{"clawhold": pc}}}, "", "  ")
			fmt.Fprintf(a.stdout, "\nStore a credential (the value is read from stdin, never from argv):\n"+
				"  clawhold secrets set --tenant %s models/providers/openai/apiKey < key.txt\n"+
				"\nThen reference it from openclaw.json as\n"+
				"  {\"source\": \"exec\", \"provider\": \"clawhold\", \"id\": \"models/providers/openai/apiKey\"}\n"+
				"with this provider block (docs/openclaw-secrets.md):\n%s\n", tenant, block)
			if out.ProviderCheck != "" {
				fmt.Fprintf(a.stdout, "\nNote: %s\n", out.ProviderCheck)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", instance.DefaultTenant, "tenant to create")
	return cmd
}
