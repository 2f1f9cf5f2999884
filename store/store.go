// Package store keeps clawhold's data: key versions, secrets and events for
// the system and for each tenant.
//
// Two backends share one API built on database/sql, so repository code above
// is written once:
//
//   - SQLite (embedded default): one database file for the system and one per
//     tenant, so deleting or exporting a tenant touches exactly one file.
//   - PostgreSQL (scale-out): one schema per tenant, each reached through its
//     own connection pool whose search_path is fixed at connection startup.
//
// Queries use '?' placeholders; [Tx] rebinds them for PostgreSQL.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Dialect distinguishes SQL flavours.
type Dialect int

const (
	SQLite Dialect = iota + 1
	Postgres
)

func (d Dialect) String() string {
	switch d {
	case SQLite:
		return "sqlite"
	case Postgres:
		return "postgres"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// Store is implemented by *SQLiteStore and *PostgresStore.
type Store interface {
	// System returns the system database, migrated on first open.
	System(ctx context.Context) (*DB, error)
	// Tenant opens (creating and migrating if needed) one tenant's database.
	// It is cached: repeat calls return the same *DB.
	Tenant(ctx context.Context, name string) (*DB, error)
	// TenantExists reports whether the tenant's database has been created.
	TenantExists(ctx context.Context, name string) (bool, error)
	// DeleteTenant closes the tenant's *DB and deletes all of its data.
	// Deleting a tenant that does not exist is not an error.
	DeleteTenant(ctx context.Context, name string) error
	// Close closes every open database.
	Close() error
}

var (
	_ Store = (*SQLiteStore)(nil)
	_ Store = (*PostgresStore)(nil)
)

// errClosed is returned by Store methods after Close.
var errClosed = errors.New("store: closed")

// maxTenantName is the longest tenant name ValidTenantName accepts.
const maxTenantName = 63

// ValidTenantName reports whether name may name a tenant: ^[a-z][a-z0-9-]{0,62}$.
// Tenant names become file names and SQL identifiers, so Store methods call
// this before using one (defence against path traversal and SQL identifier
// injection).
func ValidTenantName(name string) error {
	ok := len(name) >= 1 && len(name) <= maxTenantName && name[0] >= 'a' && name[0] <= 'z'
	for i := 1; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-'
	}
	if !ok {
		return fmt.Errorf("invalid tenant name %q: must be 1 to %d characters, a lowercase letter followed by lowercase letters, digits or '-' (^[a-z][a-z0-9-]{0,62}$)", name, maxTenantName)
	}
	return nil
}

// DB is one database: the system's or one tenant's.
type DB struct {
	name    string
	dialect Dialect
	// rw runs Update. SQLite: a single writer connection. Postgres: the
	// tenant's pool.
	rw *sql.DB
	// ro runs View. SQLite: a separate query_only reader pool, so reads
	// never queue behind the writer. Postgres: the same pool as rw.
	ro *sql.DB
}

// Dialect reports the SQL flavour of db.
func (db *DB) Dialect() Dialect { return db.dialect }

// Name returns "system" or the tenant name.
func (db *DB) Name() string { return db.name }

// Update runs fn in a read-write transaction. It commits if fn returns nil
// and rolls back otherwise; fn's error is returned unchanged.
//
// On SQLite there is exactly one writer connection and transactions begin
// IMMEDIATE, so concurrent writers queue (on the pool, then on busy_timeout
// across processes) instead of failing with SQLITE_BUSY mid-transaction.
func (db *DB) Update(ctx context.Context, fn func(*Tx) error) error {
	return db.run(ctx, db.rw, nil, fn)
}

// View runs fn in a read-only transaction. It always rolls back; fn's error
// is returned unchanged.
func (db *DB) View(ctx context.Context, fn func(*Tx) error) error {
	return db.run(ctx, db.ro, &sql.TxOptions{ReadOnly: true}, fn)
}

func (db *DB) run(ctx context.Context, pool *sql.DB, opts *sql.TxOptions, fn func(*Tx) error) (err error) {
	stx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("store %s: beginning transaction: %w", db.name, err)
	}
	// Roll back on panic too: on SQLite the writer is a single connection,
	// and a transaction left open would block every later Update.
	committed := false
	defer func() {
		if !committed {
			stx.Rollback()
		}
	}()
	if err := fn(&Tx{tx: stx, dialect: db.dialect}); err != nil {
		return err
	}
	if opts != nil && opts.ReadOnly {
		return nil // the deferred rollback ends it; there is nothing to commit
	}
	committed = true
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("store %s: committing: %w", db.name, err)
	}
	return nil
}

// close closes db's pools. The owning Store calls it.
func (db *DB) close() error {
	err := db.rw.Close()
	if db.ro != db.rw {
		err = errors.Join(err, db.ro.Close())
	}
	if err != nil {
		return fmt.Errorf("closing %s database: %w", db.name, err)
	}
	return nil
}

// Tx is a transaction opened by [DB.Update] or [DB.View].
type Tx struct {
	tx      *sql.Tx
	dialect Dialect
}

// Dialect reports the SQL flavour of tx.
func (tx *Tx) Dialect() Dialect { return tx.dialect }

// Exec executes a statement written with '?' placeholders.
func (tx *Tx) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.tx.ExecContext(ctx, tx.rebind(query), args...)
}

// Query runs a query written with '?' placeholders.
func (tx *Tx) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return tx.tx.QueryContext(ctx, tx.rebind(query), args...)
}

// QueryRow runs a query written with '?' placeholders that returns at most
// one row.
func (tx *Tx) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return tx.tx.QueryRowContext(ctx, tx.rebind(query), args...)
}

func (tx *Tx) rebind(query string) string {
	if tx.dialect != Postgres {
		return query
	}
	return rebindDollar(query)
}

// rebindDollar rewrites '?' placeholders as $1, $2, ... for PostgreSQL. A '?'
// inside a single-quoted literal, a double-quoted identifier, or a -- or /* */
// comment is left alone. Not understood (so not to be used in queries given
// to Tx): E'...' strings with backslash-escaped quotes, and $$ dollar quoting.
func rebindDollar(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); {
		c := query[i]
		// end is the index just past the token starting at i.
		end := i + 1
		switch {
		case c == '\'' || c == '"':
			// A doubled quote ('') inside a literal closes and immediately
			// reopens it here, which copies the same bytes.
			if j := strings.IndexByte(query[i+1:], c); j >= 0 {
				end = i + 1 + j + 1
			} else {
				end = len(query)
			}
		case c == '-' && strings.HasPrefix(query[i:], "--"):
			if j := strings.IndexByte(query[i:], '\n'); j >= 0 {
				end = i + j + 1
			} else {
				end = len(query)
			}
		case c == '/' && strings.HasPrefix(query[i:], "/*"):
			if j := strings.Index(query[i+2:], "*/"); j >= 0 {
				end = i + 2 + j + 2
			} else {
				end = len(query)
			}
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			i = end
			continue
		}
		b.WriteString(query[i:end])
		i = end
	}
	return b.String()
}

// closeDBs closes the system database and every open tenant database of a
// store, forgetting them, and returns each close's error.
func closeDBs(system **DB, tenants map[string]*DB) []error {
	var errs []error
	if *system != nil {
		errs = append(errs, (*system).close())
		*system = nil
	}
	for name, db := range tenants {
		errs = append(errs, db.close())
		delete(tenants, name)
	}
	return errs
}
