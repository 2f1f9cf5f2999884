package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/monitor/auditlog"
)

// Exit codes of clawhold logs verify (docs/monitoring.md).
const (
	logsExitBroken = 1 // a log is broken
	logsExitError  = 2 // a log could not be verified
)

func (a *app) logsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Query, verify and export the tamper-evident audit logs",
		Long: `Every database keeps an audit log: the system's (logins, sessions, users,
alerts) and each tenant's (secret reads, key operations, execs, tool calls,
egress decisions). Records are sealed with that database's keys and
hash-chained; signed checkpoints anchor the chain in the database and in
<data dir>/audit/<tenant>.checkpoints.

Each command first moves events that are still waiting in the raw events
table into the logs it reads. Without --tenant, query, verify and export
cover every log: the system's and every tenant's.`,
	}
	cmd.AddCommand(a.logsQueryCmd(), a.logsVerifyCmd(), a.logsExportCmd())
	return cmd
}

// auditLog is one opened log.
type auditLog struct {
	tenant string
	log    *auditlog.Log
}

// openAuditLogs opens the logs of tenant ("system" for the system's), or of
// the system and every tenant when tenant is "", and ships their pending
// events. The caller closes in.
func (a *app) openAuditLogs(ctx context.Context, tenant string) (*instance.Instance, []auditLog, error) {
	in, err := a.open(ctx, false)
	if err != nil {
		return nil, nil, err
	}
	logs, err := auditLogsFor(ctx, in, tenant)
	if err != nil {
		in.Close()
		return nil, nil, err
	}
	return in, logs, nil
}

func auditLogsFor(ctx context.Context, in *instance.Instance, tenant string) ([]auditLog, error) {
	tenants := []string{tenant}
	if tenant == "" {
		ts, err := in.Tenants(ctx)
		if err != nil {
			return nil, err
		}
		tenants = append([]string{instance.SystemTenant}, ts...)
	} else if err := in.CheckTenant(ctx, tenant); err != nil {
		return nil, err
	}
	var out []auditLog
	for _, t := range tenants {
		l, err := in.AuditLog(ctx, t)
		if err != nil {
			return nil, err
		}
		if _, err := l.Ship(ctx); err != nil {
			return nil, err
		}
		out = append(out, auditLog{t, l})
	}
	return out, nil
}

// logFilterFlags are the selection flags query and export share.
type logFilterFlags struct {
	tenant       string
	all          bool
	since, until string
	types        []string
	user         string
}

func (f *logFilterFlags) register(cmd *cobra.Command, withTypes bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.tenant, "tenant", "", `one log: a tenant, or "system" (default: every log)`)
	fl.BoolVar(&f.all, "all", false, "every log: the system's and every tenant's (the default)")
	fl.StringVar(&f.since, "since", "", "records at or after: RFC 3339 (2026-03-01T09:00:00Z) or a duration ago (24h, 7d)")
	fl.StringVar(&f.until, "until", "", "records at or before: RFC 3339 or a duration ago")
	fl.StringVar(&f.user, "user", "", "records of this user (a login's user, or detail.user)")
	if withTypes {
		fl.StringSliceVar(&f.types, "type", nil, `event types, exact or a family ("auth.*"); repeatable or comma-separated`)
	}
	cmd.MarkFlagsMutuallyExclusive("tenant", "all")
}

func (f *logFilterFlags) filter(now time.Time) (auditlog.Filter, error) {
	var out auditlog.Filter
	var err error
	if out.Since, err = parseWhen(f.since, now); err != nil {
		return out, fmt.Errorf("--since: %w", err)
	}
	if out.Until, err = parseWhen(f.until, now); err != nil {
		return out, fmt.Errorf("--until: %w", err)
	}
	out.Types = f.types
	out.User = f.user
	return out, nil
}

// parseWhen reads an RFC 3339 time or a duration ago ("24h", "7d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := config.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-03-01T09:00:00Z) nor a duration ago (24h, 7d)", s)
	}
	return now.Add(-time.Duration(d)), nil
}

// logLine is a record as query and export print it.
func logLine(tenant string, r auditlog.Record) auditlog.ExportLine {
	return auditlog.ExportLine{Seq: r.Seq, Time: r.Time.UTC().Format(time.RFC3339Nano), Type: r.Type, Actor: r.Actor,
		Subject: r.Subject, User: r.User, Detail: r.Detail, Tenant: tenant, Hash: fmt.Sprintf("%x", r.Hash)}
}

func (a *app) logsQueryCmd() *cobra.Command {
	var f logFilterFlags
	var limit int
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Show audit-log records, newest last",
		Long: `Show the most recent records matching the filters (at most --limit, across
the logs read), oldest first. Without --tenant every log is read.

Examples:
  clawhold logs query --type 'auth.*' --since 24h
  clawhold logs query --tenant acme --type secret.read --user alice --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			filter, err := f.filter(time.Now())
			if err != nil {
				return err
			}
			if limit < 0 {
				return errors.New("--limit must be 0 (all) or more")
			}
			filter.Limit, filter.Newest = limit, true
			in, logs, err := a.openAuditLogs(ctx, f.tenant)
			if err != nil {
				return err
			}
			defer in.Close()
			type tagged struct {
				tenant string
				rec    auditlog.Record
			}
			var all []tagged
			for _, l := range logs {
				recs, err := l.log.Query(ctx, filter)
				if err != nil {
					return err
				}
				for _, r := range recs {
					all = append(all, tagged{l.tenant, r})
				}
			}
			slices.SortStableFunc(all, func(x, y tagged) int {
				if c := x.rec.Time.Compare(y.rec.Time); c != 0 {
					return c
				}
				return cmp.Or(strings.Compare(x.tenant, y.tenant), cmp.Compare(x.rec.Seq, y.rec.Seq))
			})
			if limit > 0 && len(all) > limit {
				all = all[len(all)-limit:]
			}
			lines := make([]auditlog.ExportLine, len(all))
			for i, t := range all {
				lines[i] = logLine(t.tenant, t.rec)
			}
			if a.json {
				return writeJSON(a.stdout, lines)
			}
			rows := make([][]string, len(lines))
			for i, l := range lines {
				detail := ""
				if len(l.Detail) > 0 {
					b, _ := json.Marshal(l.Detail)
					detail = clip(string(b), 80)
				}
				rows[i] = []string{l.Time, l.Tenant, strconv.FormatInt(l.Seq, 10), l.Type, clip(l.Actor, 40), clip(l.Subject, 48), l.User, detail}
			}
			return table(a.stdout, []string{"TIME", "LOG", "SEQ", "TYPE", "ACTOR", "SUBJECT", "USER", "DETAIL"}, rows)
		},
	}
	f.register(cmd, true)
	cmd.Flags().IntVar(&limit, "limit", 100, "show at most this many records, the newest (0: all)")
	return cmd
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func (a *app) logsVerifyCmd() *cobra.Command {
	var tenant, checkpoints string
	var all bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit logs' chains and signed checkpoints (exit 1 when one is broken)",
		Long: `Walk every record of each log: decrypt and authenticate it, recompute the
hash chain, and check every signed checkpoint (from the database, from
<data dir>/audit/<tenant>.checkpoints, and from --checkpoints FILE, a copy kept
elsewhere). Prints, per log, OK with the record and checkpoint counts, or the
first broken link: the seq and whether a record was modified, deleted or
reordered, the tail truncated, a checkpoint's signature bad, or retention's
pruned position inconsistent.

Without --tenant every log is verified: the system's and every tenant's.

Exit status: 0 when every log verifies, 1 when one is broken, 2 when a log
could not be verified (e.g. the root key is unavailable).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var extra []auditlog.Checkpoint
			if checkpoints != "" {
				// A missing file is an error here, not "no checkpoints".
				if _, err := os.Stat(checkpoints); err != nil {
					return a.logsError(fmt.Errorf("--checkpoints: %w", err))
				}
				var err error
				if extra, err = auditlog.ReadCheckpointFile(checkpoints); err != nil {
					return a.logsError(err)
				}
			}
			in, logs, err := a.openAuditLogs(ctx, tenant)
			if err != nil {
				return a.logsError(err)
			}
			defer in.Close()
			var reports []auditlog.Report
			broken := false
			for _, l := range logs {
				rep, err := l.log.Verify(ctx, auditlog.VerifyOptions{ExtraCheckpoints: extra})
				if err != nil {
					return a.logsError(err)
				}
				reports = append(reports, rep)
				broken = broken || !rep.OK
			}
			if a.json {
				if err := writeJSON(a.stdout, reports); err != nil {
					return err
				}
			} else {
				for _, r := range reports {
					if r.OK {
						fmt.Fprintf(a.stdout, "%s: OK: %d records, %d checkpoints, head %d", r.Tenant, r.Records, r.Checkpoints, r.Head)
						if r.PrunedSeq > 0 {
							fmt.Fprintf(a.stdout, ", pruned to %d", r.PrunedSeq)
						}
						fmt.Fprintln(a.stdout)
						continue
					}
					fmt.Fprintf(a.stdout, "%s: BROKEN at seq %d: %s: %s\n", r.Tenant, r.FirstBroken.Seq, r.FirstBroken.Kind, r.FirstBroken.Detail)
					if n := len(r.Breaks) - 1; n > 0 {
						fmt.Fprintf(a.stdout, "  (%d more problem(s) after it; --json lists them)\n", n)
					}
				}
			}
			if broken {
				return exitCodeError(logsExitBroken)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", `one log: a tenant, or "system" (default: every log)`)
	cmd.Flags().BoolVar(&all, "all", false, "every log (the default)")
	cmd.Flags().StringVar(&checkpoints, "checkpoints", "", "also check the checkpoints in this file (JSON lines, as in <data dir>/audit/*.checkpoints)")
	cmd.MarkFlagsMutuallyExclusive("tenant", "all")
	return cmd
}

// logsError reports err and exits 2, which scripts tell apart from "a log
// is broken".
func (a *app) logsError(err error) error {
	fmt.Fprintln(a.stderr, "clawhold:", err)
	return exitCodeError(logsExitError)
}

func (a *app) logsExportCmd() *cobra.Command {
	var f logFilterFlags
	var output string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write audit-log records as JSON lines, for a SIEM",
		Long: `Write every matching record as one JSON object per line, oldest first per
log: seq, time (RFC 3339), type, actor, subject, user, detail, tenant, and
hash (the chain's hash after the record, hex). Without --tenant every log
is exported. -o writes a new file (mode 0600) atomically instead of stdout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			filter, err := f.filter(time.Now())
			if err != nil {
				return err
			}
			in, logs, err := a.openAuditLogs(ctx, f.tenant)
			if err != nil {
				return err
			}
			defer in.Close()
			write := func(w io.Writer) (int, error) {
				total := 0
				for _, l := range logs {
					n, err := l.log.Export(ctx, w, filter)
					total += n
					if err != nil {
						return total, err
					}
				}
				return total, nil
			}
			if output == "" || output == "-" {
				_, err := write(a.stdout)
				return err
			}
			// Streamed into the temporary file (prepare), not buffered: a
			// log can be large.
			n := 0
			err = datadir.WriteFileAtomicFunc(output, nil, 0o600, func(f *os.File) error {
				w := bufio.NewWriter(f)
				var err error
				if n, err = write(w); err != nil {
					return err
				}
				return w.Flush()
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "exported %d records to %s\n", n, output)
			return nil
		},
	}
	f.register(cmd, true)
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	return cmd
}
