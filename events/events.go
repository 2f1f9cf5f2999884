// Package events records security-relevant events (secret reads and writes,
// key rotations) in the database they concern, inside the same transaction
// as the action, so an action is never without its record.
//
// This is the raw feed; the tamper-evident, hash-chained audit log and the
// detectors built on it belong to package monitor.
package events

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/clawhold/clawhold/store"
)

// Types of event. Values are stable: detectors and SIEMs match on them.
const (
	SecretRead    = "secret.read"
	SecretWrite   = "secret.write"
	SecretDelete  = "secret.delete"
	SecretImport  = "secret.import"
	KeyRotate     = "key.rotate"
	KeyRewrap     = "key.rewrap"
	KeyRetire     = "key.retire"
	KeyRewrapRoot = "key.rewrap-root"
)

// Event is one record. Detail never holds a secret value.
type Event struct {
	ID      int64          `json:"id"`
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	Actor   string         `json:"actor"`   // who: "cli:root(uid 0)", "openclaw-provider:clawhold(pid 1234)"
	Subject string         `json:"subject"` // what: a secret name, a keyring
	Detail  map[string]any `json:"detail,omitempty"`
}

// AppendTx writes ev in tx.
func AppendTx(ctx context.Context, tx *store.Tx, ev Event) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	detail := []byte("{}")
	if len(ev.Detail) > 0 {
		var err error
		if detail, err = json.Marshal(ev.Detail); err != nil {
			return fmt.Errorf("encoding %s event: %w", ev.Type, err)
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO events (ts, type, actor, subject, detail) VALUES (?, ?, ?, ?, ?)`,
		ev.Time.UnixMilli(), ev.Type, ev.Actor, ev.Subject, string(detail))
	if err != nil {
		return fmt.Errorf("recording %s event: %w", ev.Type, err)
	}
	return nil
}

// Append writes ev in its own transaction.
func Append(ctx context.Context, db *store.DB, ev Event) error {
	return db.Update(ctx, func(tx *store.Tx) error { return AppendTx(ctx, tx, ev) })
}

// Filter selects events; zero fields match everything.
type Filter struct {
	Type  string
	Since time.Time
	Limit int // default 1000
}

// List returns matching events, oldest first.
func List(ctx context.Context, db *store.DB, f Filter) ([]Event, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	var out []Event
	err := db.View(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, ts, type, actor, subject, detail FROM events
			WHERE (? = '' OR type = ?) AND ts >= ? ORDER BY id LIMIT ?`,
			f.Type, f.Type, f.Since.UnixMilli(), f.Limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ev Event
			var ts int64
			var detail string
			if err := rows.Scan(&ev.ID, &ts, &ev.Type, &ev.Actor, &ev.Subject, &detail); err != nil {
				return err
			}
			ev.Time = time.UnixMilli(ts).UTC()
			if detail != "{}" {
				if err := json.Unmarshal([]byte(detail), &ev.Detail); err != nil {
					return fmt.Errorf("event %d: %w", ev.ID, err)
				}
			}
			out = append(out, ev)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing events in %s: %w", db.Name(), err)
	}
	return out, nil
}
