package session

import (
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultPollInterval is how often a Hub asks the database whether the
// sessions it holds connections for have ended. With one query per poll it
// bounds how late a revoke made by another process (the CLI) takes effect.
const DefaultPollInterval = 250 * time.Millisecond

// Hub closes long-lived connections (proxied WebSockets) when their session
// ends, within a second: at once for revokes and rotations done through
// its Manager in this process; within PollInterval (plus one query) for
// timeouts and for revokes by other processes sharing the database.
//
// Register connections from the reverse proxy and keep Run running for the
// life of the front door. Set Manager; the zero PollInterval means
// DefaultPollInterval.
type Hub struct {
	Manager      *Manager
	PollInterval time.Duration

	mu    sync.Mutex
	conns map[string]map[uint64]func() // session id → registration → close
	next  uint64
	done  bool // Run has returned: nothing enforces ends any more

	// noting is held while expiry events are written, off the poll loop:
	// a write may queue behind other writers, and polls must not wait.
	noting sync.Mutex
}

// Register records a connection of session id; closeFn ends it (for a
// net.Conn, its Close). closeFn is called at most once, on its own
// goroutine, so it may block briefly without delaying other closes. Call the
// returned func when the connection ends on its own.
//
// Registering for a session that has already ended is safe: the next poll
// closes the connection.
func (h *Hub) Register(id string, closeFn func()) (unregister func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done || !ValidID(id) {
		go closeFn()
		return func() {}
	}
	if h.conns == nil {
		h.conns = make(map[string]map[uint64]func())
	}
	h.next++
	n := h.next
	if h.conns[id] == nil {
		h.conns[id] = make(map[uint64]func())
	}
	h.conns[id][n] = closeFn
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if cs := h.conns[id]; cs != nil {
			delete(cs, n)
			if len(cs) == 0 {
				delete(h.conns, id)
			}
		}
	}
}

// Live reports how many connections are registered.
func (h *Hub) Live() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, cs := range h.conns {
		n += len(cs)
	}
	return n
}

// CloseSession closes every registered connection of session id now.
func (h *Hub) CloseSession(id string) {
	if h.Manager != nil {
		h.Manager.forget(id) // ended elsewhere: stop answering from memory too
	}
	h.mu.Lock()
	cs := h.conns[id]
	delete(h.conns, id)
	h.mu.Unlock()
	for _, fn := range cs {
		go fn()
	}
}

// Run polls until ctx is done, then closes every registered connection
// (and any registered later): once nothing enforces session ends, no
// connection may outlive its session unnoticed.
func (h *Hub) Run(ctx context.Context) error {
	if h.Manager == nil || h.Manager.DB == nil {
		return errors.New("session hub: no manager or database")
	}
	h.Manager.addHub(h)
	defer h.Manager.removeHub(h)
	defer h.shutdown()

	interval := h.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			h.poll(ctx, interval)
		}
	}
}

func (h *Hub) poll(ctx context.Context, interval time.Duration) {
	h.mu.Lock()
	ids := make([]string, 0, len(h.conns))
	for id := range h.conns {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	if len(ids) == 0 {
		return // no connections, no query
	}
	// A poll must not outlast the containment bound by much; a database
	// that slow is reported and retried on the next tick.
	qctx, cancel := context.WithTimeout(ctx, max(4*interval, time.Second))
	defer cancel()
	ended, expired, err := h.Manager.ended(qctx, ids)
	if err != nil {
		h.Manager.logger().Warn("session hub: polling", "sessions", len(ids), "err", err)
		return
	}
	for id := range ended {
		h.CloseSession(id)
	}
	if len(expired) > 0 && h.noting.TryLock() {
		// One writer at a time; expiries it misses are seen again on the
		// next poll (their sessions' connections are gone, though) or by
		// Lookup and Sweep, which record them.
		go func() {
			defer h.noting.Unlock()
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := h.Manager.noteExpired(ctx, expired); err != nil {
				h.Manager.logger().Warn("session hub: recording expiry", "err", err)
			}
		}()
	}
}

func (h *Hub) shutdown() {
	h.mu.Lock()
	h.done = true
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	for _, cs := range conns {
		for _, fn := range cs {
			go fn()
		}
	}
}
