// Package account keeps the front door's users: who they are (name,
// tenant, role), how they prove it (an argon2id password and a TOTP second
// factor with one-time recovery codes), the setup token that creates the
// first admin, and the limiter that throttles guessing.
//
// Everything lives in the system database. TOTP secrets are sealed with the
// system keyring; passwords, recovery codes and setup tokens are stored only
// as hashes. Every authentication outcome and every change is recorded as an
// event (package events); no event detail holds a password, code or token.
package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// Event types. Values are stable: detectors and SIEMs match on them.
const (
	EventLogin          = "auth.login"           // password accepted; detail: mfa (totp, enrol, none)
	EventLoginFailed    = "auth.login_failed"    // detail: reason
	EventLockout        = "auth.lockout"         // a limiter ban started; detail: scope, until, seconds
	EventMFA            = "auth.mfa"             // TOTP code accepted
	EventMFAFailed      = "auth.mfa_failed"      // TOTP or recovery code refused; detail: reason
	EventMFAEnroll      = "auth.mfa_enroll"      // TOTP confirmed, recovery codes issued
	EventRecoveryUsed   = "auth.recovery_code"   // a recovery code was spent; detail: remaining
	EventSetupToken     = "auth.setup_token"     // a setup token was created; detail: expires
	EventSetup          = "auth.setup"           // the first admin was created with a setup token
	EventSetupFailed    = "auth.setup_failed"    // a setup token was refused; detail: reason
	EventPasswordRehash = "auth.password_rehash" // stored hash upgraded to the current parameters
	EventUserCreate     = "user.create"          // detail: tenant, role
	EventUserDisable    = "user.disable"
	EventUserEnable     = "user.enable"
	EventUserRole       = "user.set_role" // detail: from, to
	EventUserPassword   = "user.set_password"
	EventUserResetMFA   = "user.reset_mfa"
)

const (
	defaultActor      = "frontdoor"
	systemTenant      = "system" // the database and keyring accounts live in
	totpKind          = "totp"   // keys.Context Kind of sealed TOTP secrets
	defaultIssuer     = "clawhold"
	defaultTenant     = "default"
	defaultMaxHashes  = 4 // concurrent argon2 runs: 4 × 19 MiB with DefaultParams
	maxNameLen        = 64
	maxUserAgent      = 256 // bytes of user agent kept in events
	maxListed         = 10000
	dummyPasswordLen  = 32
	timeFormat        = time.RFC3339
	reasonKey         = "reason"
	reasonUnknownUser = "unknown user"
	reasonBadPassword = "wrong password"
	reasonDisabled    = "disabled"
	reasonBadHash     = "stored hash unreadable"
)

// Role is what a user may do.
type Role string

const (
	RoleViewer   Role = "viewer"
	RoleOperator Role = "operator"
	RoleAdmin    Role = "admin"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	return r == RoleViewer || r == RoleOperator || r == RoleAdmin
}

// ParseRole parses a role name.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.Valid() {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want viewer, operator or admin", s)
}

// Errors. Authentication failures are deliberately uninformative.
var (
	// ErrInvalidCredentials is the only answer to a wrong password, an
	// unknown or disabled user, or a wrong, replayed or used code.
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrLocked means too many recent failures from this client or for this
	// account; see LockedError for when to retry.
	ErrLocked      = errors.New("too many failed attempts")
	ErrNotFound    = errors.New("user not found")
	ErrExists      = errors.New("user already exists")
	ErrMFAEnrolled = errors.New("TOTP already enrolled: reset MFA first")
	ErrNoEnrolment = errors.New("no TOTP enrolment pending")
	ErrAdminExists = errors.New("an admin already exists")
	ErrSetupToken  = errors.New("setup token invalid, expired or used")
)

// LockedError is returned (wrapping ErrLocked) while a limiter ban holds.
type LockedError struct{ Until time.Time }

func (e *LockedError) Error() string {
	return fmt.Sprintf("%v: try again after %s", ErrLocked, e.Until.UTC().Format(timeFormat))
}
func (e *LockedError) Unwrap() error { return ErrLocked }

// ValidName reports whether name may name a user: 1 to 64 of lowercase
// letters, digits and . _ - @. Names appear in events, URLs and the TOTP
// label, so the alphabet is kept small.
func ValidName(name string) error {
	ok := len(name) >= 1 && len(name) <= maxNameLen
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@'
	}
	if !ok {
		return fmt.Errorf("invalid user name %q: must be 1 to %d characters of a-z, 0-9, '.', '_', '-', '@'", truncate(name, maxNameLen+8), maxNameLen)
	}
	return nil
}

// User is an account as callers see it: no hash, no secret.
type User struct {
	Name      string    `json:"name"`
	Tenant    string    `json:"tenant"`
	Role      Role      `json:"role"`
	Disabled  bool      `json:"disabled"`
	TOTP      bool      `json:"totp"`           // a confirmed TOTP secret exists
	Recovery  int       `json:"recovery_codes"` // unused recovery codes
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Meta says who acts and from where, for events and the limiter.
type Meta struct {
	Actor     string // "cli:root(uid 0)", "frontdoor"; default "frontdoor"
	IP        string // client address, for the limiter and events
	UserAgent string
	Country   string // where IP is (frontdoor.Locator), for events
}

func (m Meta) actor() string {
	if m.Actor == "" {
		return defaultActor
	}
	return m.Actor
}

// detail returns the event detail for m plus kv pairs.
func (m Meta) detail(kv ...any) map[string]any {
	d := make(map[string]any, 2+len(kv)/2)
	if m.IP != "" {
		d["ip"] = m.IP
	}
	if m.UserAgent != "" {
		d["user_agent"] = truncate(m.UserAgent, maxUserAgent)
	}
	if m.Country != "" {
		d["country"] = m.Country
	}
	for i := 0; i+1 < len(kv); i += 2 {
		d[kv[i].(string)] = kv[i+1]
	}
	return d
}

// Config configures a Service. Zero values take defaults.
type Config struct {
	// Params are the argon2id parameters for new hashes; stored hashes with
	// other parameters are replaced at the next successful login. Default
	// DefaultParams; weaker than OWASP's minimum is refused.
	Params Params
	// MaxHashes caps concurrent argon2 runs (each holds Params.Memory).
	// Default 4.
	MaxHashes int
	// Issuer names the service in authenticator apps. Default "clawhold".
	Issuer string
	// SetupTenant is the tenant of the admin a setup token creates.
	// Default "default".
	SetupTenant string
	// MFAOptional lets users without TOTP log in with a password alone.
	// By default MFA is required (see Service.MFARequired).
	MFAOptional bool
	// Limiter throttles login, MFA and setup failures. Default a
	// NewLimiter with default settings on Now.
	Limiter *Limiter
	Now     func() time.Time // clock; tests control it
}

// Service is the account store. It is safe for concurrent use.
type Service struct {
	db      *store.DB
	kr      *keys.Keyring
	cfg     Config
	hasher  hasher
	dummy   string // PHC hash of a random password, verified for unknown users
	limiter *Limiter
	hashes  atomic.Int64 // argon2 runs; read by tests
}

// New returns a Service over the system database db, sealing TOTP secrets
// with kr, the system keyring. The keyring should list SealedTables in its
// options so rewrap and status cover TOTP secrets.
func New(ctx context.Context, db *store.DB, kr *keys.Keyring, cfg Config) (*Service, error) {
	if cfg.Params == (Params{}) {
		cfg.Params = DefaultParams()
	}
	if !cfg.Params.valid() || !cfg.Params.strongEnough() {
		return nil, fmt.Errorf("account: argon2id parameters m=%d,t=%d,p=%d are below OWASP's minimum (m=19456,t=2,p=1 or equivalent)",
			cfg.Params.Memory, cfg.Params.Time, cfg.Params.Threads)
	}
	return newService(ctx, db, kr, cfg)
}

// newService is New without the parameter floor, so tests can hash cheaply.
func newService(ctx context.Context, db *store.DB, kr *keys.Keyring, cfg Config) (*Service, error) {
	if db == nil || kr == nil {
		return nil, errors.New("account: a database and a keyring are required")
	}
	if db.Name() != systemTenant || kr.Tenant() != systemTenant {
		return nil, fmt.Errorf("account: accounts live in the system database and keyring, not %q/%q", db.Name(), kr.Tenant())
	}
	if !cfg.Params.valid() {
		return nil, errors.New("account: invalid argon2id parameters")
	}
	if cfg.MaxHashes <= 0 {
		cfg.MaxHashes = defaultMaxHashes
	}
	if cfg.Issuer == "" {
		cfg.Issuer = defaultIssuer
	}
	if cfg.SetupTenant == "" {
		cfg.SetupTenant = defaultTenant
	}
	if err := store.ValidTenantName(cfg.SetupTenant); err != nil {
		return nil, fmt.Errorf("account: setup tenant: %w", err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{db: db, kr: kr, cfg: cfg, limiter: cfg.Limiter}
	if s.limiter == nil {
		s.limiter = NewLimiter(LimiterConfig{Now: cfg.Now})
	}
	s.hasher = hasher{params: cfg.Params, sem: make(chan struct{}, cfg.MaxHashes), calls: func() { s.hashes.Add(1) }}
	pw := randomBytes(dummyPasswordLen)
	defer clear(pw)
	var err error
	if s.dummy, err = s.hasher.hash(ctx, pw); err != nil {
		return nil, fmt.Errorf("account: computing dummy hash: %w", err)
	}
	return s, nil
}

// SealedTables lists the tables holding ciphertexts of the system keyring
// that this package owns, for keys.Options.Tables.
func SealedTables() []keys.SealedTable {
	return []keys.SealedTable{{Table: "user_totp", KeyColumn: "user_name", CipherColumn: "secret", VersionColumn: "key_version", Kind: totpKind}}
}

// Limiter returns the limiter the service uses, for the HTTP layer to share
// (e.g. to throttle other endpoints by IP).
func (s *Service) Limiter() *Limiter { return s.limiter }

// MFARequired reports whether u must pass (or, without TOTP, first enrol)
// a second factor before a session is granted.
func (s *Service) MFARequired(u *User) bool { return u.TOTP || !s.cfg.MFAOptional }

func (s *Service) now() time.Time { return s.cfg.Now() }

// NewUser describes an account to create.
type NewUser struct {
	Name     string
	Tenant   string
	Role     Role
	Password []byte // the caller owns (and should clear) it
}

func (s *Service) validateNew(nu NewUser) error {
	if err := ValidName(nu.Name); err != nil {
		return err
	}
	if err := store.ValidTenantName(nu.Tenant); err != nil || nu.Tenant == systemTenant {
		return fmt.Errorf("user %s: invalid tenant %q", nu.Name, nu.Tenant)
	}
	if !nu.Role.Valid() {
		return fmt.Errorf("user %s: unknown role %q: want viewer, operator or admin", nu.Name, nu.Role)
	}
	if err := checkPassword(nu.Name, nu.Password); err != nil {
		return fmt.Errorf("user %s: %w", nu.Name, err)
	}
	return nil
}

// Create adds a user. The tenant must be a valid tenant name; whether it
// exists is the caller's to check (instance.CheckTenant).
func (s *Service) Create(ctx context.Context, m Meta, nu NewUser) (*User, error) {
	if err := s.validateNew(nu); err != nil {
		return nil, err
	}
	// Hash before the transaction: argon2 must not hold the SQLite writer.
	hash, err := s.hasher.hash(ctx, nu.Password)
	if err != nil {
		return nil, fmt.Errorf("creating user %s: %w", nu.Name, err)
	}
	var u *User
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		var err error
		u, err = s.insertTx(ctx, tx, nu, hash)
		if err != nil {
			return err
		}
		return events.AppendTx(ctx, tx, events.Event{Time: s.now(), Type: EventUserCreate, Actor: m.actor(), Subject: nu.Name,
			Detail: m.detail("tenant", nu.Tenant, "role", string(nu.Role))})
	})
	if err != nil {
		return nil, fmt.Errorf("creating user %s: %w", nu.Name, err)
	}
	return u, nil
}

func (s *Service) insertTx(ctx context.Context, tx *store.Tx, nu NewUser, hash string) (*User, error) {
	var n int
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM users WHERE name = ?`, nu.Name).Scan(&n); err != nil {
		return nil, err
	}
	if n > 0 {
		return nil, ErrExists
	}
	now := s.now()
	_, err := tx.Exec(ctx, `INSERT INTO users (name, tenant, role, disabled, password_hash, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?, ?)`,
		nu.Name, nu.Tenant, string(nu.Role), hash, now.UnixMilli(), now.UnixMilli())
	if err != nil {
		return nil, err
	}
	t := time.UnixMilli(now.UnixMilli()).UTC()
	return &User{Name: nu.Name, Tenant: nu.Tenant, Role: nu.Role, CreatedAt: t, UpdatedAt: t}, nil
}

const userColumns = `u.name, u.tenant, u.role, u.disabled, u.created_at, u.updated_at,
	(SELECT COUNT(*) FROM user_totp t WHERE t.user_name = u.name AND t.confirmed_at IS NOT NULL),
	(SELECT COUNT(*) FROM user_recovery_codes r WHERE r.user_name = u.name AND r.used_at IS NULL)`

type scanner interface{ Scan(...any) error }

func scanUser(sc scanner, extra ...any) (*User, error) {
	var u User
	var role string
	var disabled, created, updated, totp int64
	var rec int64
	dest := append([]any{&u.Name, &u.Tenant, &role, &disabled, &created, &updated, &totp, &rec}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	u.Role = Role(role)
	u.Disabled = disabled != 0
	u.TOTP = totp > 0
	u.Recovery = int(rec)
	u.CreatedAt = time.UnixMilli(created).UTC()
	u.UpdatedAt = time.UnixMilli(updated).UTC()
	return &u, nil
}

func getTx(ctx context.Context, tx *store.Tx, name string) (*User, error) {
	u, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users u WHERE u.name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return u, err
}

// Get returns one user, or an error wrapping ErrNotFound.
func (s *Service) Get(ctx context.Context, name string) (*User, error) {
	var u *User
	err := s.db.View(ctx, func(tx *store.Tx) error {
		var err error
		u, err = getTx(ctx, tx, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("getting user %s: %w", truncate(name, maxNameLen+8), err)
	}
	return u, nil
}

// ListOptions filter List; zero fields match everything.
type ListOptions struct {
	Tenant string
}

// List returns users ordered by name (at most 10000).
func (s *Service) List(ctx context.Context, o ListOptions) ([]User, error) {
	var out []User
	err := s.db.View(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+userColumns+` FROM users u WHERE (? = '' OR u.tenant = ?) ORDER BY u.name LIMIT ?`,
			o.Tenant, o.Tenant, maxListed)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			u, err := scanUser(rows)
			if err != nil {
				return err
			}
			out = append(out, *u)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("listing users: %w", err)
	}
	return out, nil
}

// change runs fn on an existing user in a write transaction with the
// event it returns, and bumps updated_at.
func (s *Service) change(ctx context.Context, op, name string, fn func(tx *store.Tx, u *User) (*events.Event, error)) error {
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		u, err := getTx(ctx, tx, name)
		if err != nil {
			return err
		}
		ev, err := fn(tx, u)
		if err != nil || ev == nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET updated_at = ? WHERE name = ?`, s.now().UnixMilli(), name); err != nil {
			return err
		}
		ev.Time = s.now()
		ev.Subject = name
		return events.AppendTx(ctx, tx, *ev)
	})
	if err != nil {
		return fmt.Errorf("%s %s: %w", op, truncate(name, maxNameLen+8), err)
	}
	return nil
}

// Disable stops a user from logging in. Sessions are the caller's to end.
func (s *Service) Disable(ctx context.Context, m Meta, name string) error {
	return s.setDisabled(ctx, m, name, true)
}

// Enable lets a disabled user log in again.
func (s *Service) Enable(ctx context.Context, m Meta, name string) error {
	return s.setDisabled(ctx, m, name, false)
}

func (s *Service) setDisabled(ctx context.Context, m Meta, name string, disabled bool) error {
	op, typ, v := "enabling", EventUserEnable, 0
	if disabled {
		op, typ, v = "disabling", EventUserDisable, 1
	}
	return s.change(ctx, op, name, func(tx *store.Tx, u *User) (*events.Event, error) {
		if u.Disabled == disabled {
			return nil, nil // nothing changes, nothing to record
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET disabled = ? WHERE name = ?`, v, name); err != nil {
			return nil, err
		}
		return &events.Event{Type: typ, Actor: m.actor(), Detail: m.detail()}, nil
	})
}

// SetRole changes a user's role.
func (s *Service) SetRole(ctx context.Context, m Meta, name string, role Role) error {
	if !role.Valid() {
		return fmt.Errorf("setting role of %s: unknown role %q", truncate(name, maxNameLen+8), role)
	}
	return s.change(ctx, "setting role of", name, func(tx *store.Tx, u *User) (*events.Event, error) {
		if u.Role == role {
			return nil, nil
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET role = ? WHERE name = ?`, string(role), name); err != nil {
			return nil, err
		}
		return &events.Event{Type: EventUserRole, Actor: m.actor(), Detail: m.detail("from", string(u.Role), "to", string(role))}, nil
	})
}

// SetPassword replaces a user's password (an administrative reset: the old
// one is not asked for). The caller owns, and should clear, password.
func (s *Service) SetPassword(ctx context.Context, m Meta, name string, password []byte) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if err := checkPassword(name, password); err != nil {
		return fmt.Errorf("setting password of %s: %w", name, err)
	}
	hash, err := s.hasher.hash(ctx, password)
	if err != nil {
		return fmt.Errorf("setting password of %s: %w", name, err)
	}
	return s.change(ctx, "setting password of", name, func(tx *store.Tx, u *User) (*events.Event, error) {
		if _, err := tx.Exec(ctx, `UPDATE users SET password_hash = ? WHERE name = ?`, hash, name); err != nil {
			return nil, err
		}
		return &events.Event{Type: EventUserPassword, Actor: m.actor(), Detail: m.detail()}, nil
	})
}

// ResetMFA deletes a user's TOTP secret (pending or confirmed) and
// recovery codes; the user enrols again at the next login.
func (s *Service) ResetMFA(ctx context.Context, m Meta, name string) error {
	return s.change(ctx, "resetting MFA of", name, func(tx *store.Tx, u *User) (*events.Event, error) {
		if _, err := tx.Exec(ctx, `DELETE FROM user_totp WHERE user_name = ?`, name); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM user_recovery_codes WHERE user_name = ?`, name); err != nil {
			return nil, err
		}
		return &events.Event{Type: EventUserResetMFA, Actor: m.actor(), Detail: m.detail()}, nil
	})
}

// checkLimiter refuses early while any of limiterKeys is banned.
func (s *Service) checkLimiter(limiterKeys ...string) error {
	if until, banned := s.limiter.Check(limiterKeys...); banned {
		return &LockedError{Until: until}
	}
	return nil
}

// failed records a failure (see recordFailure) and returns
// ErrInvalidCredentials, joined with any error recording it.
func (s *Service) failed(ctx context.Context, m Meta, typ, subject, reason string, limiterKeys ...string) error {
	if err := s.recordFailure(ctx, m, typ, subject, reason, limiterKeys...); err != nil {
		return errors.Join(ErrInvalidCredentials, err)
	}
	return ErrInvalidCredentials
}

// recordFailure counts a failure under limiterKeys and writes its event,
// plus one EventLockout per ban that starts.
func (s *Service) recordFailure(ctx context.Context, m Meta, typ, subject, reason string, limiterKeys ...string) error {
	bans := s.limiter.Fail(limiterKeys...)
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		now := s.now()
		if err := events.AppendTx(ctx, tx, events.Event{Time: now, Type: typ, Actor: m.actor(), Subject: subject,
			Detail: m.detail(reasonKey, reason)}); err != nil {
			return err
		}
		for _, b := range bans {
			scope, _, _ := strings.Cut(b.Key, ":")
			if err := events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventLockout, Actor: m.actor(), Subject: subject,
				Detail: m.detail("scope", scope, "until", b.Until.UTC().Format(timeFormat), "seconds", int64(b.Duration/time.Second))}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording %s: %w", typ, err)
	}
	return nil
}

// eventSubject is the subject recorded for a name someone typed: kept if it
// could be a user name, else replaced, so that a password typed into the
// name field is less likely to land in the log.
func eventSubject(name string) string {
	if ValidName(name) != nil {
		return "(invalid name)"
	}
	return name
}

// Authenticate checks a user's password. Every failure — unknown user,
// wrong password, disabled user — returns ErrInvalidCredentials after the
// same argon2 work; a banned client or account gets a *LockedError before
// any. On success the caller must still ask for a second factor when
// MFARequired says so. The caller owns, and should clear, password.
func (s *Service) Authenticate(ctx context.Context, m Meta, name string, password []byte) (*User, error) {
	ipKey, accountKey := IPKey(m.IP), AccountKey(name)
	if err := s.checkLimiter(ipKey, accountKey); err != nil {
		return nil, err
	}
	subject := eventSubject(name)
	var u *User
	var encoded string
	err := s.db.View(ctx, func(tx *store.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+`, u.password_hash FROM users u WHERE u.name = ?`, name), &encoded)
		return err
	})
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("authenticating: %w", err)
	}
	if u == nil {
		// Unknown (or unparseable) name: same work as a real check.
		if _, _, err := s.hasher.verify(ctx, password, s.dummy, s.dummy); err != nil && !errors.Is(err, errBadHash) {
			return nil, fmt.Errorf("authenticating: %w", err)
		}
		return nil, s.failed(ctx, m, EventLoginFailed, subject, reasonUnknownUser, ipKey, accountKey)
	}
	ok, rehash, err := s.hasher.verify(ctx, password, encoded, s.dummy)
	switch {
	case errors.Is(err, errBadHash):
		return nil, s.failed(ctx, m, EventLoginFailed, subject, reasonBadHash, ipKey, accountKey)
	case err != nil:
		return nil, fmt.Errorf("authenticating: %w", err)
	case !ok:
		return nil, s.failed(ctx, m, EventLoginFailed, subject, reasonBadPassword, ipKey, accountKey)
	case u.Disabled:
		return nil, s.failed(ctx, m, EventLoginFailed, subject, reasonDisabled, ipKey, accountKey)
	}

	var newHash string
	if rehash {
		// Upgrade outside the transaction (argon2 is slow); the UPDATE
		// below only applies if the hash is still the one we verified.
		if newHash, err = s.hasher.hash(ctx, password); err != nil {
			return nil, fmt.Errorf("authenticating: %w", err)
		}
	}
	mfa := "none"
	switch {
	case u.TOTP:
		mfa = "totp"
	case !s.cfg.MFAOptional:
		mfa = "enrol"
	}
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		now := s.now()
		if newHash != "" {
			r, err := tx.Exec(ctx, `UPDATE users SET password_hash = ? WHERE name = ? AND password_hash = ?`, newHash, name, encoded)
			if err != nil {
				return err
			}
			if n, _ := r.RowsAffected(); n == 1 {
				if err := events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventPasswordRehash, Actor: m.actor(), Subject: name,
					Detail: m.detail("params", fmt.Sprintf("m=%d,t=%d,p=%d", s.cfg.Params.Memory, s.cfg.Params.Time, s.cfg.Params.Threads))}); err != nil {
					return err
				}
			}
		}
		return events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventLogin, Actor: m.actor(), Subject: name, Detail: m.detail("mfa", mfa)})
	})
	if err != nil {
		return nil, fmt.Errorf("authenticating: %w", err)
	}
	// Only a password with no second factor to follow ends the account's
	// failure count here; otherwise the MFA step does.
	if !s.MFARequired(u) {
		s.limiter.Succeed(accountKey)
	}
	return u, nil
}
