package account

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx", for schema cleanup

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// cheapParams keep tests fast; New refuses them, newService does not.
var cheapParams = Params{Memory: 64, Time: 1, Threads: 1}

// testRoot is a local AES-256-GCM root key, like package kms's file
// backend (not imported: kms is not ours to depend on in tests).
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

// clock is a controllable time source. It starts 15 s into a TOTP step.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 15, 0, time.UTC)} }
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

// forEachBackend runs f as a subtest with a fresh system database on SQLite
// and on PostgreSQL (skipped without CLAWHOLD_TEST_POSTGRES_DSN, except
// with CI=true, where it fails).
func forEachBackend(t *testing.T, f func(t *testing.T, db *store.DB)) {
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		os.Chmod(dir, 0o700)
		s, err := store.OpenSQLite(dir)
		if err != nil {
			t.Fatalf("OpenSQLite: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		db, err := s.System(t.Context())
		if err != nil {
			t.Fatalf("System: %v", err)
		}
		f(t, db)
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
		b := make([]byte, 4)
		rand.Read(b)
		prefix := "chacct_" + hex.EncodeToString(b) + "_"
		t.Cleanup(func() { dropSchemas(t, dsn, prefix) })
		s, err := store.OpenPostgres(t.Context(), dsn, store.PostgresOptions{SchemaPrefix: prefix})
		if err != nil {
			t.Fatalf("OpenPostgres: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		db, err := s.System(t.Context())
		if err != nil {
			t.Fatalf("System: %v", err)
		}
		f(t, db)
	})
}

// dropSchemas drops every schema whose name starts with prefix.
func dropSchemas(t *testing.T, dsn, prefix string) {
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
		if err := rows.Scan(&s); err == nil {
			schemas = append(schemas, s)
		}
	}
	rows.Close()
	for _, s := range schemas {
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("cleanup: dropping %s: %v", s, err)
		}
	}
}

// fixture is a Service over a fresh system database with a test clock.
type fixture struct {
	db  *store.DB
	kr  *keys.Keyring
	clk *clock
	svc *Service
}

func newFixture(t *testing.T, db *store.DB, cfg Config) *fixture {
	t.Helper()
	kr, err := keys.OpenKeyring(t.Context(), db, newTestRoot(t), "system", keys.Options{Tables: SealedTables()})
	if err != nil {
		t.Fatalf("OpenKeyring: %v", err)
	}
	f := &fixture{db: db, kr: kr, clk: newClock()}
	if cfg.Params == (Params{}) {
		cfg.Params = cheapParams
	}
	cfg.Now = f.clk.Now
	if cfg.Limiter == nil {
		cfg.Limiter = NewLimiter(LimiterConfig{Now: f.clk.Now})
	}
	f.svc, err = newService(t.Context(), db, kr, cfg)
	if err != nil {
		t.Fatalf("newService: %v", err)
	}
	return f
}

const testPassword = "correct horse battery"

var adminMeta = Meta{Actor: "cli:test"}

func webMeta(ip string) Meta { return Meta{IP: ip, UserAgent: "test-agent/1.0"} }

func (f *fixture) mustCreate(t *testing.T, name string, role Role) *User {
	t.Helper()
	u, err := f.svc.Create(t.Context(), adminMeta, NewUser{Name: name, Tenant: "default", Role: role, Password: []byte(testPassword)})
	if err != nil {
		t.Fatalf("Create(%s): %v", name, err)
	}
	return u
}

// code returns name's TOTP code for the step delta steps from now, reading
// the secret from the database as an authenticator would hold it.
func (f *fixture) code(t *testing.T, name string, delta int64) string {
	t.Helper()
	r, err := f.svc.loadTOTP(t.Context(), name)
	if err != nil || r == nil {
		t.Fatalf("loadTOTP(%s): %v, %v", name, r, err)
	}
	secret, err := f.kr.Open(t.Context(), f.svc.totpContext(name), r.ciphertext)
	if err != nil {
		t.Fatalf("opening secret: %v", err)
	}
	return string(hotp(secret, uint64(f.clk.Now().Unix()/totpPeriod+delta)))
}

// enrol enrols and confirms TOTP for name, returning the recovery codes.
func (f *fixture) enrol(t *testing.T, name string) []string {
	t.Helper()
	if _, err := f.svc.EnrollTOTP(t.Context(), adminMeta, name); err != nil {
		t.Fatalf("EnrollTOTP: %v", err)
	}
	codes, err := f.svc.ConfirmTOTP(t.Context(), webMeta("192.0.2.1"), name, f.code(t, name, 0))
	if err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	return codes
}

// eventsOf returns the events of one type (all if typ is "").
func (f *fixture) eventsOf(t *testing.T, typ string) []events.Event {
	t.Helper()
	evs, err := events.List(t.Context(), f.db, events.Filter{Type: typ, Limit: 100000})
	if err != nil {
		t.Fatalf("events.List: %v", err)
	}
	return evs
}

// allEventText is every event, JSON encoded, for secret scanning.
func (f *fixture) allEventText(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, ev := range f.eventsOf(t, "") {
		j, _ := json.Marshal(ev)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}
