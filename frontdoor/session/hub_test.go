package session

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// containment is how soon after a session ends its connections must be
// closed: a security bound, not a benchmark.
const containment = time.Second

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// closedAt reports when the peer closes c, as the browser would see it: a
// read failing.
func closedAt(c net.Conn) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				ch <- time.Now()
				return
			}
		}
	}()
	return ch
}

// startHub runs a Hub on m until the test ends.
func startHub(t *testing.T, m *Manager) *Hub {
	h := &Hub{Manager: m}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func TestHubClosesConnections(t *testing.T) {
	tests := []struct {
		name string
		// end ends the session; other is a second Manager on its own
		// Store (another process, like the CLI).
		end func(t *testing.T, e *env, m, other *Manager, tok string, s *Session) error
		// global: the end (clock) affects every session, bystanders too.
		global bool
	}{
		{name: "revoke in process", end: func(t *testing.T, e *env, m, _ *Manager, _ string, s *Session) error {
			return m.Revoke(t.Context(), s.ID, ReasonLogout)
		}},
		{name: "revoke by another process", end: func(t *testing.T, e *env, _, other *Manager, _ string, s *Session) error {
			return other.Revoke(t.Context(), s.ID, "cli")
		}},
		{name: "revoke user in process", end: func(t *testing.T, e *env, m, _ *Manager, _ string, s *Session) error {
			_, err := m.RevokeUser(t.Context(), s.User, "")
			return err
		}},
		{name: "revoke user by another process", end: func(t *testing.T, e *env, _, other *Manager, _ string, s *Session) error {
			_, err := other.RevokeUser(t.Context(), s.User, "")
			return err
		}},
		{name: "rotate", end: func(t *testing.T, e *env, m, _ *Manager, tok string, _ *Session) error {
			_, _, err := m.Rotate(t.Context(), tok)
			return err
		}},
		{name: "rotate by another process", end: func(t *testing.T, e *env, _, other *Manager, tok string, _ *Session) error {
			_, _, err := other.Rotate(t.Context(), tok)
			return err
		}},
		{name: "idle timeout", global: true, end: func(t *testing.T, e *env, _, _ *Manager, _ string, _ *Session) error {
			e.clk.Advance(DefaultIdleTimeout)
			return nil
		}},
		{name: "absolute timeout", global: true, end: func(t *testing.T, e *env, m, _ *Manager, tok string, _ *Session) error {
			// Keep it active so only the absolute bound can end it.
			for range 12 * 60 / 20 {
				e.clk.Advance(20 * time.Minute)
				if _, err := m.Lookup(t.Context(), tok); err != nil {
					return nil // reached the bound
				}
			}
			return fmt.Errorf("session outlived its absolute timeout")
		}},
		{name: "swept by another process", end: func(t *testing.T, e *env, _, other *Manager, _ string, s *Session) error {
			execSQL(t, other, `DELETE FROM sessions WHERE id = ?`, s.ID)
			return nil
		}},
	}
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		other := e.manager(t)
		hub := startHub(t, m)
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				tok, s := mustCreate(t, m, fmt.Sprintf("user%d", i))
				_, by := mustCreate(t, m, fmt.Sprintf("bystander%d", i))

				// Two connections of the victim session, one of another.
				var victims []<-chan time.Time
				for range 2 {
					client, server := tcpPair(t)
					unregister := hub.Register(s.ID, func() { server.Close() })
					t.Cleanup(unregister)
					victims = append(victims, closedAt(client))
				}
				byClient, byServer := tcpPair(t)
				t.Cleanup(hub.Register(by.ID, func() { byServer.Close() }))
				bystander := closedAt(byClient)
				// Let a poll see the live connections first, as in
				// production, where they outlive many polls.
				time.Sleep(2 * DefaultPollInterval)

				// The session has ended once the call that ends it
				// returns (its transaction committed); that call's own
				// time, e.g. queueing for SQLite's writer, is logged.
				begin := time.Now()
				if err := tc.end(t, e, m, other, tok, s); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				t.Logf("ending the session took %v", start.Sub(begin).Round(time.Millisecond))
				for _, v := range victims {
					select {
					case at := <-v:
						d := at.Sub(start)
						if d >= containment {
							t.Errorf("connection closed %v after the session ended, want < %v", d, containment)
						}
						t.Logf("connection closed %v after the session ended", d.Round(time.Millisecond))
					case <-time.After(5 * containment):
						t.Fatalf("connection still open %v after the session ended", 5*containment)
					}
				}
				if !tc.global {
					select {
					case <-bystander:
						t.Error("a connection of another session was closed")
					case <-time.After(2 * DefaultPollInterval):
					}
				}
			})
		}
	})
}

func TestHubRegistration(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		ctx, cancel := context.WithCancel(t.Context())
		h := &Hub{Manager: m, PollInterval: 50 * time.Millisecond}
		done := make(chan error, 1)
		go func() { done <- h.Run(ctx) }()

		_, s := mustCreate(t, m, "alice")
		var mu sync.Mutex
		closed := map[string]int{}
		closer := func(name string) func() {
			return func() { mu.Lock(); closed[name]++; mu.Unlock() }
		}
		count := func(name string) int { mu.Lock(); defer mu.Unlock(); return closed[name] }

		h.Register("not-an-id", closer("bad id"))
		h.Register(token{7}.id(), closer("unknown session"))
		unregister := h.Register(s.ID, closer("unregistered"))
		unregister()
		unregister() // twice is harmless
		h.Register(s.ID, closer("live"))

		waitFor(t, func() bool { return count("bad id") == 1 && count("unknown session") == 1 })
		if h.Live() != 1 {
			t.Errorf("Live = %d, want 1", h.Live())
		}
		if err := m.Revoke(t.Context(), s.ID, "test"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return count("live") == 1 })
		if count("unregistered") != 0 {
			t.Error("an unregistered connection was closed")
		}

		// When the Hub stops, nothing enforces ends: it closes everything
		// it holds and anything registered afterwards.
		_, s2 := mustCreate(t, m, "bob")
		h.Register(s2.ID, closer("at shutdown"))
		cancel()
		<-done
		h.Register(s2.ID, closer("after shutdown"))
		waitFor(t, func() bool { return count("at shutdown") == 1 && count("after shutdown") == 1 })
		time.Sleep(100 * time.Millisecond)
		for name, n := range closed {
			if n > 1 {
				t.Errorf("%s closed %d times", name, n)
			}
		}
	})
}

// TestHubPollChunks checks the poll over more live sessions than one query
// takes.
func TestHubPollChunks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.manager(t)
		_, live := mustCreate(t, m, "alice")
		_, revoked := mustCreate(t, m, "bob")
		if err := m.Revoke(t.Context(), revoked.ID, "test"); err != nil {
			t.Fatal(err)
		}
		ids := []string{live.ID}
		for i := range 1100 {
			ids = append(ids, token{byte(i), byte(i >> 8), 1}.id())
		}
		ids = append(ids, revoked.ID)
		ended, _, err := m.ended(t.Context(), ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(ended) != len(ids)-1 || ended[live.ID] != "" || ended[revoked.ID] != "test" {
			t.Errorf("ended: %d of %d, live %q, revoked %q", len(ended), len(ids), ended[live.ID], ended[revoked.ID])
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
