package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// connState is what one pooled connection reports about itself.
type connState struct {
	pid     int
	schema  string // current_schema()
	secrets []string
}

func readConnState(t *testing.T, db *DB) connState {
	t.Helper()
	ctx := t.Context()
	var st connState
	err := db.View(ctx, func(tx *Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_backend_pid(), current_schema()`).Scan(&st.pid, &st.schema); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT name FROM secrets ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			st.secrets = append(st.secrets, n)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatalf("%s: reading connection state: %v", db.Name(), err)
	}
	return st
}

// TestPostgresSearchPathLeak is the regression test for a pooled connection
// carrying one tenant's search_path to the next borrower (the bug fixed in
// rustango#1224). Each tenant pool has one connection, so the next borrower
// gets the very connection that was tampered with, unless the store threw it
// away.
func TestPostgresSearchPathLeak(t *testing.T) {
	dsn := postgresDSN(t)
	prefix := testSchemaPrefix(t, dsn)
	s := openTestPostgres(t, dsn, PostgresOptions{SchemaPrefix: prefix, MaxConns: 1})
	a := mustTenant(t, s, "leak-a")
	b := mustTenant(t, s, "leak-b")
	putSecret(t, a, "row-of-a")
	putSecret(t, b, "row-of-b")
	schemaA, _ := s.tenantSchema("leak-a")
	schemaB, _ := s.tenantSchema("leak-b")
	quotedB := pgx.Identifier{schemaB}.Sanitize()

	// Ways buggy code could change a borrowed connection's search_path so
	// that the change outlives the borrow.
	tamperings := []struct {
		name   string
		tamper func(ctx context.Context) error
	}{
		{"SET in committed Update", func(ctx context.Context) error {
			return a.Update(ctx, func(tx *Tx) error {
				if _, err := tx.Exec(ctx, "SET search_path TO "+quotedB); err != nil {
					return err
				}
				// The tampering takes hold: this session now reads B.
				var name string
				if err := tx.QueryRow(ctx, `SELECT name FROM secrets`).Scan(&name); err != nil {
					return err
				}
				if name != "row-of-b" {
					return fmt.Errorf("after SET, read %q, want row-of-b", name)
				}
				return nil
			})
		}},
		{"SET in View", func(ctx context.Context) error {
			return a.View(ctx, func(tx *Tx) error {
				// A read-only transaction that ends in rollback undoes SET,
				// so this one commits it the way a careless caller might.
				if _, err := tx.Exec(ctx, "SET search_path TO "+quotedB); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "COMMIT")
				return err
			})
		}},
		{"set_config outside a transaction", func(ctx context.Context) error {
			_, err := a.rw.ExecContext(ctx, `SELECT set_config('search_path', $1, false)`, quotedB)
			return err
		}},
		{"SET with public appended", func(ctx context.Context) error {
			_, err := a.rw.ExecContext(ctx, "SET search_path TO "+pgx.Identifier{schemaA}.Sanitize()+", public")
			return err
		}},
	}
	for _, tt := range tamperings {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			before := readConnState(t, a)
			if before.schema != schemaA || !slices.Equal(before.secrets, []string{"row-of-a"}) {
				t.Fatalf("before tampering: %+v, want schema %s and [row-of-a]", before, schemaA)
			}

			// Tamper on the pool's only connection.
			if err := tt.tamper(ctx); err != nil {
				t.Fatalf("tampering: %v", err)
			}

			after := readConnState(t, a)
			if after.schema != schemaA {
				t.Errorf("next borrower's current_schema = %q, want %q: search_path leaked", after.schema, schemaA)
			}
			if !slices.Equal(after.secrets, []string{"row-of-a"}) {
				t.Errorf("next borrower of tenant A read secrets %q, want [row-of-a]: search_path leaked", after.secrets)
			}
			if after.pid == before.pid {
				t.Errorf("tampered connection (pid %d) was reused, want it discarded", before.pid)
			}
		})
	}

	// The other tenant's pool never saw any of this.
	if st := readConnState(t, b); st.schema != schemaB || !slices.Equal(st.secrets, []string{"row-of-b"}) {
		t.Errorf("tenant B: %+v, want schema %s and [row-of-b]", st, schemaB)
	}

	// A connection left alone is reused, not churned.
	first, second := readConnState(t, a), readConnState(t, a)
	if first.pid != second.pid {
		t.Errorf("untampered connection was replaced (pid %d then %d)", first.pid, second.pid)
	}
}

// TestPostgresSearchPathLeakControl shows the tampering above does leak
// through a pool without the store's reset check, so that
// TestPostgresSearchPathLeak is able to fail.
func TestPostgresSearchPathLeakControl(t *testing.T) {
	dsn := postgresDSN(t)
	prefix := testSchemaPrefix(t, dsn)
	s := openTestPostgres(t, dsn, PostgresOptions{SchemaPrefix: prefix, MaxConns: 1})
	putSecret(t, mustTenant(t, s, "leak-a"), "row-of-a")
	putSecret(t, mustTenant(t, s, "leak-b"), "row-of-b")
	schemaA, _ := s.tenantSchema("leak-a")
	schemaB, _ := s.tenantSchema("leak-b")

	ctx := t.Context()
	config := s.config.Copy()
	config.RuntimeParams["search_path"] = pgx.Identifier{schemaA}.Sanitize()
	plain := stdlib.OpenDB(*config) // no OptionResetSession
	defer plain.Close()
	plain.SetMaxOpenConns(1)
	if _, err := plain.ExecContext(ctx, "SET search_path TO "+pgx.Identifier{schemaB}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	var name string
	if err := plain.QueryRowContext(ctx, `SELECT name FROM secrets`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != "row-of-b" {
		t.Fatalf("control pool read %q; the tampering no longer leaks, so the regression test proves nothing", name)
	}
}

func TestPostgresSchemaNames(t *testing.T) {
	dsn := postgresDSN(t)
	prefix := testSchemaPrefix(t, dsn)
	s := openTestPostgres(t, dsn, PostgresOptions{SchemaPrefix: prefix})
	ctx := t.Context()
	if _, err := s.System(ctx); err != nil {
		t.Fatal(err)
	}
	mustTenant(t, s, "acme-corp")

	schemas := func() []string {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rows, err := db.QueryContext(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY nspname`, prefix)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			got = append(got, n)
		}
		return got
	}
	if got, want := schemas(), []string{prefix + "system", prefix + "t_acme_corp"}; !slices.Equal(got, want) {
		t.Fatalf("schemas = %q, want %q", got, want)
	}
	if err := s.DeleteTenant(ctx, "acme-corp"); err != nil {
		t.Fatal(err)
	}
	if got, want := schemas(), []string{prefix + "system"}; !slices.Equal(got, want) {
		t.Errorf("schemas after DeleteTenant = %q, want %q", got, want)
	}

	// A name ValidTenantName accepts but that would not fit in a PostgreSQL
	// identifier after the prefix is refused, not silently truncated into
	// another tenant's schema.
	room := maxIdentifier - len(prefix) - len("t_")
	if _, err := s.Tenant(ctx, strings.Repeat("a", room)); err != nil {
		t.Errorf("Tenant with a %d-character name: %v", room, err)
	}
	if _, err := s.Tenant(ctx, strings.Repeat("a", room+1)); err == nil {
		t.Errorf("Tenant with a %d-character name succeeded; its schema name exceeds %d bytes", room+1, maxIdentifier)
	}
}

func TestOpenPostgresOptions(t *testing.T) {
	ctx := t.Context()
	// Parse failures must not echo the password (no server needed).
	for _, dsn := range []string{
		"postgres://u:s3cr3t-pw@host:notaport/db",
		"host=x password=s3cr3t-pw port=notaport",
		"postgres://u:s3cr3t-pw@[bad",
	} {
		_, err := OpenPostgres(ctx, dsn, PostgresOptions{})
		if err == nil {
			t.Errorf("OpenPostgres(bad DSN) succeeded")
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t-pw") {
			t.Errorf("error reveals the password: %v", err)
		}
	}
	for _, prefix := range []string{"Caps_", "1x_", "a-b_", `x"_`, strings.Repeat("p", 61)} {
		if _, err := OpenPostgres(ctx, "host=/nonexistent", PostgresOptions{SchemaPrefix: prefix}); err == nil || !strings.Contains(err.Error(), "prefix") {
			t.Errorf("SchemaPrefix %q: err = %v, want it refused", prefix, err)
		}
	}

	dsn := postgresDSN(t)
	prefix := testSchemaPrefix(t, dsn)
	s := openTestPostgres(t, dsn, PostgresOptions{SchemaPrefix: prefix, Password: "unused-with-trust-auth"})
	if s.opts.MaxConns != defaultMaxConns {
		t.Errorf("MaxConns = %d, want default %d", s.opts.MaxConns, defaultMaxConns)
	}
	db := mustTenant(t, s, "acme")
	if got := db.rw.Stats().MaxOpenConnections; got != defaultMaxConns {
		t.Errorf("tenant pool MaxOpenConnections = %d, want %d", got, defaultMaxConns)
	}
	if s.config.Password != "unused-with-trust-auth" {
		t.Errorf("Password option not applied")
	}
	def, err := OpenPostgres(ctx, dsn, PostgresOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if def.opts.SchemaPrefix != "clawhold_" {
		t.Errorf("default SchemaPrefix = %q, want clawhold_", def.opts.SchemaPrefix)
	}
	if got, _ := def.tenantSchema("a-b"); got != "clawhold_t_a_b" {
		t.Errorf("tenantSchema(a-b) = %q, want clawhold_t_a_b", got)
	}
	if got := def.systemSchema(); got != "clawhold_system" {
		t.Errorf("systemSchema = %q, want clawhold_system", got)
	}
}
