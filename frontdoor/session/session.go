// Package session keeps the front door's login sessions: server-side rows
// in the system database, named by a 256-bit random token that lives only
// in the browser's cookie (the database holds its SHA-256), with per-session
// data sealed by the system keyring, and a Hub that closes a session's
// long-lived connections (WebSockets) within a second of the session ending.
package session

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// Event types. Values are stable: detectors and SIEMs match on them.
// Details name the session by id, never by token.
const (
	EventCreate = "session.create"
	EventRotate = "session.rotate"
	EventRevoke = "session.revoke"
	EventExpire = "session.expire"
)

// Reasons recorded by this package. Callers pass their own to Revoke.
const (
	ReasonRotated     = "rotated"
	ReasonIdle        = "idle timeout"
	ReasonAbsolute    = "absolute timeout"
	ReasonUserDisable = "user disabled"
	ReasonLogout      = "logout"
)

// Defaults for Manager's zero fields.
const (
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	DefaultTouchInterval   = time.Minute
	DefaultSweepRetention  = 7 * 24 * time.Hour
)

// sealKind is the keys.Context Kind of the sealed blob.
const sealKind = "session"

// maxField bounds what is stored from the client (user agent) or from
// callers (reasons), so a hostile client cannot bloat rows.
const maxField = 512

// ErrNoSession is returned when a token or id names no live session:
// unknown, expired (idle or absolute) or revoked. Callers should answer as
// if there were no cookie, and clear it.
var ErrNoSession = errors.New("no such session")

// Manager creates, finds and ends sessions. Set DB and Keyring; the rest
// have defaults. A Manager must not be copied after first use.
type Manager struct {
	DB *store.DB // the system database
	// Keyring is the system keyring (tenant "system") over DB. List,
	// Revoke, RevokeUser and Sweep work without it (the CLI); Create,
	// Lookup and Rotate need it.
	Keyring *keys.Keyring

	IdleTimeout     time.Duration    // default DefaultIdleTimeout
	AbsoluteTimeout time.Duration    // default DefaultAbsoluteTimeout
	Clock           func() time.Time // default time.Now; tests control it
	// TouchInterval is how stale last-seen may get before Lookup writes it,
	// so a busy session is not one write per request. Idle expiry is
	// therefore enforced to within TouchInterval. Default
	// DefaultTouchInterval; capped at IdleTimeout/2.
	TouchInterval time.Duration
	// Actor names this process in events, e.g. "frontdoor" (the default)
	// or the CLI's "cli:root(uid 0)".
	Actor  string
	Logger *slog.Logger // default discards
	// CacheTTL is how long Lookup may answer from memory, without a query:
	// a session ended by another process (the CLI) is still honoured here
	// for up to CacheTTL, the same bound within which a Hub closes its
	// WebSockets. Ends in this process take effect at once. Default
	// DefaultCacheTTL; negative turns the cache off.
	CacheTTL time.Duration

	mu    sync.Mutex
	hubs  map[*Hub]struct{} // running Hubs, told of in-process ends at once
	cache map[string]cached // session id → recent Lookup result
}

// DefaultCacheTTL bounds how stale a cached Lookup may be.
const DefaultCacheTTL = time.Second

// maxCached bounds the lookup cache; when full it is emptied.
const maxCached = 1 << 14

type cached struct {
	s  Session
	at time.Time
}

func (m *Manager) cacheTTL() time.Duration {
	if m.CacheTTL == 0 {
		return DefaultCacheTTL
	}
	return m.CacheTTL
}

// cachedLookup returns id's session from the cache when it is fresh and
// still active by the clock.
func (m *Manager) cachedLookup(id string, now time.Time) (*Session, bool) {
	ttl := m.cacheTTL()
	if ttl < 0 {
		return nil, false
	}
	m.mu.Lock()
	c, ok := m.cache[id]
	m.mu.Unlock()
	if !ok || now.Sub(c.at) >= ttl || now.Before(c.at) || !c.s.Active(now) {
		return nil, false
	}
	s := c.s
	return &s, true
}

func (m *Manager) remember(s *Session, now time.Time) {
	if m.cacheTTL() < 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cache == nil || len(m.cache) >= maxCached {
		m.cache = make(map[string]cached)
	}
	m.cache[s.ID] = cached{s: *s, at: now}
}

// forget drops ended sessions from the cache.
func (m *Manager) forget(ids ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		delete(m.cache, id)
	}
}

// Session is one login session. It never holds the token.
type Session struct {
	ID           string        `json:"id"` // hex SHA-256 of the token
	User         string        `json:"user"`
	Tenant       string        `json:"tenant"`
	Role         string        `json:"role"`
	Created      time.Time     `json:"created"`
	LastSeen     time.Time     `json:"last_seen"` // may lag by up to TouchInterval
	Expires      time.Time     `json:"expires"`   // absolute
	IdleTimeout  time.Duration `json:"idle_timeout"`
	IP           string        `json:"ip"`         // at login
	UserAgent    string        `json:"user_agent"` // at login
	Revoked      time.Time     `json:"revoked,omitzero"`
	RevokeReason string        `json:"revoke_reason,omitempty"`
	// AuthMethod is from the sealed data: set by Create, Lookup and
	// Rotate, empty in List results.
	AuthMethod string `json:"auth_method,omitempty"`

	// sealed is the opened blob; nil in List results. A pointer, so that
	// printing a Session with %+v shows an address, not the CSRF secret.
	sealed *sealedData
}

// sealedData is the plaintext of a session's sealed blob.
type sealedData struct {
	CSRF       []byte `json:"csrf"` // 32 random bytes
	AuthMethod string `json:"auth,omitempty"`
}

// End is when s stops being valid if nothing touches it again: the earlier
// of its absolute expiry and idle deadline.
func (s *Session) End() time.Time {
	idle := s.LastSeen.Add(s.IdleTimeout)
	if idle.Before(s.Expires) {
		return idle
	}
	return s.Expires
}

// Active reports whether s is neither revoked nor expired at now.
func (s *Session) Active(now time.Time) bool {
	return s.Revoked.IsZero() && now.Before(s.End())
}

// CSRFToken is the session's anti-CSRF token, to embed in pages and send
// back in a header or form field of every state-changing request. It is
// empty for sessions from List.
func (s *Session) CSRFToken() string {
	if s.sealed == nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(s.sealed.CSRF)
}

// VerifyCSRF reports, in constant time, whether got is the session's CSRF
// token. It is always false for sessions from List.
func (s *Session) VerifyCSRF(got string) bool {
	want := s.CSRFToken()
	if want == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Login describes a successful authentication, for Create.
type Login struct {
	User       string
	Tenant     string
	Role       string
	IP         string // client address as the front door saw it
	UserAgent  string // truncated to 512 bytes
	AuthMethod string // e.g. "password+totp", "oidc"; sealed
}

func (m *Manager) now() time.Time {
	if m.Clock != nil {
		return m.Clock()
	}
	return time.Now()
}

func (m *Manager) idleTimeout() time.Duration {
	if m.IdleTimeout > 0 {
		return m.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (m *Manager) absoluteTimeout() time.Duration {
	if m.AbsoluteTimeout > 0 {
		return m.AbsoluteTimeout
	}
	return DefaultAbsoluteTimeout
}

func (m *Manager) touchInterval(idle time.Duration) time.Duration {
	d := m.TouchInterval
	if d <= 0 {
		d = DefaultTouchInterval
	}
	return min(d, idle/2)
}

func (m *Manager) actor() string {
	if m.Actor != "" {
		return m.Actor
	}
	return "frontdoor"
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// checkDB is enough for what the CLI does (list, revoke, sweep): no
// sealed data is read or written.
func (m *Manager) checkDB() error {
	if m.DB == nil {
		return errors.New("session manager has no database")
	}
	return nil
}

func (m *Manager) check() error {
	switch {
	case m.DB == nil:
		return errors.New("session manager has no database")
	case m.Keyring == nil:
		return errors.New("session manager has no keyring")
	case m.Keyring.Tenant() != "system":
		return fmt.Errorf("session manager needs the system keyring, not %s", m.Keyring.Name())
	}
	return nil
}

func sealContext(id, user string) keys.Context {
	return keys.Context{Tenant: "system", Kind: sealKind, ID: id, User: user}
}

func truncate(s string) string {
	if len(s) <= maxField {
		return s
	}
	s = s[:maxField]
	// Do not leave half a UTF-8 sequence behind.
	for len(s) > 0 && s[len(s)-1]&0xC0 == 0x80 {
		s = s[:len(s)-1]
	}
	if len(s) > 0 && s[len(s)-1] >= 0xC0 {
		s = s[:len(s)-1]
	}
	return s
}

// Create starts a session for a user who has just authenticated and returns
// the token for the cookie (SetCookie). The token is shown only here.
func (m *Manager) Create(ctx context.Context, l Login) (string, *Session, error) {
	if err := m.check(); err != nil {
		return "", nil, err
	}
	if l.User == "" || l.Role == "" || len(l.User) > maxField || len(l.Role) > maxField {
		return "", nil, errors.New("creating session: user and role must be 1 to 512 bytes")
	}
	if err := store.ValidTenantName(l.Tenant); err != nil {
		return "", nil, fmt.Errorf("creating session: %w", err)
	}
	tok, err := newToken()
	if err != nil {
		return "", nil, err
	}
	now := m.now()
	s := &Session{
		ID:          tok.id(),
		User:        l.User,
		Tenant:      l.Tenant,
		Role:        l.Role,
		Created:     now,
		LastSeen:    now,
		Expires:     now.Add(m.absoluteTimeout()),
		IdleTimeout: m.idleTimeout(),
		IP:          truncate(l.IP),
		UserAgent:   truncate(l.UserAgent),
		AuthMethod:  truncate(l.AuthMethod),
	}
	err = m.Keyring.Update(ctx, func(tx *store.Tx) error {
		if err := m.insertTx(ctx, tx, s); err != nil {
			return err
		}
		return events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventCreate, Actor: m.actor(), Subject: s.ID,
			Detail: map[string]any{"user": s.User, "tenant": s.Tenant, "role": s.Role, "ip": s.IP,
				"user_agent": s.UserAgent, "auth_method": s.AuthMethod, "expires": s.Expires.UTC().Format(time.RFC3339)}})
	})
	if err != nil {
		return "", nil, fmt.Errorf("creating session for %q: %w", l.User, err)
	}
	return tok.String(), s, nil
}

// insertTx seals fresh session data (a new CSRF secret) for s and inserts
// its row.
func (m *Manager) insertTx(ctx context.Context, tx *store.Tx, s *Session) error {
	sd := &sealedData{CSRF: make([]byte, 32), AuthMethod: s.AuthMethod}
	if _, err := rand.Read(sd.CSRF); err != nil {
		return fmt.Errorf("generating CSRF secret: %w", err)
	}
	pt, err := json.Marshal(sd)
	if err != nil {
		return err
	}
	ct, kv, err := m.Keyring.SealTx(ctx, tx, sealContext(s.ID, s.User), pt)
	clear(pt)
	if err != nil {
		return fmt.Errorf("sealing session data: %w", err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO sessions (id, user_name, tenant, role, created_at, last_seen_at, expires_at,
		idle_timeout, client_ip, user_agent, sealed, key_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.User, s.Tenant, s.Role, s.Created.UnixMilli(), s.LastSeen.UnixMilli(), s.Expires.UnixMilli(),
		s.IdleTimeout.Milliseconds(), s.IP, s.UserAgent, ct, int64(kv))
	if err != nil {
		return fmt.Errorf("storing session: %w", err)
	}
	s.sealed = sd
	return nil
}

// row is a sessions row as read.
type row struct {
	Session
	sealedCT  []byte
	expiredAt sql.NullInt64
}

const rowColumns = `id, user_name, tenant, role, created_at, last_seen_at, expires_at, idle_timeout,
	client_ip, user_agent, revoked_at, revoke_reason, expired_at, sealed`

func scanRow(sc interface{ Scan(...any) error }) (*row, error) {
	var (
		r                           row
		created, seen, expires, idl int64
		revoked                     sql.NullInt64
		reason                      sql.NullString
	)
	err := sc.Scan(&r.ID, &r.User, &r.Tenant, &r.Role, &created, &seen, &expires, &idl,
		&r.IP, &r.UserAgent, &revoked, &reason, &r.expiredAt, &r.sealedCT)
	if err != nil {
		return nil, err
	}
	r.Created = time.UnixMilli(created).UTC()
	r.LastSeen = time.UnixMilli(seen).UTC()
	r.Expires = time.UnixMilli(expires).UTC()
	r.IdleTimeout = time.Duration(idl) * time.Millisecond
	if revoked.Valid {
		r.Revoked = time.UnixMilli(revoked.Int64).UTC()
	}
	r.RevokeReason = reason.String
	return &r, nil
}

// expiryReason says why r has expired at now, or "" if it has not.
func (r *row) expiryReason(now time.Time) string {
	switch {
	case !now.Before(r.Expires):
		return ReasonAbsolute
	case !now.Before(r.LastSeen.Add(r.IdleTimeout)):
		return ReasonIdle
	}
	return ""
}

// open decrypts r's sealed data into r.Session.
func (m *Manager) open(ctx context.Context, r *row) error {
	pt, err := m.Keyring.Open(ctx, sealContext(r.ID, r.User), r.sealedCT)
	if err != nil {
		return fmt.Errorf("opening sealed data of session %s: %w", r.ID, err)
	}
	defer clear(pt)
	var sd sealedData
	if err := json.Unmarshal(pt, &sd); err != nil || len(sd.CSRF) != 32 {
		return fmt.Errorf("opening sealed data of session %s: malformed", r.ID)
	}
	r.sealed = &sd
	r.AuthMethod = sd.AuthMethod
	return nil
}

// Lookup returns the live session a cookie's token names, or ErrNoSession.
// A malformed token is refused before any query. Last-seen is written at
// most once per TouchInterval.
func (m *Manager) Lookup(ctx context.Context, tok string) (*Session, error) {
	t, ok := parseToken(tok)
	if !ok {
		return nil, ErrNoSession
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	id, now := t.id(), m.now()
	if s, ok := m.cachedLookup(id, now); ok {
		return s, nil
	}
	s, err := m.lookup(ctx, id)
	if err == nil {
		m.remember(s, now)
	}
	return s, err
}

func (m *Manager) lookup(ctx context.Context, id string) (*Session, error) {
	var r *row
	err := m.DB.View(ctx, func(tx *store.Tx) error {
		var err error
		r, err = scanRow(tx.QueryRow(ctx, `SELECT `+rowColumns+` FROM sessions WHERE id = ?`, id))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("looking up session: %w", err)
	}
	// The index lookup was by hash, which leaks nothing useful through
	// timing; compare anyway so a collation quirk can never match a
	// different id.
	if subtle.ConstantTimeCompare([]byte(r.ID), []byte(id)) != 1 {
		return nil, ErrNoSession
	}
	if !r.Revoked.IsZero() {
		return nil, ErrNoSession
	}
	now := m.now()
	if reason := r.expiryReason(now); reason != "" {
		if !r.expiredAt.Valid {
			if err := m.noteExpired(ctx, map[string]string{r.ID: reason}); err != nil {
				m.logger().Warn("recording session expiry", "session", r.ID, "err", err)
			}
		}
		m.notifyHubs([]string{r.ID})
		return nil, ErrNoSession
	}
	if err := m.open(ctx, r); err != nil {
		return nil, m.openFailed(r.ID, err)
	}
	if now.Sub(r.LastSeen) >= m.touchInterval(r.IdleTimeout) {
		var n int64
		err := m.DB.Update(ctx, func(tx *store.Tx) error {
			res, err := tx.Exec(ctx, `UPDATE sessions SET last_seen_at = ? WHERE id = ? AND revoked_at IS NULL AND last_seen_at < ?`,
				now.UnixMilli(), id, now.UnixMilli())
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("touching session %s: %w", id, err)
		}
		if n == 0 {
			// Revoked since we read it (or touched by a later request:
			// re-read to tell which).
			return m.lookupNoTouch(ctx, id)
		}
		r.LastSeen = now
	}
	s := r.Session
	return &s, nil
}

// Touch records activity on session id that did not come through Lookup
// (traffic on a proxied WebSocket), at most once per TouchInterval, so the
// session does not idle out under a user who is only using a socket. An
// ended session stays ended.
func (m *Manager) Touch(ctx context.Context, id string) error {
	if !ValidID(id) {
		return ErrNoSession
	}
	if err := m.checkDB(); err != nil {
		return err
	}
	now := m.now()
	stale := now.Add(-m.touchInterval(m.idleTimeout())).UnixMilli()
	return m.DB.Update(ctx, func(tx *store.Tx) error {
		// Never revive a session that has already idled out or expired.
		_, err := tx.Exec(ctx, `UPDATE sessions SET last_seen_at = ?
			WHERE id = ? AND revoked_at IS NULL AND expired_at IS NULL AND last_seen_at < ?
			AND last_seen_at + idle_timeout > ? AND expires_at > ?`,
			now.UnixMilli(), id, stale, now.UnixMilli(), now.UnixMilli())
		return err
	})
}

// lookupNoTouch re-reads a session after a touch found nothing to update.
func (m *Manager) lookupNoTouch(ctx context.Context, id string) (*Session, error) {
	var r *row
	err := m.DB.View(ctx, func(tx *store.Tx) error {
		var err error
		r, err = scanRow(tx.QueryRow(ctx, `SELECT `+rowColumns+` FROM sessions WHERE id = ?`, id))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNoSession
	}
	if err != nil {
		return nil, fmt.Errorf("looking up session: %w", err)
	}
	if !r.Revoked.IsZero() || r.expiryReason(m.now()) != "" {
		return nil, ErrNoSession
	}
	if err := m.open(ctx, r); err != nil {
		return nil, m.openFailed(r.ID, err)
	}
	s := r.Session
	return &s, nil
}

// openFailed maps a failure to open a session's sealed data to Lookup's
// answer. A retired key version is an operator's choice, not an attack:
// the session is simply gone (sessions are not in the keyring's Tables, so
// Retire does not wait for them). Anything else (keys.ErrOpen: tampering,
// a wrong root key) is an error the caller should treat as a server fault.
func (m *Manager) openFailed(id string, err error) error {
	if errors.Is(err, keys.ErrRetired) {
		m.logger().Info("session sealed by a retired key version: treated as ended", "session", id)
		return ErrNoSession
	}
	return err
}

// Rotate replaces the session oldTok names with a new one (new token, id
// and CSRF secret; same user, tenant, role and absolute expiry) and returns
// the new token. The old token dies and its connections are closed. Call it
// at login and whenever privilege changes.
func (m *Manager) Rotate(ctx context.Context, oldTok string) (string, *Session, error) {
	return m.rotate(ctx, oldTok, "")
}

// RotateRole is Rotate for a privilege change: the new session has role.
func (m *Manager) RotateRole(ctx context.Context, oldTok, role string) (string, *Session, error) {
	if role == "" {
		return "", nil, errors.New("rotating session: empty role")
	}
	return m.rotate(ctx, oldTok, role)
}

func (m *Manager) rotate(ctx context.Context, oldTok, role string) (string, *Session, error) {
	old, ok := parseToken(oldTok)
	if !ok {
		return "", nil, ErrNoSession
	}
	if err := m.check(); err != nil {
		return "", nil, err
	}
	tok, err := newToken()
	if err != nil {
		return "", nil, err
	}
	oldID := old.id()
	var s *Session
	err = m.Keyring.Update(ctx, func(tx *store.Tx) error {
		now := m.now()
		// Claim the old session first: of two concurrent rotations only
		// one can revoke it (PostgreSQL re-checks the WHERE after the row
		// lock), so a token never forks into two live sessions.
		res, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = ?, revoke_reason = ?
			WHERE id = ? AND revoked_at IS NULL AND expires_at > ? AND last_seen_at + idle_timeout > ?`,
			now.UnixMilli(), ReasonRotated, oldID, now.UnixMilli(), now.UnixMilli())
		if err != nil {
			return fmt.Errorf("revoking old session: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNoSession
		}
		r, err := scanRow(tx.QueryRow(ctx, `SELECT `+rowColumns+` FROM sessions WHERE id = ?`, oldID))
		if err != nil {
			return fmt.Errorf("reading old session: %w", err)
		}
		if err := m.open(ctx, r); err != nil {
			return m.openFailed(r.ID, err)
		}
		s = &Session{
			ID:          tok.id(),
			User:        r.User,
			Tenant:      r.Tenant,
			Role:        r.Role,
			Created:     now,
			LastSeen:    now,
			Expires:     r.Expires, // rotation never extends a session's life
			IdleTimeout: r.IdleTimeout,
			IP:          r.IP,
			UserAgent:   r.UserAgent,
			AuthMethod:  r.AuthMethod,
		}
		if role != "" {
			s.Role = role
		}
		if err := m.insertTx(ctx, tx, s); err != nil {
			return err
		}
		return events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventRotate, Actor: m.actor(), Subject: s.ID,
			Detail: map[string]any{"from": oldID, "user": s.User, "tenant": s.Tenant, "role": s.Role, "old_role": r.Role}})
	})
	if errors.Is(err, ErrNoSession) {
		return "", nil, ErrNoSession
	}
	if err != nil {
		return "", nil, fmt.Errorf("rotating session %s: %w", oldID, err)
	}
	m.notifyHubs([]string{oldID})
	return tok.String(), s, nil
}

// Revoke ends the session id (logout, or `clawhold sessions revoke`).
// Revoking an ended session is not an error; an unknown id is ErrNoSession.
func (m *Manager) Revoke(ctx context.Context, id, reason string) error {
	if !ValidID(id) {
		return ErrNoSession
	}
	if err := m.checkDB(); err != nil {
		return err
	}
	if reason == "" {
		reason = "revoked"
	}
	reason = truncate(reason)
	err := m.DB.Update(ctx, func(tx *store.Tx) error {
		var user string
		var revoked sql.NullInt64
		err := tx.QueryRow(ctx, `SELECT user_name, revoked_at FROM sessions WHERE id = ?`, id).Scan(&user, &revoked)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoSession
		}
		if err != nil || revoked.Valid {
			return err
		}
		now := m.now()
		if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL`,
			now.UnixMilli(), reason, id); err != nil {
			return err
		}
		return events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventRevoke, Actor: m.actor(), Subject: id,
			Detail: map[string]any{"user": user, "reason": reason}})
	})
	if errors.Is(err, ErrNoSession) {
		return ErrNoSession
	}
	if err != nil {
		return fmt.Errorf("revoking session %s: %w", id, err)
	}
	m.notifyHubs([]string{id})
	return nil
}

// RevokeUser ends every session of user (the user was disabled or its
// credentials changed) and returns how many were live.
func (m *Manager) RevokeUser(ctx context.Context, user, reason string) (int, error) {
	if err := m.checkDB(); err != nil {
		return 0, err
	}
	if reason == "" {
		reason = ReasonUserDisable
	}
	reason = truncate(reason)
	var ids []string
	err := m.DB.Update(ctx, func(tx *store.Tx) error {
		ids = ids[:0]
		rows, err := tx.Query(ctx, `SELECT id FROM sessions WHERE user_name = ? AND revoked_at IS NULL ORDER BY id`, user)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		now := m.now()
		if _, err := tx.Exec(ctx, `UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE user_name = ? AND revoked_at IS NULL`,
			now.UnixMilli(), reason, user); err != nil {
			return err
		}
		for _, id := range ids {
			if err := events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventRevoke, Actor: m.actor(), Subject: id,
				Detail: map[string]any{"user": user, "reason": reason}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("revoking sessions of %q: %w", user, err)
	}
	m.notifyHubs(ids)
	return len(ids), nil
}

// ListOptions filters List. Zero values list every live session.
type ListOptions struct {
	User  string // only this user's sessions
	Ended bool   // include revoked and expired sessions not yet swept
}

// List returns sessions for `clawhold sessions list`, newest first, without
// their sealed data (no CSRF token, no auth method).
func (m *Manager) List(ctx context.Context, opts ListOptions) ([]Session, error) {
	if err := m.checkDB(); err != nil {
		return nil, err
	}
	q := `SELECT ` + rowColumns + ` FROM sessions`
	var args []any
	if opts.User != "" {
		q += ` WHERE user_name = ?`
		args = append(args, opts.User)
	}
	q += ` ORDER BY created_at DESC, id`
	now := m.now()
	var out []Session
	err := m.DB.View(ctx, func(tx *store.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRow(rows)
			if err != nil {
				return err
			}
			if !opts.Ended && (!r.Revoked.IsZero() || r.expiryReason(now) != "") {
				continue
			}
			out = append(out, r.Session)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing sessions: %w", err)
	}
	return out, nil
}

// noteExpired records, once across all processes, that the sessions in
// reasons (id → ReasonIdle or ReasonAbsolute) have expired: it sets
// expired_at and appends an EventExpire for each not yet noted.
func (m *Manager) noteExpired(ctx context.Context, reasons map[string]string) error {
	if len(reasons) == 0 {
		return nil
	}
	now := m.now()
	return m.DB.Update(ctx, func(tx *store.Tx) error {
		for id, reason := range reasons {
			var user string
			err := tx.QueryRow(ctx, `SELECT user_name FROM sessions WHERE id = ? AND expired_at IS NULL AND revoked_at IS NULL`, id).Scan(&user)
			if errors.Is(err, sql.ErrNoRows) {
				continue // noted already, revoked, or swept
			}
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE sessions SET expired_at = ? WHERE id = ?`, now.UnixMilli(), id); err != nil {
				return err
			}
			if err := events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventExpire, Actor: m.actor(), Subject: id,
				Detail: map[string]any{"user": user, "reason": reason}}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Sweep records expiry events for sessions that expired unnoticed, then
// deletes sessions that ended (expired or revoked) more than retention ago
// (default DefaultSweepRetention), and returns how many it deleted. Run it
// periodically, e.g. hourly.
func (m *Manager) Sweep(ctx context.Context, retention time.Duration) (int, error) {
	if err := m.checkDB(); err != nil {
		return 0, err
	}
	if retention <= 0 {
		retention = DefaultSweepRetention
	}
	now := m.now()
	ms := now.UnixMilli()
	expired := make(map[string]string)
	err := m.DB.View(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, expires_at FROM sessions
			WHERE revoked_at IS NULL AND expired_at IS NULL AND (expires_at <= ? OR last_seen_at + idle_timeout <= ?)`, ms, ms)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var exp int64
			if err := rows.Scan(&id, &exp); err != nil {
				return err
			}
			expired[id] = ReasonIdle
			if exp <= ms {
				expired[id] = ReasonAbsolute
			}
		}
		return rows.Err()
	})
	if err == nil {
		err = m.noteExpired(ctx, expired)
	}
	if err != nil {
		return 0, fmt.Errorf("sweeping sessions: recording expiries: %w", err)
	}
	cutoff := now.Add(-retention).UnixMilli()
	var n int64
	err = m.DB.Update(ctx, func(tx *store.Tx) error {
		res, err := tx.Exec(ctx, `DELETE FROM sessions
			WHERE expires_at < ? OR last_seen_at + idle_timeout < ? OR revoked_at < ?`, cutoff, cutoff, cutoff)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sweeping sessions: %w", err)
	}
	return int(n), nil
}

// ended reports which of ids (sessions with live connections) have ended,
// with the reason, in one read per 500 ids; cost follows live connections,
// not the size of the table. An id with no row (swept, or never a session)
// has ended too. expired holds the expiries not yet recorded, for
// noteExpired once the connections are closed (it writes, and may queue
// behind other writers).
func (m *Manager) ended(ctx context.Context, ids []string) (out, expired map[string]string, err error) {
	const chunk = 500
	now := m.now()
	out = make(map[string]string)
	expired = make(map[string]string)
	err = m.DB.View(ctx, func(tx *store.Tx) error {
		for start := 0; start < len(ids); start += chunk {
			part := ids[start:min(start+chunk, len(ids))]
			args := make([]any, len(part))
			for i, id := range part {
				args[i] = id
			}
			rows, err := tx.Query(ctx, `SELECT id, last_seen_at, idle_timeout, expires_at, revoked_at, revoke_reason, expired_at
				FROM sessions WHERE id IN (?`+strings.Repeat(", ?", len(part)-1)+`)`, args...)
			if err != nil {
				return err
			}
			found := make(map[string]bool, len(part))
			for rows.Next() {
				var (
					r                   row
					seen, idle, expires int64
					revoked             sql.NullInt64
					reason              sql.NullString
				)
				if err := rows.Scan(&r.ID, &seen, &idle, &expires, &revoked, &reason, &r.expiredAt); err != nil {
					rows.Close()
					return err
				}
				found[r.ID] = true
				r.LastSeen = time.UnixMilli(seen)
				r.IdleTimeout = time.Duration(idle) * time.Millisecond
				r.Expires = time.UnixMilli(expires)
				switch {
				case revoked.Valid:
					out[r.ID] = reason.String
				default:
					if why := r.expiryReason(now); why != "" {
						out[r.ID] = why
						if !r.expiredAt.Valid {
							expired[r.ID] = why
						}
					}
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, id := range part {
				if !found[id] {
					out[id] = "no such session"
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("checking live sessions: %w", err)
	}
	return out, expired, nil
}

func (m *Manager) addHub(h *Hub) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hubs == nil {
		m.hubs = make(map[*Hub]struct{})
	}
	m.hubs[h] = struct{}{}
}

func (m *Manager) removeHub(h *Hub) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.hubs, h)
}

// notifyHubs closes, at once, the connections of sessions this process
// ended. Other processes' Hubs learn of it by polling.
func (m *Manager) notifyHubs(ids []string) {
	if len(ids) == 0 {
		return
	}
	m.forget(ids...)
	m.mu.Lock()
	hubs := make([]*Hub, 0, len(m.hubs))
	for h := range m.hubs {
		hubs = append(hubs, h)
	}
	m.mu.Unlock()
	for _, h := range hubs {
		for _, id := range ids {
			h.CloseSession(id)
		}
	}
}
