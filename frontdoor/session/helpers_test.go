package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // registers driver "pgx" for cleanup
)

// testRoot is a local AES-GCM root key, as in package keys' tests (package
// kms's local backends read files or the environment).
type testRoot struct{ aead cipher.AEAD }

func newTestRoot(t testing.TB) *testRoot {
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &testRoot{a}
}

func (r *testRoot) ID() string { return "test-root" }
func (r *testRoot) Wrap(_ context.Context, pt, aad []byte) ([]byte, error) {
	nonce := make([]byte, r.aead.NonceSize())
	rand.Read(nonce)
	return r.aead.Seal(nonce, nonce, pt, aad), nil
}
func (r *testRoot) Unwrap(_ context.Context, w, aad []byte) ([]byte, error) {
	if len(w) < r.aead.NonceSize() {
		return nil, errors.New("short")
	}
	return r.aead.Open(nil, w[:r.aead.NonceSize()], w[r.aead.NonceSize():], aad)
}

// clock is a controllable time source shared by managers and keyrings.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is one backend's storage, shared by every Manager a test opens on
// it; each Manager gets its own Store, as a separate process (the CLI)
// would.
type env struct {
	open func(t *testing.T) store.Store
	root *testRoot
	clk  *clock
}

// manager opens a new Store over env's storage and a Manager on it.
func (e *env) manager(t *testing.T) *Manager {
	t.Helper()
	s := e.open(t)
	db, err := s.System(t.Context())
	if err != nil {
		t.Fatalf("System: %v", err)
	}
	kr, err := keys.OpenKeyring(t.Context(), db, e.root, "system", keys.Options{Now: e.clk.Now})
	if err != nil {
		t.Fatalf("OpenKeyring: %v", err)
	}
	return &Manager{DB: db, Keyring: kr, Clock: e.clk.Now, Actor: "test"}
}

// forEachBackend runs f against SQLite and PostgreSQL. PostgreSQL is
// skipped when CLAWHOLD_TEST_POSTGRES_DSN is unset, except with CI=true,
// where it fails.
func forEachBackend(t *testing.T, f func(t *testing.T, e *env)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		f(t, &env{root: newTestRoot(t), clk: newClock(), open: func(t *testing.T) store.Store {
			s, err := store.OpenSQLite(dir)
			if err != nil {
				t.Fatalf("OpenSQLite: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := os.Getenv("CLAWHOLD_TEST_POSTGRES_DSN")
		if dsn == "" {
			const msg = "PostgreSQL not available: set CLAWHOLD_TEST_POSTGRES_DSN (scripts/postgres.sh start prints it)"
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		prefix := testSchemaPrefix(t, dsn)
		f(t, &env{root: newTestRoot(t), clk: newClock(), open: func(t *testing.T) store.Store {
			s, err := store.OpenPostgres(t.Context(), dsn, store.PostgresOptions{SchemaPrefix: prefix})
			if err != nil {
				t.Fatalf("OpenPostgres: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}})
	})
}

// testSchemaPrefix returns a schema prefix unique to this test and drops
// every schema carrying it when the test ends (as store's tests do).
func testSchemaPrefix(t *testing.T, dsn string) string {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	prefix := "chsess_" + hex.EncodeToString(b) + "_"
	t.Cleanup(func() {
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

func mustCreate(t *testing.T, m *Manager, user string) (string, *Session) {
	t.Helper()
	tok, s, err := m.Create(t.Context(), Login{User: user, Tenant: "acme", Role: "admin", IP: "192.0.2.7",
		UserAgent: "test-agent/1.0", AuthMethod: "password+totp"})
	if err != nil {
		t.Fatalf("Create(%q): %v", user, err)
	}
	return tok, s
}

// execSQL runs one statement against m's database.
func execSQL(t *testing.T, m *Manager, q string, args ...any) {
	t.Helper()
	err := m.DB.Update(t.Context(), func(tx *store.Tx) error {
		_, err := tx.Exec(t.Context(), q, args...)
		return err
	})
	if err != nil {
		t.Fatalf("exec %q: %v", q, err)
	}
}
