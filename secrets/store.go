// Package secrets keeps credentials sealed with their tenant's keys, and
// serves them to OpenClaw through its exec SecretRef provider protocol.
package secrets

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// kind is the record kind bound into every secret's ciphertext.
const kind = "secret"

// MaxValueSize bounds one secret value. OpenClaw's provider output limit is
// 1 MiB for the whole batch; 64 KiB leaves room for many credentials.
const MaxValueSize = 64 << 10

// SealedTable registers the secrets table with the keyring, for rewrap and
// per-version counts.
func SealedTable() keys.SealedTable {
	return keys.SealedTable{Table: "secrets", KeyColumn: "name", CipherColumn: "ciphertext", VersionColumn: "key_version", Kind: kind}
}

// ErrNotFound is returned for a secret that does not exist.
var ErrNotFound = errors.New("secret not found")

// Store is one tenant's secrets.
type Store struct {
	db  *store.DB
	kr  *keys.Keyring
	now func() time.Time
}

// New returns the secret store over a tenant database and its keyring.
func New(db *store.DB, kr *keys.Keyring) *Store {
	return &Store{db: db, kr: kr, now: time.Now}
}

// Info describes a secret without its value.
type Info struct {
	Name       string    `json:"name"`
	Version    int64     `json:"version"`     // increments on every set
	KeyVersion uint32    `json:"key_version"` // keyring version sealing it
	Created    time.Time `json:"created"`
	Updated    time.Time `json:"updated"`
}

func (s *Store) context(name string) keys.Context {
	return keys.Context{Tenant: s.kr.Tenant(), Kind: kind, ID: name}
}

// Set stores value under name (creating or replacing it) and records who
// did it. The value is sealed inside the same transaction that writes it.
func (s *Store) Set(ctx context.Context, actor, name string, value []byte) (Info, error) {
	if err := ValidName(name); err != nil {
		return Info{}, err
	}
	if len(value) == 0 {
		return Info{}, fmt.Errorf("secret %q: empty value", name)
	}
	if len(value) > MaxValueSize {
		return Info{}, fmt.Errorf("secret %q: value is %d bytes, the limit is %d", name, len(value), MaxValueSize)
	}
	var info Info
	err := s.kr.Update(ctx, func(tx *store.Tx) error {
		ct, kv, err := s.kr.SealTx(ctx, tx, s.context(name), value)
		if err != nil {
			return err
		}
		now := s.now().UnixMilli()
		_, err = tx.Exec(ctx, `INSERT INTO secrets (name, version, ciphertext, key_version, created_at, updated_at)
			VALUES (?, 1, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET version = secrets.version + 1, ciphertext = excluded.ciphertext,
				key_version = excluded.key_version, updated_at = excluded.updated_at`,
			name, ct, int64(kv), now, now)
		if err != nil {
			return err
		}
		if info, err = s.infoTx(ctx, tx, name); err != nil {
			return err
		}
		return events.AppendTx(ctx, tx, events.Event{Type: events.SecretWrite, Actor: actor, Subject: name,
			Detail: map[string]any{"tenant": s.kr.Tenant(), "version": info.Version, "key_version": kv}})
	})
	if err != nil {
		return Info{}, fmt.Errorf("setting secret %q in tenant %s: %w", name, s.kr.Tenant(), err)
	}
	return info, nil
}

func (s *Store) infoTx(ctx context.Context, tx *store.Tx, name string) (Info, error) {
	var info Info
	var kv, created, updated int64
	err := tx.QueryRow(ctx, `SELECT name, version, key_version, created_at, updated_at FROM secrets WHERE name = ?`, name).
		Scan(&info.Name, &info.Version, &kv, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return info, ErrNotFound
	}
	info.KeyVersion = uint32(kv)
	info.Created, info.Updated = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
	return info, err
}

// Get returns one secret's value. The read is recorded before the value is
// returned: a read that cannot be recorded does not happen.
func (s *Store) Get(ctx context.Context, actor, name string) ([]byte, Info, error) {
	vals, infos, err := s.GetMany(ctx, actor, []string{name})
	if err != nil {
		return nil, Info{}, err
	}
	v, ok := vals[name]
	if !ok {
		return nil, Info{}, fmt.Errorf("%w: %q in tenant %s", ErrNotFound, name, s.kr.Tenant())
	}
	return v, infos[name], nil
}

// GetMany returns the values of the names that exist (absent names are
// simply missing from the map) and records one read event per name asked
// for, found or not, in one transaction.
func (s *Store) GetMany(ctx context.Context, actor string, names []string) (map[string][]byte, map[string]Info, error) {
	vals := make(map[string][]byte, len(names))
	infos := make(map[string]Info, len(names))
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		for _, name := range names {
			var ct []byte
			info, err := s.infoTx(ctx, tx, name)
			found := err == nil
			if err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			if found {
				// On PostgreSQL, lock the row until this transaction ends: a
				// concurrent rewrap cannot replace it, and so retire cannot
				// destroy its key version, between this read and the Open.
				// (SQLite's single writer already serializes them.)
				q := `SELECT ciphertext FROM secrets WHERE name = ?`
				if tx.Dialect() == store.Postgres {
					q += ` FOR SHARE`
				}
				if err := tx.QueryRow(ctx, q, name).Scan(&ct); err != nil {
					return err
				}
			}
			if err := events.AppendTx(ctx, tx, events.Event{Type: events.SecretRead, Actor: actor, Subject: name,
				Detail: map[string]any{"tenant": s.kr.Tenant(), "found": found}}); err != nil {
				return err
			}
			if !found {
				continue
			}
			pt, err := s.kr.Open(ctx, s.context(name), ct)
			if err != nil {
				return fmt.Errorf("opening secret %q: %w", name, err)
			}
			vals[name], infos[name] = pt, info
		}
		return nil
	})
	if err != nil {
		for _, v := range vals {
			clear(v)
		}
		return nil, nil, fmt.Errorf("reading secrets in tenant %s: %w", s.kr.Tenant(), err)
	}
	return vals, infos, nil
}

// List returns every secret's metadata, never a value.
func (s *Store) List(ctx context.Context) ([]Info, error) {
	var out []Info
	err := s.db.View(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT name, version, key_version, created_at, updated_at FROM secrets ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var info Info
			var kv, created, updated int64
			if err := rows.Scan(&info.Name, &info.Version, &kv, &created, &updated); err != nil {
				return err
			}
			info.KeyVersion = uint32(kv)
			info.Created, info.Updated = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
			out = append(out, info)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing secrets in tenant %s: %w", s.kr.Tenant(), err)
	}
	return out, nil
}

// Remove deletes a secret.
func (s *Store) Remove(ctx context.Context, actor, name string) error {
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM secrets WHERE name = ?`, name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		return events.AppendTx(ctx, tx, events.Event{Type: events.SecretDelete, Actor: actor, Subject: name,
			Detail: map[string]any{"tenant": s.kr.Tenant()}})
	})
	if err != nil {
		return fmt.Errorf("removing secret in tenant %s: %w", s.kr.Tenant(), err)
	}
	return nil
}

// Lookup adapts the store to the provider protocol: reads by actor.
func (s *Store) Lookup(actor string) Lookup {
	return func(ctx context.Context, names []string) (map[string][]byte, error) {
		vals, _, err := s.GetMany(ctx, actor, names)
		return vals, err
	}
}
