package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/up"
)

func (a *app) tenantsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenants", Short: "Add, list and remove tenants (each gets its own OpenClaw cell)"}
	cmd.AddCommand(&cobra.Command{
		Use:   "add NAME",
		Short: "Create a tenant: its database, keyring and (on first use) its cell",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := a.open(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer in.Close()
			if err := in.CheckTenant(cmd.Context(), args[0]); err == nil {
				return fmt.Errorf("tenant %s already exists", args[0])
			}
			// Each cell runs as a uid of its own, derived from the name.
			others, err := in.Tenants(cmd.Context())
			if err != nil {
				return err
			}
			for _, o := range others {
				if os.Geteuid() == 0 && cell.IDsFor(o) == cell.IDsFor(args[0]) {
					return fmt.Errorf("tenant %s would share its cell uid with tenant %s: choose another name", args[0], o)
				}
			}
			if err := in.EnsureTenant(cmd.Context(), args[0]); err != nil {
				return err
			}
			if _, err := in.Keyring(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "tenant %s created; add its users with: clawhold users add NAME --tenant %s\n", args[0], args[0])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List tenants with their user count",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := a.openFrontdoor(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer st.in.Close()
			names, err := st.in.Tenants(cmd.Context())
			if err != nil {
				return err
			}
			type row struct {
				Name  string `json:"name"`
				Users int    `json:"users"`
			}
			var rows []row
			for _, n := range names {
				users, err := st.accounts.List(cmd.Context(), account.ListOptions{Tenant: n})
				if err != nil {
					return err
				}
				rows = append(rows, row{n, len(users)})
			}
			if a.json {
				return writeJSON(a.stdout, rows)
			}
			var tr [][]string
			for _, r := range rows {
				tr = append(tr, []string{r.Name, strconv.Itoa(r.Users)})
			}
			return table(a.stdout, []string{"TENANT", "USERS"}, tr)
		},
	})
	var force bool
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a tenant with its database, secrets, events and cell state (irreversible)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			st, err := a.openFrontdoor(ctx, true)
			if err != nil {
				return err
			}
			defer st.in.Close()
			if err := st.in.CheckTenant(ctx, name); err != nil {
				return err
			}
			users, err := st.accounts.List(ctx, account.ListOptions{Tenant: name})
			if err != nil {
				return err
			}
			if len(users) > 0 && !force {
				names := make([]string, len(users))
				for i, u := range users {
					names[i] = u.Name
				}
				return fmt.Errorf("tenant %s still has users (%s): move or remove them first, or pass --force to disable them", name, strings.Join(names, ", "))
			}
			for _, u := range users {
				if err := st.accounts.Disable(ctx, cliMeta(), u.Name); err != nil {
					return err
				}
			}
			// A running clawhold up stops the cell first.
			ctl := cell.NewControl(up.ControlSocket(st.in.DataDir))
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := ctl.Act(sctx, name, "stop"); err != nil && !strings.Contains(err.Error(), "is clawhold up running") {
				return fmt.Errorf("stopping the cell of %s: %w", name, err)
			}
			if err := st.in.RemoveTenant(ctx, name); err != nil {
				return err
			}
			dir := cell.NewLayout(st.in.DataDir, name).Dir
			if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("removing %s: %w", dir, err)
			}
			fmt.Fprintf(a.stdout, "tenant %s removed\n", name)
			return nil
		},
	}
	rm.Flags().BoolVar(&force, "force", false, "disable the tenant's users instead of refusing")
	cmd.AddCommand(rm)
	return cmd
}

func (a *app) cellsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cells", Short: "List, start, stop, restart tenant cells of a running clawhold up, and show their logs"}
	control := func() (*cell.Control, error) {
		cfg, err := a.loadConfig()
		if err != nil {
			return nil, err
		}
		return cell.NewControl(up.ControlSocket(datadir.Resolve(a.dataDir, cfg))), nil
	}
	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "Show every cell's state", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := control()
			if err != nil {
				return err
			}
			st, err := c.List(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, st)
			}
			var rows [][]string
			for _, s := range st {
				rows = append(rows, []string{s.Tenant, s.State, s.Since.Format(time.RFC3339), strconv.Itoa(s.Restarts), s.LastError})
			}
			return table(a.stdout, []string{"TENANT", "STATE", "SINCE", "RESTARTS", "LAST ERROR"}, rows)
		},
	})
	for _, act := range []string{"start", "stop", "restart"} {
		cmd.AddCommand(&cobra.Command{
			Use: act + " TENANT", Short: strings.ToUpper(act[:1]) + act[1:] + " a tenant's cell", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := control()
				if err != nil {
					return err
				}
				if err := c.Act(cmd.Context(), args[0], act); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "cell %s: %s done\n", args[0], act)
				return nil
			},
		})
	}
	var n int
	logs := &cobra.Command{
		Use: "logs TENANT", Short: "Print the last lines of a cell's gateway output", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := control()
			if err != nil {
				return err
			}
			s, err := c.Logs(cmd.Context(), args[0], n)
			if err != nil {
				return err
			}
			if a.json {
				return writeJSON(a.stdout, map[string]any{"tenant": args[0], "lines": strings.Split(strings.TrimRight(s, "\n"), "\n")})
			}
			fmt.Fprint(a.stdout, s)
			return nil
		},
	}
	logs.Flags().IntVarP(&n, "lines", "n", 100, "how many lines")
	cmd.AddCommand(logs)
	return cmd
}
