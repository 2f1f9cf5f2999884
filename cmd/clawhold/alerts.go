package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/monitor/alert"
	"github.com/clawhold/clawhold/secrets"
)

// Exit statuses of `clawhold alerts test`.
const (
	alertsExitFailed  = 1 // a sink did not take the alert
	alertsExitNoSinks = 2 // nothing configured
)

func (a *app) alertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "Check where alerts go: send a test alert through the configured sinks",
		Long: `Alerts are what clawhold up's monitor raises: command rules, credential-file
access, login anomalies, baseline deviations. They go to the sinks under
alerts.sinks in the configuration file (webhook, slack, smtp, syslog, stderr),
routed by severity and rule, deduplicated and rate limited; every alert is
also an audit-log record. See docs/monitoring.md.`,
	}
	cmd.AddCommand(a.alertsTestCmd())
	return cmd
}

func (a *app) alertsTestCmd() *cobra.Command {
	var sinkName, severity string
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Send one test alert through every configured sink (or --sink NAME) and report each result",
		Long: `test sends one alert (rule alert.test) straight to every configured sink, or to
the one named with --sink, ignoring routing, deduplication and rate limits,
and prints each sink's result. A sink whose min_severity or rules would not
route an alert like this one is still tested, with a note.

Exit status: 0 every sink took the alert, 1 at least one failed, 2 no sink is
configured.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sev, err := alert.ParseSeverity(severity)
			if err != nil {
				return fmt.Errorf("--severity: %w", err)
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			if len(cfg.Alerts.Sinks) == 0 {
				fmt.Fprint(a.stderr, noSinksHelp(a.alertsConfigFile()))
				return exitCodeError(alertsExitNoSinks)
			}
			ctx := cmd.Context()
			sec := &alertSecrets{a: a}
			defer sec.close()
			routes, err := alert.FromConfig(cfg.Alerts, sec.get, a.stderr)
			if err != nil {
				return err
			}
			types := map[string]string{}
			for i, r := range routes {
				types[r.Sink.Name()] = cfg.Alerts.Sinks[i].Type
			}
			if sinkName != "" {
				i := slices.IndexFunc(routes, func(r alert.Route) bool { return r.Sink.Name() == sinkName })
				if i < 0 {
					return fmt.Errorf("--sink %s: no such sink; configured: %s", sinkName, strings.Join(slices.Sorted(maps.Keys(types)), ", "))
				}
				routes = routes[i : i+1]
			}
			return a.alertsTest(ctx, routes, types, sev)
		},
	}
	cmd.Flags().StringVar(&sinkName, "sink", "", "test only the sink with this name (a sink's name defaults to its type)")
	cmd.Flags().StringVar(&severity, "severity", "high", "severity of the test alert: info, low, medium, high, critical")
	return cmd
}

func (a *app) alertsTest(ctx context.Context, routes []alert.Route, types map[string]string, sev alert.Severity) error {
	host, _ := os.Hostname()
	test := alert.Alert{
		ID:          alert.NewID(),
		Time:        time.Now(),
		Tenant:      alert.SystemTenant,
		Rule:        "alert.test",
		Severity:    sev,
		Title:       "clawhold test alert",
		Description: fmt.Sprintf("Sent by `clawhold alerts test` on %s. If you can read this, the sink works; nothing happened.", host),
		User:        os.Getenv("USER"),
		Subject:     host,
		Evidence:    map[string]any{"host": host},
	}
	d := alert.NewDispatcher(alert.Options{Routes: routes, Logger: a.logger()})
	errs := d.Test(ctx, test)
	d.Close(ctx)

	type result struct {
		Sink  string `json:"sink"`
		Type  string `json:"type"`
		OK    bool   `json:"ok"`
		Error string `json:"error,omitempty"`
		// Routed says whether routing (min_severity, rules) would send an
		// alert like the test one to this sink.
		Routed bool `json:"routed"`
	}
	results := make([]result, 0, len(routes))
	failed := false
	for _, r := range routes {
		name := r.Sink.Name()
		res := result{Sink: name, Type: types[name], OK: errs[name] == nil, Routed: r.Matches(test)}
		if !res.OK {
			res.Error = errs[name].Error()
			failed = true
		}
		results = append(results, res)
	}
	if a.json {
		if err := writeJSON(a.stdout, map[string]any{"alert": test, "sinks": results}); err != nil {
			return err
		}
	} else {
		rows := make([][]string, len(results))
		for i, r := range results {
			status := "ok"
			if !r.OK {
				status = "FAILED: " + r.Error
			}
			if !r.Routed {
				why := "min_severity " + routes[i].MinSeverity.String()
				if sev >= routes[i].MinSeverity {
					why = "rules " + strings.Join(routes[i].Rules, ", ")
				}
				status += fmt.Sprintf(" (note: %s: routing would not send this alert here)", why)
			}
			rows[i] = []string{r.Sink, r.Type, status}
		}
		if err := table(a.stdout, []string{"SINK", "TYPE", "RESULT"}, rows); err != nil {
			return err
		}
	}
	if failed {
		return exitCodeError(alertsExitFailed)
	}
	return nil
}

// alertSecrets reads sink secrets from the system secret store, opening
// the instance only when a sink needs one (a stderr or syslog sink works
// without a data directory).
type alertSecrets struct {
	a  *app
	in *instance.Instance
	s  *secrets.Store
}

func (x *alertSecrets) get(ctx context.Context, name string) ([]byte, error) {
	if x.s == nil {
		in, s, err := x.a.openSecrets(ctx, instance.SystemTenant, false)
		if err != nil {
			return nil, fmt.Errorf("opening the system secret store: %w", err)
		}
		x.in, x.s = in, s
	}
	v, _, err := x.s.Get(ctx, "clawhold alerts test", name)
	return v, err
}

func (x *alertSecrets) close() {
	if x.in != nil {
		x.in.Close()
	}
}

// alertsConfigFile names the configuration file in use, for help text.
func (a *app) alertsConfigFile() string {
	if a.configPath != "" {
		return a.configPath
	}
	if p := config.DefaultPath(); p != "" {
		return p
	}
	return "the configuration file"
}

func noSinksHelp(path string) string {
	return `clawhold: no alert sink is configured: add alerts.sinks to ` + path + `, e.g.

alerts:
  sinks:
    - type: webhook                  # JSON, signed with HMAC-SHA256
      url: https://siem.example.com/clawhold
      secret: alerts/webhook-key     # clawhold secrets set --tenant system alerts/webhook-key
      min_severity: medium
    - type: smtp
      address: smtp.example.com:587  # STARTTLS required
      from: clawhold@example.com
      to: [security@example.com]
      username: clawhold@example.com
      secret: alerts/smtp-password
      min_severity: high
    - type: syslog
      address: unix:///dev/log
    - type: stderr

then run clawhold alerts test again. See docs/monitoring.md.
`
}
