package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/secrets"
)

func (a *app) secretsImportCmd() *cobra.Command {
	var tenant, format, alias string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Import plaintext secrets from a .env file or OpenClaw's openclaw.json",
		Long: `import seals every plaintext credential it finds in FILE.

For openclaw.json (JSON5), each credential at a field where OpenClaw accepts a
SecretRef is stored under its config path (gateway/auth/token,
models/providers/openai/apiKey, ...) and replaced in the file by an exec
SecretRef served by "clawhold secrets provider"; the secrets.providers entry is
added if missing. The original file is kept as a 0600 backup beside it; the
rewritten file is plain JSON (comments are not kept). Credentials where
OpenClaw takes no SecretRef (hooks.token, ...) are reported and left in place.

For a .env file, each variable is stored under its name. The file is not
changed: delete it once the import is checked.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.importSecrets(cmd.Context(), args[0], format, tenant, alias, dryRun)
		},
	}
	tenantFlag(cmd, &tenant)
	cmd.Flags().StringVar(&format, "format", "auto", "auto (by file extension), env or openclaw")
	cmd.Flags().StringVar(&alias, "provider-alias", "clawhold", "secrets.providers alias the SecretRefs name")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be imported; change nothing")
	return cmd
}

// importSecrets is `clawhold secrets import`; `clawhold audit --fix` uses
// it to move a config's plaintext credentials into the store.
func (a *app) importSecrets(ctx context.Context, file, format, tenant, alias string, dryRun bool) error {
	path, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	if format == "auto" {
		format = "env"
		if ext := filepath.Ext(path); ext == ".json" || ext == ".json5" {
			format = "openclaw"
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	defer clear(data)

	var found []secrets.Imported
	var rewritten []byte
	var unsupported []secrets.Unsupported
	switch format {
	case "env":
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		found, err = secrets.ParseDotEnv(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	case "openclaw":
		if found, rewritten, unsupported, err = secrets.ExtractOpenClaw(data, alias); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	default:
		return fmt.Errorf("--format %q: use auto, env or openclaw", format)
	}
	defer func() {
		for _, f := range found {
			clear(f.Value)
		}
	}()

	type item struct {
		Name   string `json:"name"`
		Source string `json:"source"`
	}
	report := struct {
		File        string                `json:"file"`
		Tenant      string                `json:"tenant"`
		DryRun      bool                  `json:"dry_run"`
		Imported    []item                `json:"imported"`
		Unsupported []secrets.Unsupported `json:"unsupported,omitempty"`
		Backup      string                `json:"backup,omitempty"`
		AddedAlias  string                `json:"added_provider,omitempty"`
	}{File: path, Tenant: tenant, DryRun: dryRun, Imported: []item{}, Unsupported: unsupported}
	for _, f := range found {
		report.Imported = append(report.Imported, item{f.Name, f.Source})
	}

	if !dryRun && len(found) > 0 {
		in, s, err := a.openSecrets(ctx, tenant, true)
		if err != nil {
			return err
		}
		defer in.Close()
		db, err := in.DB(ctx, tenant)
		if err != nil {
			return err
		}
		for _, f := range found {
			if _, err := s.Set(ctx, actor(), f.Name, f.Value); err != nil {
				return err
			}
			if err := events.Append(ctx, db, events.Event{Type: events.SecretImport, Actor: actor(), Subject: f.Name,
				Detail: map[string]any{"tenant": tenant, "source": f.Source}}); err != nil {
				return err
			}
		}
		if rewritten != nil {
			exe, err := executable()
			if err != nil {
				return err
			}
			pc := secrets.NewProviderConfig(exe, in.DataDir, in.Config.Path, tenant, nil)
			out, added, err := secrets.EnsureProvider(rewritten, alias, pc)
			if err != nil {
				return err
			}
			if added {
				report.AddedAlias = alias
			}
			// The backup first: if rewriting fails, the original is safe twice.
			report.Backup = path + ".clawhold-backup-" + time.Now().UTC().Format("20060102T150405Z")
			if err := datadir.WriteFileAtomic(report.Backup, data, 0o600); err != nil {
				return fmt.Errorf("writing backup: %w", err)
			}
			if err := datadir.WriteFileAtomic(path, out, 0o600); err != nil {
				return fmt.Errorf("rewriting %s (original kept at %s): %w", path, report.Backup, err)
			}
		}
	}
	if a.json {
		return writeJSON(a.stdout, report)
	}
	verb := "imported"
	if dryRun {
		verb = "would import"
	}
	fmt.Fprintf(a.stdout, "%s %d secret(s) into tenant %s:\n", verb, len(found), tenant)
	for _, it := range report.Imported {
		fmt.Fprintf(a.stdout, "  %-45s from %s\n", it.Name, it.Source)
	}
	for _, u := range unsupported {
		fmt.Fprintf(a.stdout, "LEFT IN PLACE: %s: %s\n", u.Path, u.Reason)
	}
	if report.Backup != "" {
		fmt.Fprintf(a.stdout, "rewrote %s with SecretRefs; original kept at %s (0600)\n", path, report.Backup)
		if report.AddedAlias != "" {
			fmt.Fprintf(a.stdout, "added secrets.providers.%s; restart the gateway or run `openclaw secrets reload`\n", alias)
		}
	}
	if format == "env" && !dryRun && len(found) > 0 {
		fmt.Fprintf(a.stdout, "%s was not changed: delete it once you have checked the import\n", path)
	}
	if len(unsupported) > 0 && !strings.Contains(format, "env") {
		fmt.Fprintln(a.stdout, "OpenClaw accepts no SecretRef at the fields LEFT IN PLACE: protect them by file permissions or remove them.")
	}
	return nil
}
