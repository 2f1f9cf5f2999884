package audit

import (
	"context"
	"log/slog"
	"os"
	"time"
)

// WatchTarget is one thing the continuous audit looks at, under a stable
// name (clawhold up uses "" for its data dir and the tenant for a cell).
type WatchTarget struct {
	Name   string
	Target func() (*Target, error) // built afresh for every run
	// Files are watched for changes between runs (configs).
	Files []string
}

// WatchOptions configure Watch.
type WatchOptions struct {
	// Interval between full runs.
	Interval time.Duration
	// Poll is how often Files are checked for changes (default 5s).
	Poll time.Duration
	// Targets lists what to audit; called at every run, as cells come
	// and go.
	Targets func() []WatchTarget
	// OnNew is called for a critical finding that the previous run of
	// the same target did not have (at the first run: every critical).
	OnNew func(target string, f Finding)
	// OnResolved is called for a critical finding that went away.
	OnResolved func(target string, f Finding)
	Logger     *slog.Logger
}

// Watch re-runs the native checks every Interval, and when a watched
// file changes, until ctx ends: posture drift, a new critical, is
// reported through OnNew. A target that cannot be audited is logged and
// tried again at the next run.
func Watch(ctx context.Context, o WatchOptions) error {
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seen := map[string]map[string]Finding{} // target → finding key → critical
	stamps := map[string]time.Time{}
	// changed reports whether one of t's files changed since the last
	// look (a file seen for the first time is not a change).
	changed := func(t WatchTarget) bool {
		moved := false
		for _, f := range t.Files {
			var mt time.Time
			if fi, err := os.Stat(f); err == nil {
				mt = fi.ModTime()
			}
			if old, ok := stamps[f]; !ok || !old.Equal(mt) {
				stamps[f] = mt
				moved = moved || ok
			}
		}
		return moved
	}
	audit := func(wt WatchTarget) {
		t, err := wt.Target()
		var rep *Report
		if err == nil {
			rep, err = Run(ctx, t, Options{})
		}
		if err != nil {
			log.Warn("audit: cannot audit", "target", wt.Name, "err", err)
			if _, ok := seen[wt.Name]; !ok {
				seen[wt.Name] = nil // retried at the next interval, not every poll
			}
			return
		}
		now := map[string]Finding{}
		for _, f := range rep.Findings {
			if f.Severity == Critical {
				now[f.ID+"\x00"+f.Location.String()] = f
			}
		}
		prev := seen[wt.Name]
		for k, f := range now {
			if _, ok := prev[k]; !ok && o.OnNew != nil {
				o.OnNew(wt.Name, f)
			}
		}
		for k, f := range prev {
			if _, ok := now[k]; !ok && o.OnResolved != nil {
				o.OnResolved(wt.Name, f)
			}
		}
		seen[wt.Name] = now
		log.Debug("audit: ran", "target", wt.Name, "critical", rep.Summary.Critical, "warn", rep.Summary.Warn, "took", rep.Duration)
	}

	var last time.Time
	tick := time.NewTicker(o.Poll)
	defer tick.Stop()
	for {
		all := time.Since(last) >= o.Interval
		if all {
			last = time.Now()
		}
		for _, wt := range o.Targets() {
			_, known := seen[wt.Name]
			if moved := changed(wt); all || moved || !known {
				audit(wt)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
