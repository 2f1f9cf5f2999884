package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/monitor/anomaly"
)

func (a *app) baselinesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "baselines",
		Short: "Show learned baselines and pin thresholds by hand",
		Long: `clawhold learns what normal looks like: the hourly rate of sessions per user
and per tenant, and per tenant of commands run, tool calls, denied egress and
secret reads; and each user's login countries, devices and hours. A rate above
mean + k·σ (k = monitor.baselines.sensitivity, default 3; at least 10 an hour)
alerts, once the series has been learned for monitor.logins.learning_period.

"pin" fixes a series' threshold (events per hour) by hand; it wins over
learning and over monitor.baselines.thresholds. A running "clawhold up" picks
up pins within a minute.`,
	}
	cmd.AddCommand(a.baselinesShowCmd(), a.baselinesPinCmd(), a.baselinesUnpinCmd())
	return cmd
}

// tenantBaseline is one row of "baselines show".
type tenantBaseline struct {
	Tenant string `json:"tenant"`
	anomaly.Baseline
}

func (a *app) baselinesShowCmd() *cobra.Command {
	var tenant string
	var all bool
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show learned baselines: mean and σ per hour, threshold, samples, learning",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tenant != "" && all {
				return fmt.Errorf("give --tenant NAME or --all, not both")
			}
			ctx := cmd.Context()
			in, err := a.open(ctx, false)
			if err != nil {
				return err
			}
			defer in.Close()
			names := []string{tenant}
			if tenant == "" {
				ts, err := in.Tenants(ctx)
				if err != nil {
					return fmt.Errorf("listing tenants: %w", err)
				}
				names = append([]string{instance.SystemTenant}, ts...)
			} else if err := in.CheckTenant(ctx, tenant); err != nil {
				return err
			}
			opts := anomaly.FromConfig(in.Config.Monitor.Logins, in.Config.Monitor.Baselines)
			out := []tenantBaseline{}
			for _, n := range names {
				db, err := in.DB(ctx, n)
				if err != nil {
					return err
				}
				bs, err := anomaly.Summary(ctx, db, opts)
				if err != nil {
					return err
				}
				for _, b := range bs {
					out = append(out, tenantBaseline{n, b})
				}
			}
			if a.json {
				return writeJSON(a.stdout, out)
			}
			if len(out) == 0 {
				fmt.Fprintln(a.stdout, "no baselines yet: they are learned by `clawhold up` from events")
				return nil
			}
			var rows [][]string
			for _, b := range out {
				learning := "no"
				if b.Learning {
					learning = "yes"
				}
				if b.Metric == "login" {
					rows = append(rows, []string{b.Tenant, b.Metric, b.Key, "-", "-", "-", strconv.Itoa(b.Samples) + " logins", learning})
					continue
				}
				thr := strconv.FormatFloat(b.Threshold, 'f', 1, 64)
				if b.Pinned {
					thr += " (pinned)"
				}
				rows = append(rows, []string{b.Tenant, b.Metric, b.Key, strconv.FormatFloat(b.Mean, 'f', 2, 64),
					strconv.FormatFloat(b.Stddev, 'f', 2, 64), thr, strconv.Itoa(b.Samples) + " h", learning})
			}
			return table(a.stdout, []string{"TENANT", "METRIC", "KEY", "MEAN/H", "σ", "THRESHOLD/H", "SAMPLES", "LEARNING"}, rows)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", `one tenant ("system" for the system database); default all`)
	cmd.Flags().BoolVar(&all, "all", false, "the system and every tenant (the default)")
	return cmd
}

// withBaselineDB checks METRIC, KEY and --tenant and opens the tenant's database.
func (a *app) withBaselineDB(ctx context.Context, tenant, metric, key string, fn func(*instance.Instance) error) error {
	if tenant == "" {
		return fmt.Errorf("name the database with --tenant NAME: tenant-wide series (key %q) live in the tenant's, per-user session series in \"system\"", anomaly.KeyAll)
	}
	if !slices.Contains(anomaly.Metrics(), metric) {
		return fmt.Errorf("unknown metric %q (one of %s)", metric, strings.Join(anomaly.Metrics(), ", "))
	}
	if key == "" {
		return fmt.Errorf("empty key: use %q for a tenant-wide series, or a user name", anomaly.KeyAll)
	}
	in, err := a.open(ctx, false)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := in.CheckTenant(ctx, tenant); err != nil {
		return err
	}
	return fn(in)
}

func (a *app) baselinesPinCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "pin METRIC KEY VALUE",
		Short: "Fix the threshold (events per hour) of one series by hand",
		Example: `  clawhold baselines pin process.exec '*' 500 --tenant acme
  clawhold baselines pin session.create alice 5 --tenant system`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			metric, key := args[0], args[1]
			v, err := strconv.ParseFloat(args[2], 64)
			if err != nil || v < 0 || v != v || v > 1e12 {
				return fmt.Errorf("VALUE %q: want a number of events per hour ≥ 0", args[2])
			}
			ctx := cmd.Context()
			return a.withBaselineDB(ctx, tenant, metric, key, func(in *instance.Instance) error {
				db, err := in.DB(ctx, tenant)
				if err != nil {
					return err
				}
				if err := anomaly.Pin(ctx, db, metric, key, v, time.Now()); err != nil {
					return err
				}
				if a.json {
					return writeJSON(a.stdout, map[string]any{"tenant": tenant, "metric": metric, "key": key, "pinned": v})
				}
				fmt.Fprintf(a.stdout, "pinned %s/%s in %s at %g per hour\n", metric, key, tenant, v)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", `the series' database: a tenant, or "system" for per-user session series (required)`)
	return cmd
}

func (a *app) baselinesUnpinCmd() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "unpin METRIC KEY",
		Short: "Return one series to its learned threshold",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			metric, key := args[0], args[1]
			ctx := cmd.Context()
			return a.withBaselineDB(ctx, tenant, metric, key, func(in *instance.Instance) error {
				db, err := in.DB(ctx, tenant)
				if err != nil {
					return err
				}
				ok, err := anomaly.Unpin(ctx, db, metric, key)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("%s/%s in %s has no pinned threshold", metric, key, tenant)
				}
				if a.json {
					return writeJSON(a.stdout, map[string]any{"tenant": tenant, "metric": metric, "key": key, "pinned": nil})
				}
				fmt.Fprintf(a.stdout, "unpinned %s/%s in %s: the learned threshold applies\n", metric, key, tenant)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", `the series' database: a tenant, or "system" (required)`)
	return cmd
}
