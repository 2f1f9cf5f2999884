package session

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/keys/keystest"
	"github.com/clawhold/clawhold/store"
)

func TestCreateLookup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		tok, created := mustCreate(t, m, "alice")
		if len(tok) != TokenLen {
			t.Fatalf("token length %d, want %d", len(tok), TokenLen)
		}
		if created.ID == tok || !ValidID(created.ID) {
			t.Fatalf("session id is not the token's hash")
		}

		got, err := m.Lookup(t.Context(), tok)
		if err != nil {
			t.Fatalf("Lookup: %v", err)
		}
		want := Session{ID: created.ID, User: "alice", Tenant: "acme", Role: "admin", Created: e.clk.Now(),
			LastSeen: e.clk.Now(), Expires: e.clk.Now().Add(DefaultAbsoluteTimeout), IdleTimeout: DefaultIdleTimeout,
			IP: "192.0.2.7", UserAgent: "test-agent/1.0", AuthMethod: "password+totp"}
		got2 := *got
		got2.sealed = nil
		if got2 != want {
			t.Errorf("Lookup =\n%+v\nwant\n%+v", got2, want)
		}
		if got.CSRFToken() == "" || got.CSRFToken() != created.CSRFToken() {
			t.Errorf("CSRF token differs between Create and Lookup")
		}
		// A second Manager (another process) sees the same session and
		// opens its sealed data.
		other, err := e.manager(t).Lookup(t.Context(), tok)
		if err != nil || other.CSRFToken() != created.CSRFToken() {
			t.Errorf("Lookup from a second manager: err %v, CSRF equal %v", err, err == nil && other.CSRFToken() == created.CSRFToken())
		}

		for _, tc := range []struct {
			name  string
			token string
			want  bool
		}{
			{"own", got.CSRFToken(), true},
			{"empty", "", false},
			{"other session", mustCSRF(t, m), false},
			{"truncated", got.CSRFToken()[1:], false},
			{"case flipped", strings.ToUpper(got.CSRFToken()), got.CSRFToken() == strings.ToUpper(got.CSRFToken())},
		} {
			if ok := got.VerifyCSRF(tc.token); ok != tc.want {
				t.Errorf("VerifyCSRF(%s) = %v, want %v", tc.name, ok, tc.want)
			}
		}
		if (&Session{}).VerifyCSRF("") {
			t.Error("VerifyCSRF on a session without sealed data accepted the empty token")
		}
		// Printing a session shows neither the token nor the CSRF secret.
		for _, s := range []string{fmt.Sprintf("%+v", got), fmt.Sprintf("%#v", *got)} {
			if strings.Contains(s, got.CSRFToken()) || strings.Contains(s, tok) {
				t.Errorf("formatted Session leaks a secret")
			}
		}

		for _, l := range []Login{
			{Tenant: "acme", Role: "admin"},
			{User: "alice", Tenant: "acme"},
			{User: "alice", Role: "admin"},
			{User: "alice", Tenant: "../etc", Role: "admin"},
			{User: strings.Repeat("a", 513), Tenant: "acme", Role: "admin"},
		} {
			if _, _, err := m.Create(t.Context(), l); err == nil {
				t.Errorf("Create(%+v) succeeded", l)
			}
		}

		unknown := token{1, 2, 3}.String()
		if _, err := m.Lookup(t.Context(), unknown); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup(unknown) = %v, want ErrNoSession", err)
		}

		assertEvent(t, m, EventCreate, created.ID, map[string]any{"user": "alice", "role": "admin", "auth_method": "password+totp"})
		assertNoSecretsInEvents(t, m, tok, got.CSRFToken())
	})
}

func mustCSRF(t *testing.T, m *Manager) string {
	_, s := mustCreate(t, m, "someone")
	return s.CSRFToken()
}

func TestExpiry(t *testing.T) {
	type step struct {
		advance time.Duration
		wantOK  bool
	}
	tests := []struct {
		name       string
		steps      []step
		wantReason string // of the expire event, "" for none
	}{
		{"fresh", []step{{0, true}}, ""},
		{"just before idle", []step{{DefaultIdleTimeout - time.Millisecond, true}}, ""},
		{"idle", []step{{DefaultIdleTimeout, false}}, ReasonIdle},
		{"activity keeps it alive", []step{{20 * time.Minute, true}, {20 * time.Minute, true}, {20 * time.Minute, true}}, ""},
		{"idle after activity", []step{{20 * time.Minute, true}, {20 * time.Minute, true}, {31 * time.Minute, false}}, ReasonIdle},
		{"touch is throttled", []step{{30 * time.Second, true}, {29*time.Minute + 31*time.Second, false}}, ReasonIdle},
		{"absolute despite activity", func() []step {
			var s []step
			for range 12*60/25 - 1 {
				s = append(s, step{25 * time.Minute, true})
			}
			return append(s, step{25 * time.Minute, true}, step{25 * time.Minute, false})
		}(), ReasonAbsolute},
		{"stays dead", []step{{DefaultIdleTimeout, false}, {time.Second, false}}, ReasonIdle},
	}
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				tok, s := mustCreate(t, m, "alice")
				start := e.clk.Now()
				for i, st := range tc.steps {
					e.clk.Advance(st.advance)
					_, err := m.Lookup(t.Context(), tok)
					switch {
					case st.wantOK && err != nil:
						t.Fatalf("step %d (+%s): Lookup: %v", i, e.clk.Now().Sub(start), err)
					case !st.wantOK && !errors.Is(err, ErrNoSession):
						t.Fatalf("step %d (+%s): Lookup = %v, want ErrNoSession", i, e.clk.Now().Sub(start), err)
					}
				}
				evs := eventsFor(t, m, EventExpire, s.ID)
				switch {
				case tc.wantReason == "" && len(evs) > 0:
					t.Errorf("unexpected expire events %v", evs)
				case tc.wantReason != "" && len(evs) != 1:
					t.Errorf("%d expire events, want 1", len(evs))
				case tc.wantReason != "" && evs[0].Detail["reason"] != tc.wantReason:
					t.Errorf("expire reason %v, want %q", evs[0].Detail["reason"], tc.wantReason)
				}
			})
		}
	})
}

// TestTouchThrottled checks that Lookup writes last-seen at most once per
// TouchInterval.
func TestTouchThrottled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		m.TouchInterval = 10 * time.Second
		tok, s := mustCreate(t, m, "alice")
		for _, tc := range []struct {
			advance  time.Duration
			wantSeen time.Duration // since creation, as stored
		}{
			{time.Second, 0},
			{8 * time.Second, 0},
			{time.Second, 10 * time.Second},
			{5 * time.Second, 10 * time.Second},
			{5 * time.Second, 20 * time.Second},
		} {
			e.clk.Advance(tc.advance)
			if _, err := m.Lookup(t.Context(), tok); err != nil {
				t.Fatal(err)
			}
			var seen int64
			err := m.DB.View(t.Context(), func(tx *store.Tx) error {
				return tx.QueryRow(t.Context(), `SELECT last_seen_at FROM sessions WHERE id = ?`, s.ID).Scan(&seen)
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := time.UnixMilli(seen).Sub(s.Created); got != tc.wantSeen {
				t.Errorf("at +%s: stored last seen +%s, want +%s", e.clk.Now().Sub(s.Created), got, tc.wantSeen)
			}
		}
	})
}

func TestRotate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		oldTok, old := mustCreate(t, m, "alice")
		e.clk.Advance(20 * time.Minute)
		newTok, s, err := m.Rotate(t.Context(), oldTok)
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		if newTok == oldTok || s.ID == old.ID || s.CSRFToken() == old.CSRFToken() {
			t.Fatal("rotation kept the token, id or CSRF secret")
		}
		if !s.Expires.Equal(old.Expires) {
			t.Errorf("rotation moved absolute expiry from %v to %v", old.Expires, s.Expires)
		}
		if _, err := m.Lookup(t.Context(), oldTok); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup(old token) = %v, want ErrNoSession", err)
		}
		got, err := m.Lookup(t.Context(), newTok)
		if err != nil || got.User != "alice" || got.Role != "admin" || got.AuthMethod != "password+totp" {
			t.Fatalf("Lookup(new token) = %+v, %v", got, err)
		}
		if _, _, err := m.Rotate(t.Context(), oldTok); !errors.Is(err, ErrNoSession) {
			t.Errorf("Rotate(old token) again = %v, want ErrNoSession", err)
		}
		assertEvent(t, m, EventRotate, s.ID, map[string]any{"from": old.ID, "user": "alice"})

		// A privilege change rotates into the new role.
		tok3, s3, err := m.RotateRole(t.Context(), newTok, "viewer")
		if err != nil || s3.Role != "viewer" {
			t.Fatalf("RotateRole = %+v, %v", s3, err)
		}
		if got, err := m.Lookup(t.Context(), tok3); err != nil || got.Role != "viewer" {
			t.Errorf("Lookup after RotateRole = %+v, %v", got, err)
		}
		if _, err := m.Lookup(t.Context(), newTok); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup(pre-RotateRole token) = %v, want ErrNoSession", err)
		}

		// An expired session cannot be rotated back to life.
		tok4, _ := mustCreate(t, m, "bob")
		e.clk.Advance(DefaultIdleTimeout)
		if _, _, err := m.Rotate(t.Context(), tok4); !errors.Is(err, ErrNoSession) {
			t.Errorf("Rotate(idle-expired) = %v, want ErrNoSession", err)
		}
		assertNoSecretsInEvents(t, m, oldTok, newTok, tok3, tok4)
	})
}

func TestRevoke(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		tok, s := mustCreate(t, m, "alice")
		keepTok, keep := mustCreate(t, m, "alice")

		tests := []struct {
			name    string
			id      string
			wantErr error
		}{
			{"live", s.ID, nil},
			{"again", s.ID, nil},
			{"unknown", token{9}.id(), ErrNoSession},
			{"malformed", "not-an-id", ErrNoSession},
			{"token instead of id", tok, ErrNoSession},
		}
		for _, tc := range tests {
			if err := m.Revoke(t.Context(), tc.id, ReasonLogout); !errors.Is(err, tc.wantErr) {
				t.Errorf("Revoke(%s) = %v, want %v", tc.name, err, tc.wantErr)
			}
		}
		if _, err := m.Lookup(t.Context(), tok); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup(revoked) = %v, want ErrNoSession", err)
		}
		// The CLI needs no keyring to list and revoke.
		cliTok, cliS := mustCreate(t, m, "carol")
		cli := &Manager{DB: e.manager(t).DB, Clock: e.clk.Now, Actor: "cli:test"}
		if err := cli.Revoke(t.Context(), cliS.ID, "by cli"); err != nil {
			t.Errorf("Revoke without a keyring: %v", err)
		}
		if _, err := m.Lookup(t.Context(), cliTok); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup(revoked by cli) = %v, want ErrNoSession", err)
		}
		if evs := eventsFor(t, m, EventRevoke, cliS.ID); len(evs) != 1 || evs[0].Actor != "cli:test" {
			t.Errorf("cli revoke events = %+v", evs)
		}
		if _, err := m.Lookup(t.Context(), keepTok); err != nil {
			t.Errorf("Lookup(other session) = %v", err)
		}
		if evs := eventsFor(t, m, EventRevoke, s.ID); len(evs) != 1 || evs[0].Detail["reason"] != ReasonLogout {
			t.Errorf("revoke events = %+v, want one with reason %q", evs, ReasonLogout)
		}

		live, err := m.List(t.Context(), ListOptions{User: "alice"})
		if err != nil || len(live) != 1 || live[0].ID != keep.ID {
			t.Errorf("List(live) = %+v, %v; want only %s", live, err, keep.ID)
		}
		all, err := m.List(t.Context(), ListOptions{User: "alice", Ended: true})
		if err != nil || len(all) != 2 {
			t.Fatalf("List(ended) = %d sessions, %v; want 2", len(all), err)
		}
		for _, s2 := range all {
			if s2.ID == s.ID && (s2.Revoked.IsZero() || s2.RevokeReason != ReasonLogout) {
				t.Errorf("listed revoked session = %+v", s2)
			}
			if s2.CSRFToken() != "" {
				t.Errorf("List exposes CSRF token")
			}
		}
		assertNoSecretsInEvents(t, m, tok, keepTok)
	})
}

func TestRevokeUser(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		a1, _ := mustCreate(t, m, "alice")
		a2, _ := mustCreate(t, m, "alice")
		b, _ := mustCreate(t, m, "bob")
		for _, tc := range []struct {
			user string
			want int
		}{{"alice", 2}, {"alice", 0}, {"nobody", 0}} {
			n, err := m.RevokeUser(t.Context(), tc.user, "")
			if err != nil || n != tc.want {
				t.Errorf("RevokeUser(%q) = %d, %v; want %d", tc.user, n, err, tc.want)
			}
		}
		for _, tc := range []struct {
			name, tok string
			live      bool
		}{{"alice 1", a1, false}, {"alice 2", a2, false}, {"bob", b, true}} {
			_, err := m.Lookup(t.Context(), tc.tok)
			if live := err == nil; live != tc.live {
				t.Errorf("%s: live = %v (err %v), want %v", tc.name, live, err, tc.live)
			}
		}
		evs, _ := events.List(t.Context(), m.DB, events.Filter{Type: EventRevoke})
		if len(evs) != 2 || evs[0].Detail["reason"] != ReasonUserDisable {
			t.Errorf("revoke events = %+v, want 2 with reason %q", evs, ReasonUserDisable)
		}
	})
}

// TestDumpHoldsNoToken: everything stored about a session, used as a
// cookie, opens nothing.
func TestDumpHoldsNoToken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		tok, s := mustCreate(t, m, "alice")
		raw, _ := parseToken(tok)

		var dump []string
		err := m.DB.View(t.Context(), func(tx *store.Tx) error {
			rows, err := tx.Query(t.Context(), `SELECT * FROM sessions`)
			if err != nil {
				return err
			}
			defer rows.Close()
			cols, _ := rows.Columns()
			for rows.Next() {
				vals := make([]any, len(cols))
				ptrs := make([]any, len(cols))
				for i := range vals {
					ptrs[i] = &vals[i]
				}
				if err := rows.Scan(ptrs...); err != nil {
					return err
				}
				for _, v := range vals {
					switch v := v.(type) {
					case []byte:
						dump = append(dump, string(v))
					case string:
						dump = append(dump, v)
					}
				}
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(dump) == 0 {
			t.Fatal("dump is empty")
		}
		for _, v := range dump {
			if strings.Contains(v, tok) || bytes.Contains([]byte(v), raw[:]) {
				t.Fatal("the sessions table holds the token")
			}
		}

		// The id column, as is and as the token its bytes would make.
		idBytes, _ := hex.DecodeString(s.ID)
		for _, cookie := range []string{s.ID, base64.RawURLEncoding.EncodeToString(idBytes), s.ID[:TokenLen]} {
			if _, err := m.Lookup(t.Context(), cookie); !errors.Is(err, ErrNoSession) {
				t.Errorf("Lookup(value from the dump) = %v, want ErrNoSession", err)
			}
		}
	})
}

func TestTamperedSeal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		tests := []struct {
			name   string
			tamper func(t *testing.T, victim, other *Session)
		}{
			{"flipped byte", func(t *testing.T, victim, _ *Session) {
				ct := sealedOf(t, m, victim.ID)
				ct[len(ct)-1] ^= 1
				execSQL(t, m, `UPDATE sessions SET sealed = ? WHERE id = ?`, ct, victim.ID)
			}},
			{"blob of another session", func(t *testing.T, victim, other *Session) {
				execSQL(t, m, `UPDATE sessions SET sealed = ? WHERE id = ?`, sealedOf(t, m, other.ID), victim.ID)
			}},
			{"user renamed", func(t *testing.T, victim, _ *Session) {
				execSQL(t, m, `UPDATE sessions SET user_name = 'mallory' WHERE id = ?`, victim.ID)
			}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				tok, victim := mustCreate(t, m, "alice")
				_, other := mustCreate(t, m, "alice")
				tc.tamper(t, victim, other)
				_, err := m.Lookup(t.Context(), tok)
				if !errors.Is(err, keys.ErrOpen) {
					t.Errorf("Lookup after tampering = %v, want keys.ErrOpen", err)
				}
				if err != nil && strings.Contains(err.Error(), tok) {
					t.Error("error quotes the token")
				}
				if _, _, err := m.Rotate(t.Context(), tok); !errors.Is(err, keys.ErrOpen) {
					t.Errorf("Rotate after tampering = %v, want keys.ErrOpen", err)
				}
			})
		}
	})
}

func sealedOf(t *testing.T, m *Manager, id string) []byte {
	t.Helper()
	var ct []byte
	err := m.DB.View(t.Context(), func(tx *store.Tx) error {
		return tx.QueryRow(t.Context(), `SELECT sealed FROM sessions WHERE id = ?`, id).Scan(&ct)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func TestSweep(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		_, idle := mustCreate(t, m, "idle")
		_, revoked := mustCreate(t, m, "revoked")
		if err := m.Revoke(t.Context(), revoked.ID, "test"); err != nil {
			t.Fatal(err)
		}
		e.clk.Advance(2 * time.Hour)
		_, recent := mustCreate(t, m, "recent") // expires idle at +2h30m
		liveTok, live := mustCreate(t, m, "live")

		e.clk.Advance(20 * time.Minute)
		if _, err := m.Lookup(t.Context(), liveTok); err != nil {
			t.Fatal(err)
		}
		e.clk.Advance(DefaultIdleTimeout - 20*time.Minute + time.Minute)
		n, err := m.Sweep(t.Context(), time.Hour)
		if err != nil || n != 2 {
			t.Fatalf("Sweep = %d, %v; want 2 (idle and revoked)", n, err)
		}
		left, err := m.List(t.Context(), ListOptions{Ended: true})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, s := range left {
			ids = append(ids, s.ID)
		}
		if want := []string{live.ID, recent.ID}; strings.Join(ids, ",") != strings.Join(want, ",") &&
			strings.Join(ids, ",") != want[1]+","+want[0] {
			t.Errorf("after Sweep %v remain, want %v", ids, want)
		}
		// Expiries noticed only by the sweep are recorded, once.
		for _, s := range []*Session{idle, recent} {
			if evs := eventsFor(t, m, EventExpire, s.ID); len(evs) != 1 {
				t.Errorf("%s: %d expire events, want 1", s.User, len(evs))
			}
		}
		if _, err := m.Sweep(t.Context(), time.Hour); err != nil {
			t.Fatal(err)
		}
		if evs := eventsFor(t, m, EventExpire, recent.ID); len(evs) != 1 {
			t.Errorf("second sweep: %d expire events, want 1", len(evs))
		}
	})
}

// TestMalformedNoQuery proves malformed cookies never reach the database: on
// a closed database, they still give ErrNoSession while a well-formed one
// fails on the query.
func TestMalformedNoQuery(t *testing.T) {
	var s store.Store
	e := &env{root: keystest.NewRoot(t), clk: newClock()}
	dir := t.TempDir()
	e.open = func(t *testing.T) store.Store {
		var err error
		if s, err = store.OpenSQLite(dir); err != nil {
			t.Fatal(err)
		}
		return s
	}
	m := e.manager(t)
	tok, _ := mustCreate(t, m, "alice")
	// Closing the store closes m.DB's pools: any query now fails.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range malformedTokens(tok) {
		if _, err := m.Lookup(t.Context(), c.value); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup(%s) = %v, want ErrNoSession without a query", c.name, err)
		}
		if _, _, err := m.Rotate(t.Context(), c.value); !errors.Is(err, ErrNoSession) {
			t.Errorf("Rotate(%s) = %v, want ErrNoSession without a query", c.name, err)
		}
	}
	if _, err := m.Lookup(t.Context(), tok); err == nil || errors.Is(err, ErrNoSession) {
		t.Errorf("Lookup(well-formed) on a closed database = %v, want a database error", err)
	}
}

func assertEvent(t *testing.T, m *Manager, typ, subject string, detail map[string]any) {
	t.Helper()
	evs := eventsFor(t, m, typ, subject)
	if len(evs) != 1 {
		t.Fatalf("%d %s events for %s, want 1", len(evs), typ, subject)
	}
	for k, v := range detail {
		if evs[0].Detail[k] != v {
			t.Errorf("%s event detail %s = %v, want %v", typ, k, evs[0].Detail[k], v)
		}
	}
}

func eventsFor(t *testing.T, m *Manager, typ, subject string) []events.Event {
	t.Helper()
	evs, err := events.List(t.Context(), m.DB, events.Filter{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Event
	for _, ev := range evs {
		if ev.Subject == subject {
			out = append(out, ev)
		}
	}
	return out
}

// assertNoSecretsInEvents fails if any event mentions one of secrets.
func assertNoSecretsInEvents(t *testing.T, m *Manager, secrets ...string) {
	t.Helper()
	evs, err := events.List(t.Context(), m.DB, events.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(evs)
	for _, s := range secrets {
		if s != "" && bytes.Contains(b, []byte(s)) {
			t.Fatal("an event holds a token or CSRF secret")
		}
	}
}

// TestRetiredKey: a session sealed by a key version the operator retired
// is gone, not a server fault.
func TestRetiredKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		tok, _ := mustCreate(t, m, "alice")
		if _, err := m.Keyring.Rotate(t.Context()); err != nil {
			t.Fatal(err)
		}
		newTok, _ := mustCreate(t, m, "alice")
		if err := m.Keyring.Retire(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Lookup(t.Context(), tok); !errors.Is(err, ErrNoSession) {
			t.Errorf("Lookup(sealed by retired version) = %v, want ErrNoSession", err)
		}
		if _, err := m.Lookup(t.Context(), newTok); err != nil {
			t.Errorf("Lookup(sealed by active version) = %v", err)
		}
	})
}

// TestLookupCache: an end in this process is seen at once; one by another
// process (the CLI) within CacheTTL; and a cached answer never outlives
// the session's own timeouts.
func TestLookupCache(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		m.CacheTTL = time.Second
		tok, s := mustCreate(t, m, "carol")
		if _, err := m.Lookup(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
		// In-process revoke: immediate.
		if err := m.Revoke(t.Context(), s.ID, "test"); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Lookup(t.Context(), tok); !errors.Is(err, ErrNoSession) {
			t.Fatalf("after an in-process revoke: %v", err)
		}
		// Another process's revoke: within CacheTTL.
		tok, s = mustCreate(t, m, "carol")
		if _, err := m.Lookup(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
		cli := &Manager{DB: m.DB, Actor: "cli:test", Clock: e.clk.Now}
		if err := cli.Revoke(t.Context(), s.ID, "test"); err != nil {
			t.Fatal(err)
		}
		e.clk.Advance(time.Second)
		if _, err := m.Lookup(t.Context(), tok); !errors.Is(err, ErrNoSession) {
			t.Fatalf("%v after another process's revoke: %v", time.Second, err)
		}
		// A cached session still expires on time.
		m.IdleTimeout = 2 * time.Minute
		tok, _ = mustCreate(t, m, "carol")
		if _, err := m.Lookup(t.Context(), tok); err != nil {
			t.Fatal(err)
		}
		m.CacheTTL = time.Hour
		e.clk.Advance(3 * time.Minute)
		if _, err := m.Lookup(t.Context(), tok); !errors.Is(err, ErrNoSession) {
			t.Fatalf("cached session past its idle timeout: %v", err)
		}
	})
}

// TestTouch: activity reported for a session keeps it from idling out,
// but never revives one that has.
func TestTouch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		m.CacheTTL = -1
		m.IdleTimeout = 10 * time.Minute
		tok, s := mustCreate(t, m, "erin")
		for i := 0; i < 3; i++ { // 24 minutes of socket-only activity
			e.clk.Advance(8 * time.Minute)
			if err := m.Touch(t.Context(), s.ID); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := m.Lookup(t.Context(), tok); err != nil {
			t.Fatalf("touched session idled out: %v", err)
		}
		e.clk.Advance(11 * time.Minute)
		if err := m.Touch(t.Context(), s.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Lookup(t.Context(), tok); !errors.Is(err, ErrNoSession) {
			t.Fatalf("a Touch revived an idled-out session: %v", err)
		}
		if err := m.Touch(t.Context(), "not-an-id"); !errors.Is(err, ErrNoSession) {
			t.Errorf("malformed id: %v", err)
		}
	})
}
