package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/clawhold/clawhold/cell/cellapi"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/secrets"
)

func (a *app) secretsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Keep credentials sealed with the tenant's keys and serve them to OpenClaw",
	}
	cmd.AddCommand(a.secretsSetCmd(), a.secretsGetCmd(), a.secretsListCmd(), a.secretsRmCmd(),
		a.secretsImportCmd(), a.secretsProviderCmd(), a.secretsProviderConfigCmd())
	return cmd
}

func tenantFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "tenant", instance.DefaultTenant, "tenant whose secrets to use")
}

// readValue reads a secret value from a file, a terminal (without echo) or
// piped stdin. Values never come from argv: argv is visible to every user
// through /proc and ps.
func (a *app) readValue(name, file string, raw bool) ([]byte, error) {
	var r io.Reader
	switch {
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	default:
		if f, ok := a.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprintf(a.stderr, "value for %s (input hidden): ", name)
			v, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(a.stderr)
			return v, err
		}
		r = a.stdin
	}
	v, err := io.ReadAll(io.LimitReader(r, secrets.MaxValueSize+2))
	if err != nil {
		return nil, err
	}
	if !raw {
		// One trailing newline is what `echo` and editors add, not part of
		// the credential.
		v = bytes.TrimSuffix(v, []byte("\n"))
		v = bytes.TrimSuffix(v, []byte("\r"))
	}
	return v, nil
}

func (a *app) openSecrets(ctx context.Context, tenant string, create bool) (*instance.Instance, *secrets.Store, error) {
	in, err := a.open(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	if create {
		err = in.EnsureTenant(ctx, tenant)
	} else {
		err = in.CheckTenant(ctx, tenant)
	}
	if err != nil {
		in.Close()
		return nil, nil, err
	}
	s, err := in.Secrets(ctx, tenant)
	if err != nil {
		in.Close()
		return nil, nil, err
	}
	return in, s, nil
}

func (a *app) secretsSetCmd() *cobra.Command {
	var tenant, file string
	var raw bool
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Store a secret; the value comes from stdin (hidden prompt on a terminal) or --from-file",
		Long: `set seals a value under NAME. NAME is also the id OpenClaw uses in an exec
SecretRef, e.g. models/providers/openai/apiKey. The value is read from stdin
(or --from-file) and never from the command line. One trailing newline is
removed unless --raw is given.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := secrets.ValidName(name); err != nil {
				return err
			}
			v, err := a.readValue(name, file, raw)
			if err != nil {
				return fmt.Errorf("reading the value: %w", err)
			}
			defer clear(v)
			ctx := cmd.Context()
			in, s, err := a.openSecrets(ctx, tenant, true)
			if err != nil {
				return err
			}
			defer in.Close()
			info, err := s.Set(ctx, actor(), name, v)
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, info)
			}
			fmt.Fprintf(a.stdout, "%s: stored version %d (key v%d, tenant %s)\n", info.Name, info.Version, info.KeyVersion, tenant)
			return nil
		},
	}
	tenantFlag(cmd, &tenant)
	cmd.Flags().StringVar(&file, "from-file", "", "read the value from this file instead of stdin")
	cmd.Flags().BoolVar(&raw, "raw", false, "keep the value byte for byte (do not strip one trailing newline)")
	return cmd
}

func (a *app) secretsGetCmd() *cobra.Command {
	var tenant string
	var reveal bool
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "Show a secret's metadata, or its value with --reveal (the read is recorded)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			in, s, err := a.openSecrets(ctx, tenant, false)
			if err != nil {
				return err
			}
			defer in.Close()
			if !reveal {
				list, err := s.List(ctx)
				if err != nil {
					return err
				}
				for _, info := range list {
					if info.Name == args[0] {
						if a.json {
							return writeJSON(a.stdout, info)
						}
						fmt.Fprintf(a.stdout, "%s: version %d, key v%d, updated %s (value hidden: add --reveal)\n",
							info.Name, info.Version, info.KeyVersion, info.Updated.Format(time.RFC3339))
						return nil
					}
				}
				return fmt.Errorf("%w: %q in tenant %s", secrets.ErrNotFound, args[0], tenant)
			}
			v, info, err := s.Get(ctx, actor(), args[0])
			if err != nil {
				return err
			}
			defer clear(v)
			if a.json {
				return writeJSON(a.stdout, struct {
					secrets.Info
					Value string `json:"value"`
				}{info, string(v)})
			}
			_, err = a.stdout.Write(v)
			if f, ok := a.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				fmt.Fprintln(a.stdout)
			}
			return err
		},
	}
	tenantFlag(cmd, &tenant)
	cmd.Flags().BoolVar(&reveal, "reveal", false, "print the value itself")
	return cmd
}

func (a *app) secretsListCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List secrets: names, versions and ages, never values",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, s, err := a.openSecrets(ctx, tenant, false)
			if err != nil {
				return err
			}
			defer in.Close()
			list, err := s.List(ctx)
			if err != nil {
				return err
			}
			if a.json {
				if list == nil {
					list = []secrets.Info{}
				}
				return writeJSON(a.stdout, list)
			}
			now := time.Now()
			rows := make([][]string, 0, len(list))
			for _, i := range list {
				rows = append(rows, []string{i.Name, strconv.FormatInt(i.Version, 10), "v" + strconv.Itoa(int(i.KeyVersion)), age(i.Updated, now), age(i.Created, now)})
			}
			return table(a.stdout, []string{"NAME", "VERSION", "KEY", "UPDATED", "CREATED"}, rows)
		},
	}
	tenantFlag(cmd, &tenant)
	return cmd
}

func (a *app) secretsRmCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "rm NAME",
		Short: "Delete a secret",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			in, s, err := a.openSecrets(ctx, tenant, false)
			if err != nil {
				return err
			}
			defer in.Close()
			if err := s.Remove(ctx, actor(), args[0]); err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, map[string]string{"removed": args[0], "tenant": tenant})
			}
			fmt.Fprintf(a.stdout, "%s: removed\n", args[0])
			return nil
		},
	}
	tenantFlag(cmd, &tenant)
	return cmd
}

func (a *app) secretsProviderCmd() *cobra.Command {
	var tenant, cellSocket string
	cmd := &cobra.Command{
		Use:   "provider",
		Short: "Serve OpenClaw's exec SecretRef protocol on stdin/stdout (run by the gateway)",
		Long: `provider is the command OpenClaw runs for a secrets.providers entry with
source "exec". It reads {"protocolVersion":1,"provider":...,"ids":[...]} on
stdin and answers {"protocolVersion":1,"values":{...},"errors":{...}} on
stdout. Every id asked for is recorded as a secret read. See
docs/openclaw-secrets.md, or run: clawhold secrets provider-config`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), secrets.ProviderTimeout)
			defer cancel()
			if cellSocket != "" {
				// Inside a cell: no data dir, no root key. clawhold up
				// answers on the cell's socket, which is its identity.
				return secrets.ServeProvider(ctx, a.stdin, a.stdout, cellapi.LookupSecrets(cellSocket))
			}
			in, s, err := a.openSecrets(ctx, tenant, false)
			if err != nil {
				return err
			}
			defer in.Close()
			who := fmt.Sprintf("openclaw-provider(uid %d, parent pid %d)", os.Getuid(), os.Getppid())
			return secrets.ServeProvider(ctx, a.stdin, a.stdout, s.Lookup(who))
		},
	}
	tenantFlag(cmd, &tenant)
	cmd.Flags().StringVar(&cellSocket, "cell-socket", "", "ask clawhold up over this cell socket instead of opening the data dir (set by clawhold up inside a cell)")
	return cmd
}

func (a *app) secretsProviderConfigCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "provider-config",
		Short: "Print the secrets.providers entry to put in openclaw.json",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, _, err := a.openSecrets(ctx, tenant, false)
			if err != nil {
				return err
			}
			defer in.Close()
			exe, err := executable()
			if err != nil {
				return err
			}
			var passEnv []string
			switch in.Config.RootKey.Backend {
			case "env":
				fmt.Fprintln(a.stderr, "WARNING: root_key.backend is env: the gateway would have to hold the root key in its environment to pass it on. Use the file backend or a KMS for the provider.")
				passEnv = []string{in.Config.RootKey.Env}
			case "systemd-credential":
				passEnv = []string{"CREDENTIALS_DIRECTORY"}
			case "vault-transit":
				passEnv = []string{"VAULT_TOKEN"}
			}
			pc := secrets.NewProviderConfig(exe, in.DataDir, in.Config.Path, tenant, passEnv)
			if err := secrets.CheckProviderCommand(exe, os.Getuid()); err != nil {
				fmt.Fprintln(a.stderr, "WARNING:", err)
			}
			return writeJSON(a.stdout, map[string]any{"secrets": map[string]any{"providers": map[string]any{"clawhold": pc}}})
		},
	}
	tenantFlag(cmd, &tenant)
	return cmd
}
