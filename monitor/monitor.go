// Package monitor turns clawhold's events into detections and alerts and
// keeps the evidence (issue 9, docs/monitoring.md).
//
// Every component still records raw events as before; the audit log
// (package auditlog) moves them into one sealed, hash-chained log per
// database. A Monitor follows the tail of every log, runs the detectors on
// each new record — command rules (cmdrule) on process.exec, unexpected
// credential-file access, login anomalies and learned baselines (anomaly)
// — dispatches the resulting alerts (package alert) and appends each alert
// to the log it came from. Detection reads what is already in the log, so
// an alert always points at durable evidence, whichever process (clawhold
// up, a CLI command) wrote the event.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/monitor/alert"
	"github.com/clawhold/clawhold/monitor/anomaly"
	"github.com/clawhold/clawhold/monitor/auditlog"
	"github.com/clawhold/clawhold/monitor/cmdrule"
)

// SystemLog names the system's log (the system database).
const SystemLog = "system"

// Event types the monitor writes.
const (
	// EventAlert is an alert, recorded in the log of the tenant it
	// concerns (the system's for system-wide alerts).
	EventAlert = "alert"
	// EventFileAccess is one access to a watched file (package fileaccess).
	EventFileAccess = "file.access"
)

// Options configure a Monitor.
type Options struct {
	// Log opens the audit log of a tenant (SystemLog for the system's).
	Log func(ctx context.Context, tenant string) (*auditlog.Log, error)
	// Tenants lists the logs to follow, SystemLog included.
	Tenants func(ctx context.Context) ([]string, error)
	// Commands evaluates process.exec command lines.
	Commands *cmdrule.Engine
	// AllowedHosts is a tenant's egress allowlist, for rules on unknown
	// download hosts.
	AllowedHosts func(tenant string) []string
	// Anomalies is the login and baseline detector (nil: none); the
	// monitor feeds it every record and flushes its state.
	Anomalies *anomaly.Detector
	// Alerts receives every alert.
	Alerts *alert.Dispatcher

	Poll               time.Duration // default 250ms
	CheckpointInterval time.Duration // default 1m
	Retention          time.Duration // 0: keep forever
	Now                func() time.Time
	Logger             *slog.Logger
}

// Monitor follows the audit logs. Run it once.
type Monitor struct {
	o Options

	mu      sync.Mutex
	cursors map[string]int64 // last seq run through the detectors, per log
}

// New returns a Monitor.
func New(o Options) *Monitor {
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.CheckpointInterval <= 0 {
		o.CheckpointInterval = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.AllowedHosts == nil {
		o.AllowedHosts = func(string) []string { return nil }
	}
	return &Monitor{o: o, cursors: map[string]int64{}}
}

// Run follows every log until ctx ends: ship raw events, detect, alert;
// checkpoint every CheckpointInterval and apply retention hourly. On the
// way out it ships and checkpoints once more.
func (m *Monitor) Run(ctx context.Context) error {
	poll := time.NewTicker(m.o.Poll)
	defer poll.Stop()
	checkpoint := time.NewTicker(m.o.CheckpointInterval)
	defer checkpoint.Stop()
	lastPrune := time.Time{}
	for {
		m.Step(ctx)
		select {
		case <-ctx.Done():
			final := context.WithoutCancel(ctx)
			m.Step(final)
			m.each(final, func(tenant string, l *auditlog.Log) error {
				_, err := l.Checkpoint(final)
				return err
			})
			m.flushAnomalies(final)
			return ctx.Err()
		case <-poll.C:
		case <-checkpoint.C:
			m.each(ctx, func(tenant string, l *auditlog.Log) error {
				_, err := l.Checkpoint(ctx)
				return err
			})
			m.flushAnomalies(ctx)
		}
		if m.o.Retention > 0 && m.o.Now().Sub(lastPrune) >= time.Hour {
			lastPrune = m.o.Now()
			before := lastPrune.Add(-m.o.Retention)
			m.each(ctx, func(tenant string, l *auditlog.Log) error {
				n, err := l.Prune(ctx, before)
				if n > 0 {
					m.o.Logger.Info("monitor: retention pruned the audit log", "log", tenant, "records", n)
				}
				return err
			})
		}
	}
}

// Step ships and runs the detectors once over every log.
func (m *Monitor) Step(ctx context.Context) {
	m.each(ctx, func(tenant string, l *auditlog.Log) error { return m.follow(ctx, tenant, l) })
}

func (m *Monitor) each(ctx context.Context, fn func(string, *auditlog.Log) error) {
	tenants, err := m.o.Tenants(ctx)
	if err != nil {
		m.o.Logger.Warn("monitor: listing tenants", "err", err)
		return
	}
	for _, t := range tenants {
		l, err := m.o.Log(ctx, t)
		if err == nil {
			err = fn(t, l)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			m.o.Logger.Warn("monitor: audit log", "log", t, "err", err)
		}
	}
}

// follow ships tenant's raw events into its log and runs the detectors on
// every record after the cursor. A log seen for the first time starts at
// its head as it was before this process shipped anything: what happened
// while no monitor ran is shipped now and detected, what was detected by
// an earlier run is not alerted again.
func (m *Monitor) follow(ctx context.Context, tenant string, l *auditlog.Log) error {
	m.mu.Lock()
	cursor, seen := m.cursors[tenant]
	m.mu.Unlock()
	if !seen {
		head, err := l.Head(ctx)
		if err != nil {
			return err
		}
		cursor = head
	}
	if _, err := l.Ship(ctx); err != nil {
		return err
	}
	for {
		recs, err := l.Query(ctx, auditlog.Filter{AfterSeq: cursor, Limit: 512})
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			break
		}
		var out []alert.Alert
		for _, r := range recs {
			cursor = r.Seq
			out = append(out, m.Detect(tenant, r)...)
			if m.o.Anomalies == nil || r.Type == EventAlert {
				continue
			}
			ds, err := m.o.Anomalies.Observe(ctx, tenant, toEvent(r))
			if err != nil {
				m.o.Logger.Warn("monitor: anomaly detection", "log", tenant, "seq", r.Seq, "err", err)
			}
			for _, d := range ds {
				out = append(out, m.fromDetection(tenant, r, d))
			}
		}
		if err := m.raise(ctx, l, out); err != nil {
			return err
		}
	}
	m.mu.Lock()
	m.cursors[tenant] = cursor
	m.mu.Unlock()
	return nil
}

func (m *Monitor) flushAnomalies(ctx context.Context) {
	if m.o.Anomalies == nil {
		return
	}
	if err := m.o.Anomalies.Flush(ctx); err != nil {
		m.o.Logger.Warn("monitor: saving baselines", "err", err)
	}
}

// raise records each alert in the log, then dispatches it: the record
// comes first, so an alert that reached a sink is always in the evidence.
func (m *Monitor) raise(ctx context.Context, l *auditlog.Log, alerts []alert.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	evs := make([]events.Event, len(alerts))
	for i, a := range alerts {
		evs[i] = events.Event{Time: a.Time, Type: EventAlert, Actor: "clawhold:monitor", Subject: a.Rule, Detail: alertDetail(a)}
	}
	if _, err := l.Append(ctx, evs...); err != nil {
		return fmt.Errorf("recording %d alerts: %w", len(alerts), err)
	}
	for _, a := range alerts {
		m.o.Logger.Warn("monitor: alert", "tenant", a.Tenant, "rule", a.Rule, "severity", a.Severity.String(), "subject", a.Subject)
		if m.o.Alerts != nil {
			m.o.Alerts.Dispatch(a)
		}
	}
	return nil
}

func alertDetail(a alert.Alert) map[string]any {
	d := map[string]any{"id": a.ID, "severity": a.Severity.String(), "title": a.Title}
	for k, v := range map[string]string{"description": a.Description, "technique": a.Technique, "user": a.User, "subject": a.Subject} {
		if v != "" {
			d[k] = v
		}
	}
	if len(a.Evidence) > 0 {
		d["evidence"] = a.Evidence
	}
	return d
}

// Detect runs the stateless detectors on one record of tenant's log.
func (m *Monitor) Detect(tenant string, r auditlog.Record) []alert.Alert {
	switch r.Type {
	case "process.exec":
		return m.commandAlerts(tenant, r)
	case EventFileAccess:
		if expected, _ := r.Detail["expected"].(bool); expected {
			return nil
		}
		a := m.newAlert(tenant, r, "file.unexpected_access", alert.High,
			"Credential file accessed by an unexpected process",
			fmt.Sprintf("%v of %s by %v", r.Detail["kind"], r.Subject, r.Detail["exe"]), "T1552.001", r.Subject)
		for _, k := range []string{"kind", "pid", "ppid", "uid", "exe", "argv"} {
			if v, ok := r.Detail[k]; ok {
				a.Evidence[k] = v
			}
		}
		return []alert.Alert{a}
	case "cell.tamper":
		return []alert.Alert{m.newAlert(tenant, r, "storage.tamper", alert.Critical,
			"Encrypted cell state failed authentication",
			"a block of the cell's encrypted state was modified outside clawhold", "T1565.001", r.Subject)}
	case "audit.critical":
		title, _ := r.Detail["title"].(string)
		return []alert.Alert{m.newAlert(tenant, r, "posture."+r.Subject, alert.High,
			"New critical posture finding: "+title, fmt.Sprint(r.Detail["evidence"]), "", r.Subject)}
	}
	return nil
}

func (m *Monitor) commandAlerts(tenant string, r auditlog.Record) []alert.Alert {
	if m.o.Commands == nil {
		return nil
	}
	proc, _ := r.Detail["process"].(map[string]any)
	raw, _ := proc["argv"].([]any)
	if len(raw) == 0 {
		return nil
	}
	argv := make([]string, len(raw))
	for i, a := range raw {
		argv[i], _ = a.(string)
	}
	line := cmdrule.CommandLine(argv)
	var out []alert.Alert
	for _, mt := range m.o.Commands.Evaluate(line, cmdrule.EvalContext{AllowedHosts: m.o.AllowedHosts(tenant)}) {
		sev, err := alert.ParseSeverity(string(mt.Severity))
		if err != nil {
			sev = alert.Medium
		}
		a := m.newAlert(tenant, r, "cmd."+mt.Rule, sev, mt.Description, line, mt.Technique, mt.Part)
		a.Evidence["command"] = line
		a.Evidence["part"] = mt.Part
		if mt.Origin != "" {
			a.Evidence["origin"] = mt.Origin
		}
		for _, k := range []string{"pid", "ppid", "uid", "cwd", "path"} {
			if v, ok := proc[k]; ok {
				a.Evidence[k] = v
			}
		}
		out = append(out, a)
	}
	return out
}

func (m *Monitor) newAlert(tenant string, r auditlog.Record, rule string, sev alert.Severity, title, desc, technique, subject string) alert.Alert {
	return alert.Alert{
		ID: alert.NewID(), Time: m.o.Now(), Tenant: tenant, Rule: rule, Severity: sev,
		Title: title, Description: desc, Technique: technique, User: r.User, Subject: subject,
		Evidence: map[string]any{"seq": r.Seq, "event": r.Type, "event_time": r.Time.UTC().Format(time.RFC3339Nano), "actor": r.Actor},
		Count:    1, FirstSeen: r.Time, LastSeen: r.Time,
	}
}

func (m *Monitor) fromDetection(tenant string, r auditlog.Record, d anomaly.Detection) alert.Alert {
	sev, err := alert.ParseSeverity(d.Severity)
	if err != nil {
		sev = alert.Medium
	}
	if d.Tenant != "" {
		tenant = d.Tenant
	}
	ev := map[string]any{"seq": r.Seq, "event": r.Type, "event_time": r.Time.UTC().Format(time.RFC3339Nano)}
	for k, v := range d.Evidence {
		ev[k] = v
	}
	return alert.Alert{
		ID: alert.NewID(), Time: m.o.Now(), Tenant: tenant, Rule: d.Rule, Severity: sev, Title: d.Title,
		Technique: d.Technique, User: d.User, Subject: strings.TrimSpace(d.User), Evidence: ev,
		Count: 1, FirstSeen: r.Time, LastSeen: r.Time,
	}
}

func toEvent(r auditlog.Record) events.Event {
	return events.Event{ID: r.Seq, Time: r.Time, Type: r.Type, Actor: r.Actor, Subject: r.Subject, Detail: r.Detail}
}
