package account

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/keys/keystest"
	"github.com/clawhold/clawhold/store"
	"github.com/clawhold/clawhold/store/storetest"
)

// cheapParams keep tests fast; New refuses them, newService does not.
var cheapParams = Params{Memory: 64, Time: 1, Threads: 1}

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
// and on PostgreSQL (storetest.ForEach).
func forEachBackend(t *testing.T, f func(t *testing.T, db *store.DB)) {
	storetest.ForEach(t, "chacct", func(t *testing.T, b storetest.Backend) { f(t, b.System(t)) })
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
	kr, err := keys.OpenKeyring(t.Context(), db, keystest.NewRoot(t), "system", keys.Options{Tables: SealedTables()})
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
