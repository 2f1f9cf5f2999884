// Package storetest opens real databases for other packages' tests: a
// SQLite store in a private directory, and a PostgreSQL store in schemas
// unique to the test, dropped when it ends.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx", for schema cleanup

	"github.com/clawhold/clawhold/store"
)

// DSNEnv names the PostgreSQL server tests use (scripts/postgres.sh start
// prints it).
const DSNEnv = "CLAWHOLD_TEST_POSTGRES_DSN"

// PostgresDSN returns the test server's DSN. Without one the test is
// skipped, or fails when CI=true.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		const msg = "PostgreSQL not available: set " + DSNEnv + " (scripts/postgres.sh start prints it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dsn
}

// SchemaPrefix returns a schema prefix unique to this test ("<name>_<hex>_")
// and drops every schema carrying it when the test ends.
func SchemaPrefix(t testing.TB, dsn, name string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	prefix := name + "_" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() { dropSchemas(t, dsn, prefix) })
	return prefix
}

func dropSchemas(t testing.TB, dsn, prefix string) {
	ctx := context.Background()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, prefix)
	if err != nil {
		t.Errorf("cleanup: listing schemas: %v", err)
		return
	}
	var schemas []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		schemas = append(schemas, s)
	}
	rows.Close()
	for _, s := range schemas {
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("cleanup: dropping %s: %v", s, err)
		}
	}
}

// Backend opens stores over one test database; each call to Open is a new
// Store (as a separate process would have) on the same data.
type Backend struct {
	Name string
	Open func(t *testing.T) store.Store
}

// ForEach runs f as a subtest on SQLite and on PostgreSQL, each with a
// fresh database. name prefixes the PostgreSQL schemas.
func ForEach(t *testing.T, name string, f func(t *testing.T, b Backend)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		f(t, Backend{Name: "sqlite", Open: func(t *testing.T) store.Store {
			s, err := store.OpenSQLite(dir)
			if err != nil {
				t.Fatalf("OpenSQLite: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := PostgresDSN(t)
		prefix := SchemaPrefix(t, dsn, name)
		f(t, Backend{Name: "postgres", Open: func(t *testing.T) store.Store {
			s, err := store.OpenPostgres(t.Context(), dsn, store.PostgresOptions{SchemaPrefix: prefix})
			if err != nil {
				t.Fatalf("OpenPostgres: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}})
	})
}

// System opens b's system database on a new Store.
func (b Backend) System(t *testing.T) *store.DB {
	t.Helper()
	db, err := b.Open(t).System(t.Context())
	if err != nil {
		t.Fatalf("System: %v", err)
	}
	return db
}
