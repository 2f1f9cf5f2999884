package store

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestValidTenantName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"acme", true},
		{"acme-corp-2", true},
		{"a-", true},
		{"a" + strings.Repeat("b", 62), true}, // 63 characters
		{"", false},
		{"a" + strings.Repeat("b", 63), false}, // 64 characters
		{"../x", false},
		{"x/../../etc", false},
		{"A", false},
		{"acMe", false},
		{"a b", false},
		{"a;drop", false},
		{`a"b`, false},
		{"a'b", false},
		{"a_b", false}, // '_' is reserved: PostgreSQL maps '-' to it
		{"a.db", false},
		{"1abc", false},
		{"-a", false},
		{"a\x00", false},
		{"é", false},
	}
	for _, tt := range tests {
		err := ValidTenantName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidTenantName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "^[a-z][a-z0-9-]{0,62}$") {
			t.Errorf("ValidTenantName(%q) error %q does not state the rule", tt.name, err)
		}
	}
}

func TestRebindDollar(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"SELECT 1", "SELECT 1"},
		{"SELECT ?", "SELECT $1"},
		{"INSERT INTO t (a, b, c) VALUES (?, ?,?)", "INSERT INTO t (a, b, c) VALUES ($1, $2,$3)"},
		{"SELECT '?', ?", "SELECT '?', $1"},
		{"SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1"},
		{"SELECT '', ?", "SELECT '', $1"},
		{`SELECT "we?ird" FROM t WHERE a = ?`, `SELECT "we?ird" FROM t WHERE a = $1`},
		{"SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"},
		{"SELECT ? /* what? */, ?", "SELECT $1 /* what? */, $2"},
		{"SELECT a-?", "SELECT a-$1"},
		{"SELECT a/?", "SELECT a/$1"},
		{"SELECT 'unterminated ?", "SELECT 'unterminated ?"},
		{"SELECT ? -- trailing?", "SELECT $1 -- trailing?"},
		{"SELECT ? /* open?", "SELECT $1 /* open?"},
		{strings.Repeat("?,", 11) + "?", "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12"},
	}
	for _, tt := range tests {
		if got := rebindDollar(tt.in); got != tt.want {
			t.Errorf("rebindDollar(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}

	// SQLite takes '?' as is.
	tx := &Tx{dialect: SQLite}
	if got := tx.rebind("SELECT ?"); got != "SELECT ?" {
		t.Errorf("SQLite rebind = %q, want unchanged", got)
	}
}

func TestSystemAndTenantSchema(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := t.Context()
		s := open(t)
		sys, err := s.System(ctx)
		if err != nil {
			t.Fatalf("System: %v", err)
		}
		if sys.Name() != "system" {
			t.Errorf("System().Name() = %q, want system", sys.Name())
		}
		if again, _ := s.System(ctx); again != sys {
			t.Errorf("System returned a different *DB on the second call")
		}
		ten := mustTenant(t, s, "acme")
		if ten.Name() != "acme" {
			t.Errorf("Tenant().Name() = %q, want acme", ten.Name())
		}
		if again := mustTenant(t, s, "acme"); again != ten {
			t.Errorf("Tenant returned a different *DB on the second call")
		}
		want := SQLite
		if _, ok := s.(*PostgresStore); ok {
			want = Postgres
		}
		if sys.Dialect() != want || ten.Dialect() != want {
			t.Errorf("dialects = %v, %v; want %v", sys.Dialect(), ten.Dialect(), want)
		}

		// Every table of schema 0001, with a round trip through each.
		for _, db := range []*DB{sys, ten} {
			err := db.Update(ctx, func(tx *Tx) error {
				if tx.Dialect() != want {
					t.Errorf("Tx.Dialect() = %v, want %v", tx.Dialect(), want)
				}
				stmts := []struct {
					q    string
					args []any
				}{
					{`INSERT INTO key_versions (keyring, version, algorithm, wrapped, root_key_id, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
						[]any{"kr", 1, "AES-256-GCM", []byte{0, 1, 2, 0xff}, "root-1", int64(1700000000000)}},
					{`INSERT INTO key_versions (keyring, version, algorithm, wrapped, root_key_id, created_at, deactivated_at, destroyed_at) VALUES (?, ?, ?, NULL, ?, ?, ?, ?)`,
						[]any{"kr", 2, "AES-256-GCM", "root-1", 1, 2, 3}},
					{`INSERT INTO secrets (name, version, ciphertext, key_version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
						[]any{"s", 1, []byte("ct"), 1, 1, 1}},
					{`INSERT INTO events (ts, type, actor, subject, detail) VALUES (?, ?, ?, ?, ?)`,
						[]any{1, "t", "a", "s", "d"}},
					{`INSERT INTO events (ts, type, actor, subject, detail) VALUES (?, ?, ?, ?, ?)`,
						[]any{2, "t", "a", "s", "d"}},
				}
				for _, st := range stmts {
					if _, err := tx.Exec(ctx, st.q, st.args...); err != nil {
						return err
					}
				}
				// The primary key holds.
				_, err := tx.Exec(ctx, `INSERT INTO secrets (name, version, ciphertext, key_version, created_at, updated_at) VALUES ('s', 2, ?, 1, 1, 1)`, []byte("x"))
				if err == nil {
					t.Errorf("%s: duplicate secret name accepted", db.Name())
				}
				return errors.New("roll back") // keep the tables empty for the checks below
			})
			if err == nil || err.Error() != "roll back" {
				t.Fatalf("%s: Update: %v", db.Name(), err)
			}
		}
		// On PostgreSQL the failed INSERT above aborted the transaction, so
		// the round trip is checked in a fresh one.
		for _, db := range []*DB{sys, ten} {
			var wrapped []byte
			var ids []int64
			err := db.Update(ctx, func(tx *Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO key_versions (keyring, version, algorithm, wrapped, root_key_id, created_at) VALUES (?, 1, 'a', ?, 'r', 1)`, "kr", []byte{0, 1, 2, 0xff}); err != nil {
					return err
				}
				for i := range 3 {
					if _, err := tx.Exec(ctx, `INSERT INTO events (ts, type, actor, subject, detail) VALUES (?, 't', 'a', 's', 'd')`, i); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: Update: %v", db.Name(), err)
			}
			err = db.View(ctx, func(tx *Tx) error {
				if err := tx.QueryRow(ctx, `SELECT wrapped FROM key_versions WHERE keyring = ? AND version = ?`, "kr", 1).Scan(&wrapped); err != nil {
					return err
				}
				rows, err := tx.Query(ctx, `SELECT id FROM events ORDER BY ts`)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var id int64
					if err := rows.Scan(&id); err != nil {
						return err
					}
					ids = append(ids, id)
				}
				return rows.Err()
			})
			if err != nil {
				t.Fatalf("%s: View: %v", db.Name(), err)
			}
			if !bytes.Equal(wrapped, []byte{0, 1, 2, 0xff}) {
				t.Errorf("%s: wrapped = %x, want 000102ff", db.Name(), wrapped)
			}
			if len(ids) != 3 || !slices.IsSorted(ids) || ids[0] == ids[1] || ids[1] == ids[2] {
				t.Errorf("%s: event ids = %v, want 3 increasing", db.Name(), ids)
			}
		}

		// tenants is in the system database only.
		err = sys.Update(ctx, func(tx *Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO tenants (name, created_at) VALUES (?, ?)`, "acme", 1)
			return err
		})
		if err != nil {
			t.Errorf("system: inserting into tenants: %v", err)
		}
		err = ten.View(ctx, func(tx *Tx) error {
			var n int
			return tx.QueryRow(ctx, `SELECT COUNT(*) FROM tenants`).Scan(&n)
		})
		if err == nil {
			t.Errorf("tenant database has a tenants table")
		}
	})
}

func TestPlaceholdersInLiterals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := t.Context()
		db := mustTenant(t, open(t), "acme")
		var got, lit string
		err := db.View(ctx, func(tx *Tx) error {
			return tx.QueryRow(ctx, `SELECT CAST(? AS TEXT) || '?', 'it''s a ? literal' /* ? */`, "x").Scan(&got, &lit)
		})
		if err != nil {
			t.Fatalf("View: %v", err)
		}
		if got != "x?" || lit != "it's a ? literal" {
			t.Errorf("got %q, %q; want %q, %q", got, lit, "x?", "it's a ? literal")
		}
	})
}

func TestUpdateCommitsOrRollsBack(t *testing.T) {
	errBoom := errors.New("boom")
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := t.Context()
		db := mustTenant(t, open(t), "acme")
		insert := func(tx *Tx, name string) error {
			_, err := tx.Exec(ctx, `INSERT INTO secrets (name, version, ciphertext, key_version, created_at, updated_at) VALUES (?, 1, ?, 1, 0, 0)`, name, []byte("c"))
			return err
		}

		if err := db.Update(ctx, func(tx *Tx) error { return insert(tx, "kept") }); err != nil {
			t.Fatalf("Update: %v", err)
		}
		err := db.Update(ctx, func(tx *Tx) error {
			if err := insert(tx, "failed"); err != nil {
				return err
			}
			return errBoom
		})
		if err != errBoom {
			t.Errorf("Update returned %v, want fn's error unchanged", err)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("panic in fn was swallowed")
				}
			}()
			db.Update(ctx, func(tx *Tx) error {
				insert(tx, "panicked")
				panic("bug")
			})
		}()
		// After a panic the (single, on SQLite) writer must still be usable.
		if err := db.Update(ctx, func(tx *Tx) error { return insert(tx, "later") }); err != nil {
			t.Fatalf("Update after panic: %v", err)
		}
		// A cancelled context ends the transaction without committing.
		cctx, cancel := context.WithCancel(ctx)
		err = db.Update(cctx, func(tx *Tx) error {
			if err := insert(tx, "cancelled"); err != nil {
				return err
			}
			cancel()
			return nil
		})
		if err == nil {
			t.Errorf("Update with a context cancelled before commit succeeded")
		}

		if got, want := secretNames(t, db), []string{"kept", "later"}; !slices.Equal(got, want) {
			t.Errorf("secrets = %q, want %q", got, want)
		}
	})
}

func TestViewIsReadOnly(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := t.Context()
		db := mustTenant(t, open(t), "acme")
		err := db.View(ctx, func(tx *Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO events (ts, type, actor, subject, detail) VALUES (1, 't', 'a', 's', 'd')`)
			return err
		})
		if err == nil {
			t.Fatalf("INSERT inside View succeeded")
		}
		var n int
		db.View(ctx, func(tx *Tx) error { return tx.QueryRow(ctx, `SELECT COUNT(*) FROM events`).Scan(&n) })
		if n != 0 {
			t.Errorf("events has %d rows after a write in View, want 0", n)
		}
	})
}

func TestTenantIsolation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t)
		sys, err := s.System(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		a := mustTenant(t, s, "tenant-a")
		b := mustTenant(t, s, "tenant-b")
		putSecret(t, a, "only-a")
		putSecret(t, b, "only-b")
		putSecret(t, sys, "only-system")

		for _, tt := range []struct {
			db   *DB
			want []string
		}{
			{a, []string{"only-a"}},
			{b, []string{"only-b"}},
			{sys, []string{"only-system"}},
		} {
			if got := secretNames(t, tt.db); !slices.Equal(got, tt.want) {
				t.Errorf("%s sees secrets %q, want %q", tt.db.Name(), got, tt.want)
			}
		}
	})
}

func TestDeleteTenant(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := t.Context()
		s := open(t)
		exists := func(name string) bool {
			t.Helper()
			ok, err := s.TenantExists(ctx, name)
			if err != nil {
				t.Fatalf("TenantExists(%q): %v", name, err)
			}
			return ok
		}

		if exists("doomed") {
			t.Fatalf("TenantExists before Tenant = true")
		}
		doomed := mustTenant(t, s, "doomed")
		kept := mustTenant(t, s, "kept")
		putSecret(t, doomed, "d")
		putSecret(t, kept, "k")
		if !exists("doomed") || !exists("kept") {
			t.Fatalf("TenantExists after Tenant = false")
		}

		if err := s.DeleteTenant(ctx, "doomed"); err != nil {
			t.Fatalf("DeleteTenant: %v", err)
		}
		if exists("doomed") {
			t.Errorf("TenantExists after DeleteTenant = true")
		}
		if !exists("kept") {
			t.Errorf("DeleteTenant removed another tenant")
		}
		if got := secretNames(t, kept); !slices.Equal(got, []string{"k"}) {
			t.Errorf("kept tenant's secrets = %q after deleting another, want [k]", got)
		}
		// The deleted tenant's old *DB is closed.
		if err := doomed.View(ctx, func(*Tx) error { return nil }); err == nil {
			t.Errorf("View on a deleted tenant's DB succeeded")
		}
		// Deleting again is a no-op.
		if err := s.DeleteTenant(ctx, "doomed"); err != nil {
			t.Errorf("second DeleteTenant: %v", err)
		}
		// Recreated, it starts empty.
		again := mustTenant(t, s, "doomed")
		if again == doomed {
			t.Errorf("Tenant after DeleteTenant returned the closed *DB")
		}
		if got := secretNames(t, again); len(got) != 0 {
			t.Errorf("recreated tenant has secrets %q, want none", got)
		}
	})
}

func TestInvalidTenantNamesRejected(t *testing.T) {
	bad := []string{"../x", "A", "a b", "", strings.Repeat("a", 64), "a;drop", `x"; DROP SCHEMA public; --`}
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := t.Context()
		s := open(t)
		for _, name := range bad {
			if _, err := s.Tenant(ctx, name); err == nil {
				t.Errorf("Tenant(%q) succeeded", name)
			}
			if _, err := s.TenantExists(ctx, name); err == nil {
				t.Errorf("TenantExists(%q) succeeded", name)
			}
			if err := s.DeleteTenant(ctx, name); err == nil {
				t.Errorf("DeleteTenant(%q) succeeded", name)
			}
		}
	})
}

func TestMigrationsIdempotentAcrossReopen(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := t.Context()
		type applied struct{ version, at int64 }
		migrations := func(db *DB) []applied {
			t.Helper()
			var got []applied
			err := db.View(ctx, func(tx *Tx) error {
				rows, err := tx.Query(ctx, `SELECT version, applied_at FROM schema_migrations ORDER BY version`)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var a applied
					if err := rows.Scan(&a.version, &a.at); err != nil {
						return err
					}
					got = append(got, a)
				}
				return rows.Err()
			})
			if err != nil {
				t.Fatalf("%s: reading schema_migrations: %v", db.Name(), err)
			}
			return got
		}

		s1 := open(t)
		sys1, err := s1.System(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ten1 := mustTenant(t, s1, "acme")
		putSecret(t, ten1, "survives")
		sysMigs, tenMigs := migrations(sys1), migrations(ten1)
		d := sys1.Dialect()
		for _, c := range []struct {
			kind dbKind
			got  []applied
		}{{kindSystem, sysMigs}, {kindTenant, tenMigs}} {
			files, err := loadMigrations(d, c.kind)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) == 0 || len(c.got) != len(files) {
				t.Fatalf("%s: %d migrations recorded, %d files", c.kind, len(c.got), len(files))
			}
		}
		if err := s1.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		for range 2 {
			s2 := open(t)
			sys2, err := s2.System(ctx)
			if err != nil {
				t.Fatalf("reopening system: %v", err)
			}
			ten2 := mustTenant(t, s2, "acme")
			if got := migrations(sys2); !slices.Equal(got, sysMigs) {
				t.Errorf("system migrations after reopen = %v, want unchanged %v", got, sysMigs)
			}
			if got := migrations(ten2); !slices.Equal(got, tenMigs) {
				t.Errorf("tenant migrations after reopen = %v, want unchanged %v", got, tenMigs)
			}
			if got := secretNames(t, ten2); !slices.Equal(got, []string{"survives"}) {
				t.Errorf("secrets after reopen = %q, want [survives]", got)
			}
			s2.Close()
		}
	})
}

func TestClosedStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		ctx := t.Context()
		s := open(t)
		db := mustTenant(t, s, "acme")
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := s.System(ctx); err == nil {
			t.Errorf("System after Close succeeded")
		}
		if _, err := s.Tenant(ctx, "acme"); err == nil {
			t.Errorf("Tenant after Close succeeded")
		}
		if err := db.View(ctx, func(*Tx) error { return nil }); err == nil {
			t.Errorf("View on a DB of a closed store succeeded")
		}
	})
}
