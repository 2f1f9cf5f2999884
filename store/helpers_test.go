package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx" for cleanup
)

// opener opens a Store over storage fixed by the test environment; calling
// it again opens another Store over the same data (a "restart"). Stores it
// opens are closed at test cleanup.
type opener func(t *testing.T) Store

// forEachBackend runs f as a subtest against SQLite and PostgreSQL.
func forEachBackend(t *testing.T, f func(t *testing.T, open opener)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		f(t, func(t *testing.T) Store { return openTestSQLite(t, dir) })
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := postgresDSN(t)
		prefix := testSchemaPrefix(t, dsn)
		f(t, func(t *testing.T) Store {
			return openTestPostgres(t, dsn, PostgresOptions{SchemaPrefix: prefix})
		})
	})
}

func openTestSQLite(t *testing.T, dir string) *SQLiteStore {
	t.Helper()
	s, err := OpenSQLite(dir)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// postgresDSN returns the test server's DSN, skipping the test when there is
// none, except in CI where PostgreSQL tests must run.
func postgresDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("CLAWHOLD_TEST_POSTGRES_DSN")
	if dsn == "" {
		const msg = "PostgreSQL not available: set CLAWHOLD_TEST_POSTGRES_DSN (scripts/postgres.sh start prints it)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dsn
}

// testSchemaPrefix returns a schema prefix unique to this test and drops
// every schema carrying it when the test ends.
func testSchemaPrefix(t *testing.T, dsn string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "chtest_" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() {
		// Cleanups run last-registered first, so stores opened by the test
		// are closed by now.
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
	})
	return prefix
}

func openTestPostgres(t *testing.T, dsn string, opts PostgresOptions) *PostgresStore {
	t.Helper()
	s, err := OpenPostgres(t.Context(), dsn, opts)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func mustTenant(t *testing.T, s Store, name string) *DB {
	t.Helper()
	db, err := s.Tenant(t.Context(), name)
	if err != nil {
		t.Fatalf("Tenant(%q): %v", name, err)
	}
	return db
}

// putSecret writes a secrets row whose ciphertext is the name.
func putSecret(t *testing.T, db *DB, name string) {
	t.Helper()
	err := db.Update(t.Context(), func(tx *Tx) error {
		_, err := tx.Exec(t.Context(),
			`INSERT INTO secrets (name, version, ciphertext, key_version, created_at, updated_at) VALUES (?, 1, ?, 1, 0, 0)`,
			name, []byte(name))
		return err
	})
	if err != nil {
		t.Fatalf("%s: inserting secret %q: %v", db.Name(), name, err)
	}
}

// secretNames lists the names in db's secrets table, in order.
func secretNames(t *testing.T, db *DB) []string {
	t.Helper()
	var names []string
	err := db.View(t.Context(), func(tx *Tx) error {
		rows, err := tx.Query(t.Context(), `SELECT name FROM secrets ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			names = append(names, n)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatalf("%s: listing secrets: %v", db.Name(), err)
	}
	return names
}
