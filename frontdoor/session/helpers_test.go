package session

import (
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/keys/keystest"
	"github.com/clawhold/clawhold/store"
	"github.com/clawhold/clawhold/store/storetest"
)

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
	root *keystest.Root
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

// forEachBackend runs f against SQLite and PostgreSQL (storetest.ForEach).
func forEachBackend(t *testing.T, f func(t *testing.T, e *env)) {
	storetest.ForEach(t, "chsess", func(t *testing.T, b storetest.Backend) {
		f(t, &env{root: keystest.NewRoot(t), clk: newClock(), open: b.Open})
	})
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
