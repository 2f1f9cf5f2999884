package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/kms"
)

func (a *app) keysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Show and manage key versions: status, rotate, rewrap, retire, maintain",
		Long: `Every tenant (and the system) has a keyring of versioned keys. The newest
version encrypts; older ones only decrypt and rewrap. A version never encrypts
past keys.max_age (at most 90 days); clawhold rotates from keys.rotate_after
(default 80 days). rewrap moves data to the active version so that old versions
can be retired (destroyed).`,
	}
	cmd.AddCommand(a.keysStatusCmd(), a.keysRotateCmd(), a.keysRewrapCmd(), a.keysRetireCmd(), a.keysMaintainCmd(), a.keysRewrapRootCmd())
	return cmd
}

// openKeyrings opens the installation and the keyring of one tenant, or of
// every tenant and the system when tenant is "". The caller closes in.
func (a *app) openKeyrings(ctx context.Context, tenant string) (*instance.Instance, []*keys.Keyring, error) {
	in, err := a.open(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	krs, err := keyringsFor(ctx, in, tenant)
	if err != nil {
		in.Close()
		return nil, nil, err
	}
	return in, krs, nil
}

func keyringsFor(ctx context.Context, in *instance.Instance, tenant string) ([]*keys.Keyring, error) {
	if tenant == "" {
		return in.Keyrings(ctx)
	}
	if err := in.CheckTenant(ctx, tenant); err != nil {
		return nil, err
	}
	k, err := in.Keyring(ctx, tenant)
	if err != nil {
		return nil, err
	}
	return []*keys.Keyring{k}, nil
}

func (a *app) keysStatusCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show every key version: state, age, expiry and how much data it seals",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, krs, err := a.openKeyrings(ctx, tenant)
			if err != nil {
				return err
			}
			defer in.Close()
			var all []keys.Status
			for _, k := range krs {
				st, err := k.Status(ctx)
				if err != nil {
					return err
				}
				all = append(all, st)
			}
			if a.json {
				return writeJSON(a.stdout, struct {
					RootKey  string        `json:"root_key"`
					MaxAge   string        `json:"max_age"`
					Rotate   string        `json:"rotate_after"`
					Keyrings []keys.Status `json:"keyrings"`
				}{in.Root.ID(), in.Config.Keys.MaxAge.String(), in.Config.Keys.RotateAfter.String(), all})
			}
			fmt.Fprintf(a.stdout, "root key: %s\npolicy:   rotate after %s, never encrypt after %s\n\n",
				in.Root.ID(), in.Config.Keys.RotateAfter, in.Config.Keys.MaxAge)
			var rows [][]string
			var warnings []string
			now := time.Now()
			for _, st := range all {
				for _, v := range st.Versions {
					rows = append(rows, []string{st.Keyring, "v" + strconv.Itoa(int(v.Version)), string(v.State), v.Algorithm,
						age(v.Created, now), v.Expires.Format("2006-01-02"), strconv.FormatInt(v.Records, 10)})
				}
				warnings = append(warnings, st.Warnings...)
			}
			if err := table(a.stdout, []string{"KEYRING", "VERSION", "STATE", "ALGORITHM", "AGE", "STOPS ENCRYPTING", "RECORDS"}, rows); err != nil {
				return err
			}
			for _, w := range warnings {
				fmt.Fprintln(a.stdout, "WARNING:", w)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "one tenant (\"system\" for the system keyring); default all")
	return cmd
}

func (a *app) keysRotateCmd() *cobra.Command {
	var tenant string
	var all bool
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Create a new active key version (the old one becomes decrypt-only)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (tenant == "") == !all {
				return fmt.Errorf("name one keyring with --tenant NAME (\"system\" for the system keyring), or rotate every keyring with --all")
			}
			ctx := cmd.Context()
			in, krs, err := a.openKeyrings(ctx, tenant)
			if err != nil {
				return err
			}
			defer in.Close()
			type result struct {
				Keyring string `json:"keyring"`
				Version uint32 `json:"version"`
			}
			var out []result
			for _, k := range krs {
				n, err := k.Rotate(ctx)
				if err != nil {
					return err
				}
				if err := a.keyEvent(ctx, in, k, events.KeyRotate, map[string]any{"version": n}); err != nil {
					return err
				}
				out = append(out, result{k.Name(), n})
			}
			if a.json {
				return writeJSON(a.stdout, out)
			}
			for _, r := range out {
				fmt.Fprintf(a.stdout, "%s: rotated to v%d (run `clawhold keys rewrap` to move existing data)\n", r.Keyring, r.Version)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "keyring to rotate (\"system\" for the system keyring)")
	cmd.Flags().BoolVar(&all, "all", false, "rotate every keyring")
	return cmd
}

func (a *app) keyEvent(ctx context.Context, in *instance.Instance, k *keys.Keyring, typ string, detail map[string]any) error {
	db, err := in.DB(ctx, k.Tenant())
	if err != nil {
		return err
	}
	return events.Append(ctx, db, events.Event{Type: typ, Actor: actor(), Subject: k.Name(), Detail: detail})
}

func (a *app) keysRewrapCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "rewrap",
		Short: "Re-seal all data under the active key version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, krs, err := a.openKeyrings(ctx, tenant)
			if err != nil {
				return err
			}
			defer in.Close()
			type result struct {
				Keyring string `json:"keyring"`
				keys.RewrapResult
			}
			var out []result
			failed := 0
			for _, k := range krs {
				res, err := k.Rewrap(ctx)
				if err != nil {
					return err
				}
				failed += res.Failed
				if err := a.keyEvent(ctx, in, k, events.KeyRewrap, map[string]any{"rewrapped": res.Rewrapped, "failed": res.Failed}); err != nil {
					return err
				}
				out = append(out, result{k.Name(), res})
			}
			if a.json {
				if err := writeJSON(a.stdout, out); err != nil {
					return err
				}
			} else {
				for _, r := range out {
					fmt.Fprintf(a.stdout, "%s: rewrapped %d record(s)\n", r.Keyring, r.Rewrapped)
					for _, e := range r.Errors {
						fmt.Fprintln(a.stdout, "  FAILED:", e)
					}
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d record(s) could not be opened and were left as they are", failed)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "one tenant; default all")
	return cmd
}

func (a *app) keysRetireCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "retire VERSION",
		Short: "Destroy an old key version that no data uses any more",
		Long: `retire erases a key version's material for good. It refuses while any record is
still sealed with that version (run rewrap first) and for the active version.
Backups made while the version was in use cannot be restored after it is retired.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return fmt.Errorf("name the keyring with --tenant NAME (\"system\" for the system keyring)")
			}
			n, err := strconv.ParseUint(strings.TrimPrefix(args[0], "v"), 10, 32)
			if err != nil || n == 0 {
				return fmt.Errorf("version %q: want a version number such as 3 or v3", args[0])
			}
			ctx := cmd.Context()
			in, krs, err := a.openKeyrings(ctx, tenant)
			if err != nil {
				return err
			}
			defer in.Close()
			k := krs[0]
			if err := k.Retire(ctx, uint32(n)); err != nil {
				return err
			}
			if err := a.keyEvent(ctx, in, k, events.KeyRetire, map[string]any{"version": n}); err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, map[string]any{"keyring": k.Name(), "retired": n})
			}
			fmt.Fprintf(a.stdout, "%s: v%d destroyed\n", k.Name(), n)
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "keyring (\"system\" for the system keyring)")
	return cmd
}

func (a *app) keysMaintainCmd() *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "maintain",
		Short: "Rotate keys that are due and rewrap data onto active versions (once, or every --interval)",
		Long: `maintain is the automatic half of key rotation: for every keyring it rotates
when the active version reaches keys.rotate_after and rewraps old data. Run it
once from cron or a systemd timer, or with --interval as a long-running
service. (clawhold up runs it in-process.)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, err := a.open(ctx, false)
			if err != nil {
				return err
			}
			defer in.Close()
			if interval == 0 && cmd.Flags().Changed("interval") {
				interval = time.Duration(in.Config.Keys.MaintainInterval)
			}
			for {
				krs, err := in.Keyrings(ctx)
				if err != nil {
					return err
				}
				var out []keys.MaintainResult
				for _, k := range krs {
					res, err := k.Maintain(ctx)
					if err != nil {
						return err
					}
					if res.Rotated != 0 {
						if err := a.keyEvent(ctx, in, k, events.KeyRotate, map[string]any{"version": res.Rotated, "automatic": true}); err != nil {
							return err
						}
					}
					out = append(out, res)
				}
				if a.json {
					if err := writeJSON(a.stdout, out); err != nil {
						return err
					}
				} else {
					for _, r := range out {
						rot := "not due"
						if r.Rotated != 0 {
							rot = fmt.Sprintf("rotated to v%d", r.Rotated)
						}
						fmt.Fprintf(a.stdout, "%s: %s, rewrapped %d, failed %d\n", r.Keyring, rot, r.Rewrap.Rewrapped, r.Rewrap.Failed)
					}
				}
				if interval <= 0 {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 0, "repeat every interval until stopped (0 with the flag given: keys.maintain_interval)")
	return cmd
}

func (a *app) keysRewrapRootCmd() *cobra.Command {
	var oldConfig string
	cmd := &cobra.Command{
		Use:   "rewrap-root --old-config FILE",
		Short: "Move every keyring to the configured root key, from the root key named in an older config",
		Long: `rewrap-root re-wraps the material of every live key version (system and all
tenants) with the root key the current configuration names, opening it with the
root key that FILE names. Data is not re-encrypted. Use it to move from the
generated local root key to a KMS, or to rotate a local root key: set
root_key.file to a new path (a new key is generated there) and give the old
configuration. An interrupted run can be repeated. Keep the old root key until
the run has succeeded.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if oldConfig == "" {
				return fmt.Errorf("--old-config is required: a configuration file whose root_key section names the current root key")
			}
			old, err := config.Load(oldConfig)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			in, err := a.open(ctx, true)
			if err != nil {
				return err
			}
			defer in.Close()
			from, err := kms.Open(ctx, old.RootKey, in.DataDir)
			if err != nil {
				return fmt.Errorf("old root key (%s): %w", oldConfig, err)
			}
			if c, ok := from.(io.Closer); ok {
				defer c.Close()
			}
			if from.ID() == in.Root.ID() {
				return fmt.Errorf("%s names the same root key as the current configuration (%s): nothing to move", oldConfig, in.Root.ID())
			}
			krs, err := in.Keyrings(ctx)
			if err != nil {
				return err
			}
			type result struct {
				Keyring  string `json:"keyring"`
				Versions int    `json:"rewrapped_versions"`
			}
			var out []result
			for _, k := range krs {
				n, err := k.RewrapRoot(ctx, from)
				if err != nil {
					return err
				}
				if err := a.keyEvent(ctx, in, k, events.KeyRewrapRoot, map[string]any{"versions": n, "from": from.ID(), "to": in.Root.ID()}); err != nil {
					return err
				}
				out = append(out, result{k.Name(), n})
			}
			if a.json {
				return writeJSON(a.stdout, map[string]any{"from": from.ID(), "to": in.Root.ID(), "keyrings": out})
			}
			for _, r := range out {
				fmt.Fprintf(a.stdout, "%s: %d version(s) re-wrapped\n", r.Keyring, r.Versions)
			}
			fmt.Fprintf(a.stdout, "every keyring is now under %s; the old root key (%s) is no longer needed for this data\n", in.Root.ID(), from.ID())
			return nil
		},
	}
	cmd.Flags().StringVar(&oldConfig, "old-config", "", "configuration file naming the root key the keyrings are wrapped with now")
	return cmd
}
