package account

import (
	"container/list"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// LimiterConfig configures a Limiter. Zero values take the defaults, which
// follow Authelia's regulation: 3 failures within 2 minutes ban for 5.
type LimiterConfig struct {
	MaxFailures int           // failures within Window that trigger a ban; default 3
	Window      time.Duration // default 2m
	BanTime     time.Duration // first ban; each further ban doubles it; default 5m
	MaxBanTime  time.Duration // cap on a doubled ban; default 24h
	// MaxEntries bounds the keys tracked; the least recently failed is
	// evicted first. Default 65536 (a few MiB).
	MaxEntries int
	Now        func() time.Time // clock; tests control it
}

func (c *LimiterConfig) setDefaults() {
	if c.MaxFailures <= 0 {
		c.MaxFailures = 3
	}
	if c.Window <= 0 {
		c.Window = 2 * time.Minute
	}
	if c.BanTime <= 0 {
		c.BanTime = 5 * time.Minute
	}
	if c.MaxBanTime <= 0 {
		c.MaxBanTime = 24 * time.Hour
	}
	if c.MaxBanTime < c.BanTime {
		c.MaxBanTime = c.BanTime
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = 1 << 16
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Limiter counts authentication failures per key (an IP or an account) and
// bans a key that fails too often. Callers check before verifying a
// credential and record after, so a banned key never reaches argon2 or the
// TOTP check. It is in memory only: a restart forgives everyone, which
// costs an attacker a restart they cannot trigger.
//
// Safe for concurrent use.
type Limiter struct {
	cfg LimiterConfig

	mu      sync.Mutex
	entries map[string]*list.Element // of *limitEntry
	lru     *list.List               // front: most recently failed
}

type limitEntry struct {
	key      string
	failures []time.Time // within the window, oldest first; at most MaxFailures
	until    time.Time   // banned until; zero if never banned
	bans     int         // consecutive bans, for doubling
	last     time.Time   // last failure
}

// NewLimiter returns a Limiter with cfg's zero fields defaulted.
func NewLimiter(cfg LimiterConfig) *Limiter {
	cfg.setDefaults()
	return &Limiter{cfg: cfg, entries: make(map[string]*list.Element), lru: list.New()}
}

// maxLimitKey bounds the bytes a key may hold, so long attacker-chosen names
// cannot inflate memory past MaxEntries × a small constant.
const maxLimitKey = 96

// IPKey returns the limiter key of a client address ("" for none). IPv6 addresses are
// grouped by /64, the block a single host or customer usually controls, so
// rotating through one's own prefix does not buy fresh budgets.
func IPKey(ip string) string {
	if ip == "" {
		return "" // no address (e.g. the CLI): nothing to limit by
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(ip); err2 == nil {
			addr, err = ap.Addr(), nil
		}
	}
	if err != nil {
		return "ip:?" + truncate(ip, maxLimitKey-4)
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + addr.String()
}

// AccountKey returns the limiter key of an account name as typed, so an
// unknown name is limited like a known one (no enumeration by behaviour).
func AccountKey(name string) string {
	return "user:" + truncate(strings.ToLower(name), maxLimitKey-5)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Check reports whether any of keys ("" keys are ignored) is banned, and until when (the latest
// ban among them).
func (l *Limiter) Check(keys ...string) (until time.Time, banned bool) {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if k == "" {
			continue
		}
		if el, ok := l.entries[k]; ok {
			if e := el.Value.(*limitEntry); now.Before(e.until) {
				banned = true
				if e.until.After(until) {
					until = e.until
				}
			}
		}
	}
	return until, banned
}

// Ban is a ban that a failure started.
type Ban struct {
	Key      string
	Until    time.Time
	Duration time.Duration
}

// Fail records one failure for each key and returns the bans this started.
func (l *Limiter) Fail(keys ...string) []Ban {
	now := l.cfg.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var bans []Ban
	for _, k := range keys {
		if k == "" {
			continue
		}
		e := l.touch(k, now)
		if now.Before(e.until) {
			continue // already banned (a check raced this failure)
		}
		// A key quiet for longer than the longest ban starts over, so one
		// bad week does not double bans forever.
		if !e.last.IsZero() && now.Sub(e.last) > l.cfg.MaxBanTime+l.cfg.Window {
			e.bans = 0
		}
		e.last = now
		cut := 0
		for cut < len(e.failures) && now.Sub(e.failures[cut]) >= l.cfg.Window {
			cut++
		}
		e.failures = append(e.failures[:0], e.failures[cut:]...)
		e.failures = append(e.failures, now)
		if len(e.failures) < l.cfg.MaxFailures {
			continue
		}
		d := l.cfg.BanTime
		for i := 0; i < e.bans && d < l.cfg.MaxBanTime; i++ {
			d *= 2
		}
		d = min(d, l.cfg.MaxBanTime)
		e.bans++
		e.until = now.Add(d)
		e.failures = e.failures[:0]
		bans = append(bans, Ban{Key: k, Until: e.until, Duration: d})
	}
	return bans
}

// touch returns k's entry, creating it (and evicting the least recently
// failed entries beyond MaxEntries) if needed, and marks it most recent.
// l.mu is held.
func (l *Limiter) touch(k string, now time.Time) *limitEntry {
	if el, ok := l.entries[k]; ok {
		l.lru.MoveToFront(el)
		return el.Value.(*limitEntry)
	}
	for l.lru.Len() >= l.cfg.MaxEntries {
		l.evict(now)
	}
	e := &limitEntry{key: k, failures: make([]time.Time, 0, l.cfg.MaxFailures)}
	l.entries[k] = l.lru.PushFront(e)
	return e
}

// evictScan is how many of the least recent entries eviction looks at for
// one that is not banned.
const evictScan = 8

// evict removes one entry: the least recently failed that is not banned
// among the evictScan oldest, else the oldest. Spraying fresh keys (one
// failure each, never banned) therefore evicts the spray, not a ban on the
// account being attacked. l.mu is held.
func (l *Limiter) evict(now time.Time) {
	victim := l.lru.Back()
	for el, i := victim, 0; el != nil && i < evictScan; el, i = el.Prev(), i+1 {
		if !now.Before(el.Value.(*limitEntry).until) {
			victim = el
			break
		}
	}
	l.lru.Remove(victim)
	delete(l.entries, victim.Value.(*limitEntry).key)
}

// Succeed forgets the failures and bans of keys. Callers pass the account
// only: resetting an IP on success would let an attacker who owns one
// account clear their IP's budget between guesses at others.
func (l *Limiter) Succeed(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if el, ok := l.entries[k]; ok {
			l.lru.Remove(el)
			delete(l.entries, k)
		}
	}
}

// Len is the number of keys tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}
