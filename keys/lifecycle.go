package keys

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/clawhold/clawhold/store"
)

// State is a key version's NIST SP 800-57 state as clawhold applies it.
type State string

const (
	StateActive      State = "active"      // encrypts and decrypts
	StateDeactivated State = "deactivated" // superseded: decrypt and rewrap only
	StateExpired     State = "expired"     // past max age: decrypt and rewrap only
	StateDestroyed   State = "destroyed"   // retired: material erased
)

// VersionStatus describes one key version.
type VersionStatus struct {
	Version   uint32    `json:"version"`
	Algorithm string    `json:"algorithm"`
	State     State     `json:"state"`
	Created   time.Time `json:"created"`
	AgeDays   float64   `json:"age_days"`
	Expires   time.Time `json:"expires"` // when it stops encrypting
	Records   int64     `json:"records"` // ciphertexts still sealed with it
	RootKeyID string    `json:"root_key_id"`
}

// Status is a keyring's versions, newest first, and what needs doing.
type Status struct {
	Keyring  string          `json:"keyring"`
	Tenant   string          `json:"tenant"`
	Active   uint32          `json:"active_version"`
	Versions []VersionStatus `json:"versions"`
	Warnings []string        `json:"warnings,omitempty"`
}

// Status reports ages, states and record counts per version.
func (k *Keyring) Status(ctx context.Context) (Status, error) {
	st := Status{Keyring: k.name, Tenant: k.tenant}
	var counts map[uint32]int64
	err := k.db.View(ctx, func(tx *store.Tx) error {
		if err := k.loadTx(ctx, tx); err != nil {
			return err
		}
		var err error
		counts, err = k.countsTx(ctx, tx)
		return err
	})
	if err != nil {
		return st, fmt.Errorf("status of %s: %w", k.name, err)
	}
	now := k.opts.Now()
	p := k.opts.Policy
	k.mu.RLock()
	st.Active = k.primary
	for _, v := range k.versions {
		vs := VersionStatus{
			Version:   v.n,
			Algorithm: v.alg.String(),
			Created:   v.created.UTC(),
			AgeDays:   float64(now.Sub(v.created)) / float64(24*time.Hour),
			Expires:   v.created.Add(p.MaxAge).UTC(),
			Records:   counts[v.n],
			RootKeyID: v.rootID,
		}
		age := now.Sub(v.created)
		switch {
		case !v.destroyed.IsZero():
			vs.State = StateDestroyed
		case age >= p.MaxAge:
			vs.State = StateExpired
		case !v.deactivated.IsZero():
			vs.State = StateDeactivated
		default:
			vs.State = StateActive
		}
		st.Versions = append(st.Versions, vs)
	}
	k.mu.RUnlock()
	slices.SortFunc(st.Versions, func(a, b VersionStatus) int { return int(b.Version) - int(a.Version) })

	for _, vs := range st.Versions {
		age := time.Duration(vs.AgeDays * float64(24*time.Hour))
		switch {
		case vs.Version == st.Active && vs.State == StateExpired:
			st.Warnings = append(st.Warnings, fmt.Sprintf(
				"%s v%d is past its %s maximum age and will not encrypt: run `clawhold keys rotate`",
				k.name, vs.Version, fmtDays(p.MaxAge)))
		case vs.Version == st.Active && age >= p.RotateAfter:
			st.Warnings = append(st.Warnings, fmt.Sprintf(
				"%s v%d is %s old (rotation due at %s, hard limit %s): run `clawhold keys rotate`",
				k.name, vs.Version, fmtDays(age), fmtDays(p.RotateAfter), fmtDays(p.MaxAge)))
		case vs.Version != st.Active && vs.State != StateDestroyed && vs.Records > 0:
			st.Warnings = append(st.Warnings, fmt.Sprintf(
				"%s v%d still seals %d record(s): run `clawhold keys rewrap`", k.name, vs.Version, vs.Records))
		}
	}
	return st, nil
}

func fmtDays(d time.Duration) string {
	return fmt.Sprintf("%.0fd", float64(d)/float64(24*time.Hour))
}

func (k *Keyring) countsTx(ctx context.Context, tx *store.Tx) (map[uint32]int64, error) {
	counts := make(map[uint32]int64)
	for _, t := range k.opts.Tables {
		rows, err := tx.Query(ctx, fmt.Sprintf(`SELECT %s, COUNT(*) FROM %s GROUP BY %s`,
			t.VersionColumn, t.Table, t.VersionColumn))
		if err != nil {
			return nil, fmt.Errorf("counting %s: %w", t.Table, err)
		}
		for rows.Next() {
			var v, n int64
			if err := rows.Scan(&v, &n); err != nil {
				rows.Close()
				return nil, err
			}
			counts[uint32(v)] += n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return counts, nil
}

// RewrapResult counts what a rewrap did.
type RewrapResult struct {
	Rewrapped int      `json:"rewrapped"`
	Failed    int      `json:"failed"`
	Errors    []string `json:"errors,omitempty"` // record ids that could not be opened
}

// rewrapBatch bounds how long one rewrap transaction holds the writer.
const rewrapBatch = 64

// Rewrap re-seals every record not under the active version with the active
// version, without the plaintext ever leaving this process. Records written
// concurrently are never lost: each row is replaced only if it still holds
// the ciphertext that was opened.
func (k *Keyring) Rewrap(ctx context.Context) (RewrapResult, error) {
	var res RewrapResult
	if err := k.RotateIfDue(ctx); err != nil {
		return res, err
	}
	for _, t := range k.opts.Tables {
		after := ""
		for {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			var batch []string
			err := k.db.Update(ctx, func(tx *store.Tx) error {
				batch = batch[:0]
				active, err := k.activeTx(ctx, tx)
				if err != nil {
					return err
				}
				rows, err := tx.Query(ctx, fmt.Sprintf(
					`SELECT %[1]s, %[2]s, %[3]s FROM %[4]s WHERE %[3]s <> ? AND %[1]s > ? ORDER BY %[1]s LIMIT %[5]d`,
					t.KeyColumn, t.CipherColumn, t.VersionColumn, t.Table, rewrapBatch), int64(active.n), after)
				if err != nil {
					return err
				}
				type row struct {
					id string
					ct []byte
				}
				var todo []row
				for rows.Next() {
					var r row
					var v int64
					if err := rows.Scan(&r.id, &r.ct, &v); err != nil {
						rows.Close()
						return err
					}
					todo = append(todo, r)
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					return err
				}
				for _, r := range todo {
					batch = append(batch, r.id)
					c := Context{Tenant: k.tenant, Kind: t.Kind, ID: r.id}
					pt, err := k.Open(ctx, c, r.ct)
					if err != nil {
						res.Failed++
						res.Errors = append(res.Errors, fmt.Sprintf("%s %q: %v", t.Table, r.id, err))
						continue
					}
					ct, n, err := k.SealTx(ctx, tx, c, pt)
					zero(pt)
					if err != nil {
						return err
					}
					r2, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s SET %s = ?, %s = ? WHERE %s = ? AND %s = ?`,
						t.Table, t.CipherColumn, t.VersionColumn, t.KeyColumn, t.CipherColumn),
						ct, int64(n), r.id, r.ct)
					if err != nil {
						return err
					}
					if n, _ := r2.RowsAffected(); n == 1 {
						res.Rewrapped++
					}
				}
				return nil
			})
			if err != nil {
				return res, fmt.Errorf("rewrapping %s in %s: %w", t.Table, k.name, err)
			}
			if len(batch) < rewrapBatch {
				break
			}
			after = batch[len(batch)-1]
		}
	}
	if res.Rewrapped > 0 || res.Failed > 0 {
		k.opts.Logger.Info("keys rewrapped", "keyring", k.name, "rewrapped", res.Rewrapped, "failed", res.Failed)
	}
	return res, nil
}

// ErrInUse is returned when retiring a version that still seals data.
var ErrInUse = errors.New("key version still seals data")

// Retire destroys version n: its wrapped material is erased from the
// database and from memory, and anything still sealed with it could never be
// opened again, so Retire refuses while any record uses it. The active
// version cannot be retired.
func (k *Keyring) Retire(ctx context.Context, n uint32) error {
	err := k.db.Update(ctx, func(tx *store.Tx) error {
		q := `SELECT destroyed_at FROM key_versions WHERE keyring = ? AND version = ?`
		if tx.Dialect() == store.Postgres {
			q += ` FOR UPDATE` // waits for in-flight seals holding FOR SHARE
		}
		var destroyed sql.NullInt64
		if err := tx.QueryRow(ctx, q, k.name, int64(n)).Scan(&destroyed); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%s has no version %d", k.name, n)
			}
			return err
		}
		if destroyed.Valid {
			return fmt.Errorf("%s version %d is already retired", k.name, n)
		}
		if err := k.loadTx(ctx, tx); err != nil {
			return err
		}
		k.mu.RLock()
		active := k.primary
		k.mu.RUnlock()
		if n == active {
			return fmt.Errorf("%s version %d is the active version: rotate first, then rewrap, then retire it", k.name, n)
		}
		counts, err := k.countsTx(ctx, tx)
		if err != nil {
			return err
		}
		if c := counts[n]; c > 0 {
			return fmt.Errorf("%w: %s version %d still seals %d record(s): run `clawhold keys rewrap` first", ErrInUse, k.name, n, c)
		}
		now := k.opts.Now().UnixMilli()
		_, err = tx.Exec(ctx, `UPDATE key_versions SET wrapped = NULL, destroyed_at = ?,
			deactivated_at = COALESCE(deactivated_at, ?) WHERE keyring = ? AND version = ?`, now, now, k.name, int64(n))
		if err != nil {
			return err
		}
		return k.loadTx(ctx, tx)
	})
	if err != nil {
		return fmt.Errorf("retiring %s version %d: %w", k.name, n, err)
	}
	k.dropCache(n)
	k.opts.Logger.Info("key version retired", "keyring", k.name, "version", n)
	return nil
}

// MaintainResult is what one maintenance pass did.
type MaintainResult struct {
	Keyring string       `json:"keyring"`
	Rotated uint32       `json:"rotated_to,omitempty"`
	Rewrap  RewrapResult `json:"rewrap"`
}

// Maintain rotates if due and rewraps everything onto the active version.
// Destroying old versions stays an operator decision (Retire): backups taken
// under an old version would otherwise become unreadable behind their back.
func (k *Keyring) Maintain(ctx context.Context) (MaintainResult, error) {
	res := MaintainResult{Keyring: k.name}
	k.mu.RLock()
	before := k.primary
	k.mu.RUnlock()
	if err := k.RotateIfDue(ctx); err != nil {
		return res, err
	}
	k.mu.RLock()
	if k.primary != before {
		res.Rotated = k.primary
	}
	k.mu.RUnlock()
	rw, err := k.Rewrap(ctx)
	res.Rewrap = rw
	return res, err
}

// RewrapRoot re-wraps the material of every live version with this
// keyring's root, taking it from the root that wrapped it before (from).
// This is how a keyring moves to a new root key: from a local file to a
// KMS, or from an old local root to a fresh one. Data ciphertexts do not
// change. Versions already wrapped by the current root are left alone, so
// an interrupted run can simply be repeated. It returns how many versions
// it re-wrapped.
func (k *Keyring) RewrapRoot(ctx context.Context, from Root) (int, error) {
	n := 0
	err := k.db.Update(ctx, func(tx *store.Tx) error {
		n = 0
		rows, err := tx.Query(ctx, `SELECT version, algorithm, wrapped, root_key_id FROM key_versions
			WHERE keyring = ? AND destroyed_at IS NULL ORDER BY version`, k.name)
		if err != nil {
			return err
		}
		type row struct {
			n       uint32
			alg     Algorithm
			wrapped []byte
			rootID  string
		}
		var todo []row
		for rows.Next() {
			var r row
			var v int64
			var alg string
			if err := rows.Scan(&v, &alg, &r.wrapped, &r.rootID); err != nil {
				rows.Close()
				return err
			}
			r.n = uint32(v)
			if r.alg, err = ParseAlgorithm(alg); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range todo {
			ad := wrapAAD(k.name, r.n, r.alg)
			if r.rootID == k.root.ID() {
				if m, err := k.root.Unwrap(ctx, r.wrapped, ad); err == nil {
					zero(m)
					continue // already under the current root
				}
			}
			material, err := from.Unwrap(ctx, r.wrapped, ad)
			if err != nil {
				return fmt.Errorf("version %d (wrapped by %s) does not open with the old root %s: %w", r.n, r.rootID, from.ID(), err)
			}
			wrapped, err := k.root.Wrap(ctx, material, ad)
			zero(material)
			if err != nil {
				return fmt.Errorf("wrapping version %d with %s: %w", r.n, k.root.ID(), err)
			}
			if _, err := tx.Exec(ctx, `UPDATE key_versions SET wrapped = ?, root_key_id = ? WHERE keyring = ? AND version = ?`,
				wrapped, k.root.ID(), k.name, int64(r.n)); err != nil {
				return err
			}
			n++
		}
		return k.loadTx(ctx, tx)
	})
	if err != nil {
		return 0, fmt.Errorf("re-wrapping %s under root %s: %w", k.name, k.root.ID(), err)
	}
	if n > 0 {
		k.opts.Logger.Info("keyring moved to a new root key", "keyring", k.name, "versions", n, "root", k.root.ID())
	}
	return n, nil
}
