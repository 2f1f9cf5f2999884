package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/instance"
)

// Retention says which backups Prune deletes, per tenant.
type Retention struct {
	Keep   int           // keep this many newest backups; 0: no count limit
	MaxAge time.Duration // delete backups older than this; 0: no age limit
}

// RetentionOf converts the configuration's backup.retention.
func RetentionOf(r config.BackupRetention) Retention {
	return Retention{Keep: r.Keep, MaxAge: time.Duration(r.MaxAge)}
}

// staleStaging is how old a staging directory must be before Prune takes
// it for the leftover of a crashed create rather than one in progress.
const staleStaging = 24 * time.Hour

// Prune deletes, for each tenant, the backups beyond r.Keep newest and
// those older than r.MaxAge, but never the tenant's newest complete backup,
// so a schedule that stopped working cannot age every backup away. It also
// removes staging directories left by crashed creates. It returns what it
// deleted.
func Prune(dir string, r Retention, now time.Time) ([]Info, error) {
	infos, err := List(dir)
	if err != nil {
		return nil, err
	}
	byTenant := map[string][]Info{}
	for _, i := range infos {
		byTenant[i.Tenant] = append(byTenant[i.Tenant], i)
	}
	var deleted []Info
	var errs []error
	for _, list := range byTenant {
		// list is oldest first; walk newest first.
		newestGood := ""
		for i := len(list) - 1; i >= 0; i-- {
			if list[i].Status == StatusComplete {
				newestGood = list[i].ID
				break
			}
		}
		kept := 0
		for i := len(list) - 1; i >= 0; i-- {
			b := list[i]
			drop := (r.Keep > 0 && kept >= r.Keep) || (r.MaxAge > 0 && now.Sub(b.Created) > r.MaxAge)
			if !drop || b.ID == newestGood {
				kept++
				continue
			}
			if err := remove(dir, b.ID); err != nil {
				errs = append(errs, err)
				continue
			}
			deleted = append(deleted, b)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, d := range ents {
		name := d.Name()
		if !d.IsDir() || !(strings.HasPrefix(name, stagingPref) || strings.HasPrefix(name, deletingPref)) {
			continue
		}
		if fi, err := d.Info(); err == nil && (strings.HasPrefix(name, deletingPref) || now.Sub(fi.ModTime()) > staleStaging) {
			if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
				errs = append(errs, fmt.Errorf("removing %s: %w", name, err))
			}
		}
	}
	return deleted, errors.Join(errs...)
}

// remove deletes backup id: renamed out of List's sight first, so a
// deletion that stops half way never leaves a damaged backup behind.
func remove(dir, id string) error {
	gone := filepath.Join(dir, deletingPref+id)
	if err := os.Rename(filepath.Join(dir, id), gone); err != nil {
		return fmt.Errorf("deleting backup %s: %w", id, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("deleting backup %s: %w", id, err)
	}
	return nil
}

// RunSchedule backs up every tenant of in each backup.schedule and then
// applies backup.retention, until ctx ends. A tenant whose newest complete
// backup is younger than the interval is skipped, so restarting clawhold
// up does not add backups. It returns at once when backup.schedule is 0.
// Failures are logged and retried at the next round; it returns nil when
// ctx ends.
//
// clawhold up runs it in a goroutine beside its other maintainers:
//
//	go backup.RunSchedule(ctx, in, backup.Options{Version: version, Logger: logger})
func RunSchedule(ctx context.Context, in *instance.Instance, o Options) error {
	interval := time.Duration(in.Config.Backup.Schedule)
	if interval <= 0 {
		return nil
	}
	o = o.withDefaults(in)
	for {
		next := RunOnce(ctx, in, o, interval)
		wait := max(next.Sub(o.Now()), time.Minute)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// RunOnce backs up each tenant whose newest complete backup is older than
// interval, prunes, and returns when the next backup falls due.
func RunOnce(ctx context.Context, in *instance.Instance, o Options, interval time.Duration) time.Time {
	o = o.withDefaults(in)
	now := o.Now()
	next := now.Add(interval)
	tenants, err := in.Tenants(ctx)
	if err != nil {
		o.Logger.Error("scheduled backup: listing tenants", "err", err)
		return next
	}
	for _, t := range tenants {
		if ctx.Err() != nil {
			return next
		}
		last, err := LastGood(o.Dir, t)
		if err == nil && now.Sub(last) < interval {
			next = minTime(next, last.Add(interval))
			continue
		}
		create := func() error { _, err := Create(ctx, in, t, o); return err }
		if o.Spawn != nil {
			create = func() error { return o.Spawn(ctx, t) }
		}
		if err := create(); err != nil {
			o.Logger.Error("scheduled backup failed", "tenant", t, "err", err)
		}
	}
	deleted, err := Prune(o.Dir, RetentionOf(in.Config.Backup.Retention), o.Now())
	for _, d := range deleted {
		o.Logger.Info("backup pruned", "id", d.ID, "tenant", d.Tenant)
	}
	if err != nil {
		o.Logger.Error("pruning backups", "err", err)
	}
	return next
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
