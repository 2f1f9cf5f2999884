package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/backup"
	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/up"
)

func (a *app) backupCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Create, list, verify, restore and prune encrypted tenant backups (docs/backups.md)",
	}
	cmd.PersistentFlags().StringVar(&dir, "backup-dir", "", "backup directory (default: backup.dir in the configuration, else <data dir>/backups)")
	options := func(in *instance.Instance) backup.Options {
		o := backup.Options{Dir: dir, Version: version, Logger: in.Logger}
		if o.Dir == "" {
			o.Dir = in.Config.BackupDir(in.DataDir)
		}
		return o
	}
	// backupDir resolves the directory without opening the installation:
	// list needs no root key.
	backupDir := func() (string, error) {
		if dir != "" {
			return dir, nil
		}
		cfg, err := a.loadConfig()
		if err != nil {
			return "", err
		}
		return cfg.BackupDir(datadir.Resolve(a.dataDir, cfg)), nil
	}

	var tenant string
	var all bool
	create := &cobra.Command{
		Use:   "create [--tenant T | --all]",
		Short: "Back up a tenant (database, users, cell home and workspace), sealed under the root key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			in, err := a.open(ctx, false)
			if err != nil {
				return err
			}
			defer in.Close()
			tenants := []string{tenant}
			if all {
				if tenants, err = in.Tenants(ctx); err != nil {
					return err
				}
			}
			type row struct {
				ID      string    `json:"id"`
				Tenant  string    `json:"tenant"`
				Created time.Time `json:"created"`
				Files   int       `json:"files"`
				Size    int64     `json:"size"`
			}
			var rows []row
			var errs []error
			for _, t := range tenants {
				// A running cell, its state encrypted or not, is backed
				// up online: nothing is stopped.
				m, err := backup.Create(ctx, in, t, options(in))
				if err != nil {
					errs = append(errs, fmt.Errorf("tenant %s: %w", t, err))
					continue
				}
				rows = append(rows, row{m.ID, m.Tenant, m.Created, len(m.Entries), m.BlobBytes})
				if !a.json {
					fmt.Fprintf(a.stdout, "backup %s of tenant %s: %d entries, %s\n", m.ID, m.Tenant, len(m.Entries), humanBytes(m.BlobBytes))
				}
			}
			if a.json {
				if err := writeJSON(a.stdout, rows); err != nil {
					return err
				}
			}
			return errors.Join(errs...)
		},
	}
	create.Flags().StringVar(&tenant, "tenant", instance.DefaultTenant, "tenant to back up")
	create.Flags().BoolVar(&all, "all", false, "back up every tenant")
	create.MarkFlagsMutuallyExclusive("tenant", "all")

	var listTenant string
	list := &cobra.Command{
		Use:   "list",
		Short: "List backups with their tenant, time, size and status (structural; verify authenticates)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := backupDir()
			if err != nil {
				return err
			}
			infos, err := backup.List(d)
			if err != nil {
				return err
			}
			var shown []backup.Info
			for _, i := range infos {
				if listTenant == "" || i.Tenant == listTenant {
					shown = append(shown, i)
				}
			}
			if a.json {
				if shown == nil {
					shown = []backup.Info{}
				}
				return writeJSON(a.stdout, shown)
			}
			now := time.Now()
			var rows [][]string
			for _, i := range shown {
				status := i.Status
				if i.Problem != "" {
					status += ": " + i.Problem
				}
				rows = append(rows, []string{i.ID, i.Tenant, i.Created.Local().Format(time.RFC3339), age(i.Created, now), humanBytes(i.Size), status})
			}
			return table(a.stdout, []string{"ID", "TENANT", "CREATED", "AGE", "SIZE", "STATUS"}, rows)
		},
	}
	list.Flags().StringVar(&listTenant, "tenant", "", "only this tenant's backups")

	var verifyAll bool
	verify := &cobra.Command{
		Use:   "verify ID | --all",
		Short: "Check a backup's key, manifest and every chunk and hash, without restoring",
		Args: func(cmd *cobra.Command, args []string) error {
			if verifyAll == (len(args) == 1) || len(args) > 1 {
				return errors.New("give one backup ID or --all")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			in, err := a.open(ctx, false)
			if err != nil {
				return err
			}
			defer in.Close()
			o := options(in)
			ids := args
			if verifyAll {
				infos, err := backup.List(o.Dir)
				if err != nil {
					return err
				}
				ids = nil
				for _, i := range infos {
					ids = append(ids, i.ID)
				}
			}
			type row struct {
				ID     string `json:"id"`
				Tenant string `json:"tenant,omitempty"`
				OK     bool   `json:"ok"`
				Error  string `json:"error,omitempty"`
			}
			var rows []row
			failed := 0
			for _, id := range ids {
				m, err := backup.Verify(ctx, in.Root, o.Dir, id)
				r := row{ID: id, OK: err == nil}
				if m != nil {
					r.Tenant = m.Tenant
				}
				if err != nil {
					r.Error = err.Error()
					failed++
				}
				rows = append(rows, r)
				if !a.json {
					if err != nil {
						fmt.Fprintf(a.stdout, "FAILED %s\n", err)
					} else {
						fmt.Fprintf(a.stdout, "ok %s (tenant %s, %d entries)\n", id, m.Tenant, len(m.Entries))
					}
				}
			}
			if a.json {
				if rows == nil {
					rows = []row{}
				}
				if err := writeJSON(a.stdout, rows); err != nil {
					return err
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d backups failed verification", failed, len(ids))
			}
			return nil
		},
	}
	verify.Flags().BoolVar(&verifyAll, "all", false, "verify every backup")

	var force bool
	restore := &cobra.Command{
		Use:   "restore ID [--force]",
		Short: "Verify a backup, then restore its tenant (database, users, cell) into this data directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			in, err := a.open(ctx, false)
			if errors.Is(err, instance.ErrNotInitialized) {
				return fmt.Errorf("%w\nto restore onto a fresh data directory, copy the root key file of the installation that made the backup "+
					"(or configure root_key for the same KMS key) instead of running init", err)
			}
			if err != nil {
				return err
			}
			defer in.Close()
			// A running clawhold up holds tenant databases open; replacing
			// one under it would lose its writes.
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, upErr := cell.NewControl(up.ControlSocket(in.DataDir)).List(sctx)
			cancel()
			if upErr == nil {
				return errors.New("clawhold up is running on this data directory: stop it before restoring")
			}
			m, err := backup.Restore(ctx, in, args[0], options(in), force)
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, map[string]any{"id": m.ID, "tenant": m.Tenant, "entries": len(m.Entries)})
			}
			fmt.Fprintf(a.stdout, "restored tenant %s from backup %s (%d entries); its cell starts with its history at the next clawhold up\n",
				m.Tenant, m.ID, len(m.Entries))
			return nil
		},
	}
	restore.Flags().BoolVar(&force, "force", false, "replace the tenant if it exists here")

	prune := &cobra.Command{
		Use:   "prune",
		Short: "Delete backups beyond backup.retention (the newest complete backup of a tenant is always kept)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			d, err := backupDir()
			if err != nil {
				return err
			}
			deleted, err := backup.Prune(d, backup.RetentionOf(cfg.Backup.Retention), time.Now())
			if a.json {
				if deleted == nil {
					deleted = []backup.Info{}
				}
				if jerr := writeJSON(a.stdout, deleted); jerr != nil {
					return jerr
				}
			} else {
				for _, i := range deleted {
					fmt.Fprintf(a.stdout, "deleted %s (tenant %s)\n", i.ID, i.Tenant)
				}
			}
			return err
		},
	}
	cmd.AddCommand(create, list, verify, restore, prune)
	return cmd
}

// humanBytes formats n in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
