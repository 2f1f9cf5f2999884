package anomaly

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/clawhold/clawhold/store"
)

// metricLogin names the per-user login profile rows in the baselines
// table; every other metric is a count series.
const metricLogin = "login"

// row is one row of the baselines table.
type row struct {
	metric, key string
	state       []byte
	pinned      *float64
	firstSeen   int64
	updatedAt   int64
}

func loadRows(ctx context.Context, db *store.DB) ([]row, error) {
	var rows []row
	err := db.View(ctx, func(tx *store.Tx) error {
		rs, err := tx.Query(ctx, `SELECT metric, key, state, pinned, first_seen, updated_at FROM baselines ORDER BY metric, key`)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var r row
			var state string
			var pinned sql.NullFloat64
			if err := rs.Scan(&r.metric, &r.key, &state, &pinned, &r.firstSeen, &r.updatedAt); err != nil {
				return err
			}
			r.state = []byte(state)
			if pinned.Valid {
				r.pinned = &pinned.Float64
			}
			rows = append(rows, r)
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("loading baselines from %s: %w", db.Name(), err)
	}
	return rows, nil
}

// saveRows writes learned state. The pinned column is the operator's and
// is never written here.
func saveRows(ctx context.Context, db *store.DB, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	err := db.Update(ctx, func(tx *store.Tx) error {
		for _, r := range rows {
			_, err := tx.Exec(ctx, `INSERT INTO baselines (metric, key, state, first_seen, updated_at) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (metric, key) DO UPDATE SET state = excluded.state, first_seen = excluded.first_seen, updated_at = excluded.updated_at`,
				r.metric, r.key, string(r.state), r.firstSeen, r.updatedAt)
			if err != nil {
				return fmt.Errorf("%s/%s: %w", r.metric, r.key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saving baselines to %s: %w", db.Name(), err)
	}
	return nil
}

// Baseline is one learned series, for display.
type Baseline struct {
	Metric    string    `json:"metric"`
	Key       string    `json:"key"`
	Mean      float64   `json:"mean"`   // events per hour
	Stddev    float64   `json:"stddev"` // per hour
	Threshold float64   `json:"threshold"`
	Pinned    bool      `json:"pinned"`  // Threshold was set by hand (pin or config)
	Samples   int       `json:"samples"` // closed hours learned from; logins for login profiles
	Learning  bool      `json:"learning"`
	FirstSeen time.Time `json:"first_seen"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Summary lists the baselines stored in db with the thresholds opts
// (sensitivity, configured pins) give them. Login profiles appear as
// metric "login" with the number of logins as Samples.
func Summary(ctx context.Context, db *store.DB, opts Options) ([]Baseline, error) {
	opts = opts.withDefaults()
	rows, err := loadRows(ctx, db)
	if err != nil {
		return nil, err
	}
	out := make([]Baseline, 0, len(rows))
	for _, r := range rows {
		b := Baseline{Metric: r.metric, Key: r.key, FirstSeen: time.UnixMilli(r.firstSeen).UTC(), UpdatedAt: time.UnixMilli(r.updatedAt).UTC()}
		if r.metric == metricLogin {
			var p profile
			if err := json.Unmarshal(r.state, &p); err != nil {
				return nil, fmt.Errorf("baseline %s/%s: %w", r.metric, r.key, err)
			}
			last := r.firstSeen
			if p.Last != nil {
				last = p.Last.Time
			}
			b.Samples = p.Logins
			b.Learning = time.Duration(last-r.firstSeen)*time.Millisecond < opts.LearningPeriod
			out = append(out, b)
			continue
		}
		var s series
		if len(r.state) > 0 && string(r.state) != "{}" {
			if err := json.Unmarshal(r.state, &s); err != nil {
				return nil, fmt.Errorf("baseline %s/%s: %w", r.metric, r.key, err)
			}
		}
		s.firstSeen = r.firstSeen
		b.Mean, b.Stddev, b.Samples = s.All.Mean, s.All.stddev(), s.samples()
		if v, ok := opts.pinned(r.metric, r.key, r.pinned); ok {
			b.Threshold, b.Pinned = v, true
		} else {
			b.Threshold = s.threshold(opts.Sensitivity, opts.Floor)
		}
		b.Learning = s.Last == 0 || time.Duration(s.Last-r.firstSeen)*time.Millisecond < opts.LearningPeriod
		out = append(out, b)
	}
	return out, nil
}

// Pin fixes the threshold (events per hour) of metric/key by hand; it
// wins over learning and over configured thresholds. A series not yet
// seen is created, so a threshold can be pinned before the first event.
func Pin(ctx context.Context, db *store.DB, metric, key string, value float64, now time.Time) error {
	if metric == "" || metric == metricLogin || key == "" {
		return fmt.Errorf("pinning %q/%q: need a count metric and a key", metric, key)
	}
	if value < 0 || value != value {
		return fmt.Errorf("pinning %s/%s: threshold must be a number ≥ 0", metric, key)
	}
	ms := now.UnixMilli()
	err := db.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO baselines (metric, key, state, pinned, first_seen, updated_at) VALUES (?, ?, '{}', ?, ?, ?)
			ON CONFLICT (metric, key) DO UPDATE SET pinned = excluded.pinned`, metric, key, value, ms, ms)
		return err
	})
	if err != nil {
		return fmt.Errorf("pinning %s/%s in %s: %w", metric, key, db.Name(), err)
	}
	return nil
}

// Unpin returns metric/key to its learned threshold. It reports whether
// the series had a pin.
func Unpin(ctx context.Context, db *store.DB, metric, key string) (bool, error) {
	var n int64
	err := db.Update(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `UPDATE baselines SET pinned = NULL WHERE metric = ? AND key = ? AND pinned IS NOT NULL`, metric, key)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("unpinning %s/%s in %s: %w", metric, key, db.Name(), err)
	}
	return n > 0, nil
}

// loadPins reads the hand-set thresholds in db.
func loadPins(ctx context.Context, db *store.DB) (map[skey]float64, error) {
	pins := map[skey]float64{}
	err := db.View(ctx, func(tx *store.Tx) error {
		rs, err := tx.Query(ctx, `SELECT metric, key, pinned FROM baselines WHERE pinned IS NOT NULL`)
		if err != nil {
			return err
		}
		defer rs.Close()
		for rs.Next() {
			var k skey
			var v float64
			if err := rs.Scan(&k.metric, &k.key, &v); err != nil {
				return err
			}
			pins[k] = v
		}
		return rs.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("loading pinned thresholds from %s: %w", db.Name(), err)
	}
	return pins, nil
}
