package store

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// migrationFiles holds the schema, per dialect:
// migrations/<sqlite|postgres>/common/NNNN_name.sql for every database, and
// migrations/<sqlite|postgres>/<system|tenant>/NNNN_name.sql for one kind.
// Common and kind-specific migrations share one version sequence.
//
//go:embed migrations
var migrationFiles embed.FS

// dbKind says which migrations a database gets.
type dbKind string

const (
	kindSystem dbKind = "system"
	kindTenant dbKind = "tenant"
)

type migration struct {
	version int64
	name    string // file name, for errors
	sql     string
}

// loadMigrations returns the migrations for one dialect and kind (the
// common ones and the kind's own), sorted by version.
func loadMigrations(d Dialect, kind dbKind) ([]migration, error) {
	var ms []migration
	for _, sub := range []string{"common", string(kind)} {
		dir := path.Join("migrations", d.String(), sub)
		entries, err := fs.ReadDir(migrationFiles, dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a kind with no migrations of its own
		}
		if err != nil {
			return nil, fmt.Errorf("reading migrations %s: %w", dir, err)
		}
		for _, e := range entries {
			name := e.Name()
			if e.IsDir() || !strings.HasSuffix(name, ".sql") {
				continue
			}
			prefix, _, ok := strings.Cut(name, "_")
			v, err := strconv.ParseInt(prefix, 10, 64)
			if !ok || err != nil || v <= 0 {
				return nil, fmt.Errorf("migration %s/%s: name must be NNNN_description.sql", dir, name)
			}
			body, err := fs.ReadFile(migrationFiles, path.Join(dir, name))
			if err != nil {
				return nil, fmt.Errorf("reading migration %s/%s: %w", dir, name, err)
			}
			ms = append(ms, migration{version: v, name: path.Join(sub, name), sql: string(body)})
		}
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations for %s %s databases", d, kind)
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", ms[i-1].name, ms[i].name, ms[i].version)
		}
	}
	return ms, nil
}

func createMigrationsTable(d Dialect) string {
	if d == Postgres {
		return `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)`
	}
	return `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`
}

// migrate brings db's schema up to date. Each migration runs in its own
// transaction together with its schema_migrations row, so a failed one
// leaves nothing half-applied, and reopening applies only what is missing.
// lockKey names the database across processes (PostgreSQL: its schema).
func migrate(ctx context.Context, db *DB, kind dbKind, lockKey string) error {
	ms, err := loadMigrations(db.dialect, kind)
	if err != nil {
		return err
	}

	applied := make(map[int64]bool)
	err = db.Update(ctx, func(tx *Tx) error {
		if err := lockMigrations(ctx, tx, lockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, createMigrationsTable(db.dialect)); err != nil {
			return fmt.Errorf("creating schema_migrations: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT version FROM schema_migrations`)
		if err != nil {
			return fmt.Errorf("reading schema_migrations: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				return fmt.Errorf("reading schema_migrations: %w", err)
			}
			applied[v] = true
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("migrating %s database: %w", db.name, err)
	}
	if len(ms) > 0 {
		// A database migrated by a newer binary may hold data this one
		// would misread.
		latest := ms[len(ms)-1].version
		for v := range applied {
			if v > latest {
				return fmt.Errorf("migrating %s database: schema version %d is newer than this binary knows (%d)", db.name, v, latest)
			}
		}
	}

	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		err := db.Update(ctx, func(tx *Tx) error {
			if err := lockMigrations(ctx, tx, lockKey); err != nil {
				return err
			}
			// Another process may have applied it since we looked.
			var n int
			if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
				return fmt.Errorf("checking schema_migrations: %w", err)
			}
			if n > 0 {
				return nil
			}
			// Not tx.Exec: migration files are not rebound, and run as
			// one multi-statement batch.
			if _, err := tx.tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, m.version, time.Now().UnixMilli())
			return err
		})
		if err != nil {
			return fmt.Errorf("migrating %s database: applying %s: %w", db.name, m.name, err)
		}
	}
	return nil
}

// lockMigrations serializes migrations of one database across processes.
// SQLite needs nothing: Update's BEGIN IMMEDIATE already holds the write
// lock. PostgreSQL takes a transaction-scoped advisory lock on key.
func lockMigrations(ctx context.Context, tx *Tx, key string) error {
	if tx.dialect != Postgres {
		return nil
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext(?))`, "clawhold-migrate:"+key); err != nil {
		return fmt.Errorf("taking migration lock: %w", err)
	}
	return nil
}
