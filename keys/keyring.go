package keys

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/clawhold/clawhold/store"
)

// MaxAgeLimit is the hard ceiling on a key version's encryption lifetime.
// Configuration may shorten it, never lengthen it.
const MaxAgeLimit = 90 * 24 * time.Hour

// Policy is the rotation schedule of a keyring.
type Policy struct {
	Algorithm   Algorithm     // for new versions
	MaxAge      time.Duration // a version older than this never encrypts again
	RotateAfter time.Duration // rotate automatically from this age on
}

// DefaultPolicy is 90 days hard, rotation at 80, algorithm by CPU.
func DefaultPolicy() Policy {
	return Policy{Algorithm: DefaultAlgorithm(), MaxAge: MaxAgeLimit, RotateAfter: 80 * 24 * time.Hour}
}

func (p Policy) validate() error {
	switch {
	case !p.Algorithm.valid():
		return fmt.Errorf("keys: unknown algorithm %d", byte(p.Algorithm))
	case p.MaxAge <= 0 || p.MaxAge > MaxAgeLimit:
		return fmt.Errorf("keys: max age %s is outside (0, 90 days]", p.MaxAge)
	case p.RotateAfter <= 0 || p.RotateAfter >= p.MaxAge:
		return fmt.Errorf("keys: rotate-after %s must be positive and less than max age %s", p.RotateAfter, p.MaxAge)
	}
	return nil
}

// SealedTable names a table whose rows hold ciphertexts of one keyring, so
// that rewrap can move them to the newest version and status can count how
// much data each version still protects.
type SealedTable struct {
	Table         string // e.g. "secrets"
	KeyColumn     string // the record id column; also the Context ID
	CipherColumn  string
	VersionColumn string
	Kind          string // the Context Kind of its records
}

// Options configure a Keyring. Zero values take defaults.
type Options struct {
	Policy Policy
	Tables []SealedTable
	Now    func() time.Time // clock; tests control it
	Rand   io.Reader        // randomness; crypto/rand by default
	Logger *slog.Logger
}

// Keyring is one tenant's (or the system's) versioned key, persisted in that
// tenant's database with each version's material wrapped by the root key.
// It is safe for concurrent use, and for use by several processes sharing a
// database: every encryption re-checks, inside the caller's transaction,
// that its version is still the active one.
type Keyring struct {
	name   string // "system" or "tenant:<name>"; written into ciphertexts
	tenant string
	db     *store.DB
	root   Root
	opts   Options

	mu       sync.RWMutex
	versions map[uint32]*version
	primary  uint32

	cacheMu sync.Mutex
	cache   map[dataKeyID]cipher.AEAD
}

// version is immutable once loaded: a reload builds new versions and only
// the unwrapped material is carried over, so readers never see a version
// change under them.
type version struct {
	n           uint32
	alg         Algorithm
	created     time.Time
	deactivated time.Time // zero while active
	destroyed   time.Time
	rootID      string
	wrapped     []byte
	km          *keyMaterial
}

// keyMaterial is a version's unwrapped key, fetched from the root once and
// shared by every in-memory copy of that version.
type keyMaterial struct {
	mu       sync.Mutex
	loaded   bool
	material []byte
	err      error
}

type dataKeyID struct {
	version       uint32
	user, session string
}

const maxCachedKeys = 4096

// KeyringName is the key id written into ciphertexts of a tenant's keyring.
func KeyringName(tenant string) string {
	if tenant == "system" {
		return "system"
	}
	return "tenant:" + tenant
}

// OpenKeyring loads the keyring of tenant from db, creating version 1 if the
// keyring is new.
func OpenKeyring(ctx context.Context, db *store.DB, root Root, tenant string, opts Options) (*Keyring, error) {
	if opts.Policy == (Policy{}) {
		opts.Policy = DefaultPolicy()
	}
	if err := opts.Policy.validate(); err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Rand == nil {
		opts.Rand = rand.Reader
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	k := &Keyring{
		name:   KeyringName(tenant),
		tenant: tenant,
		db:     db,
		root:   root,
		opts:   opts,
		cache:  make(map[dataKeyID]cipher.AEAD),
	}
	if len(k.name) > maxKeyID {
		return nil, fmt.Errorf("keyring name %q is longer than %d bytes", k.name, maxKeyID)
	}
	if err := k.db.View(ctx, func(tx *store.Tx) error { return k.loadTx(ctx, tx) }); err != nil {
		return nil, fmt.Errorf("loading keyring %s: %w", k.name, err)
	}
	if k.primary == 0 {
		// onlyIfDue: a process that raced us to create the keyring wins.
		if _, err := k.rotate(ctx, true); err != nil {
			return nil, fmt.Errorf("creating keyring %s: %w", k.name, err)
		}
	}
	return k, nil
}

// Name is the keyring's id as written into ciphertexts.
func (k *Keyring) Name() string { return k.name }

// Tenant is the tenant whose data this keyring protects.
func (k *Keyring) Tenant() string { return k.tenant }

// Policy is the keyring's rotation schedule.
func (k *Keyring) Policy() Policy { return k.opts.Policy }

// loadTx replaces the in-memory view with the database's. Versions already
// unwrapped keep their material.
func (k *Keyring) loadTx(ctx context.Context, tx *store.Tx) error {
	rows, err := tx.Query(ctx, `SELECT version, algorithm, wrapped, root_key_id, created_at, deactivated_at, destroyed_at
		FROM key_versions WHERE keyring = ? ORDER BY version`, k.name)
	if err != nil {
		return err
	}
	defer rows.Close()
	loaded := make(map[uint32]*version)
	var primary uint32
	for rows.Next() {
		var (
			n                      int64
			algName, rootID        string
			wrapped                []byte
			created                int64
			deactivated, destroyed sql.NullInt64
		)
		if err := rows.Scan(&n, &algName, &wrapped, &rootID, &created, &deactivated, &destroyed); err != nil {
			return err
		}
		alg, err := ParseAlgorithm(algName)
		if err != nil || algName == "auto" || algName == "" {
			return fmt.Errorf("version %d: bad algorithm %q", n, algName)
		}
		v := &version{n: uint32(n), alg: alg, created: time.UnixMilli(created), rootID: rootID, wrapped: wrapped}
		if deactivated.Valid {
			v.deactivated = time.UnixMilli(deactivated.Int64)
		}
		if destroyed.Valid {
			v.destroyed = time.UnixMilli(destroyed.Int64)
		}
		loaded[v.n] = v
		if v.destroyed.IsZero() && v.deactivated.IsZero() && v.n > primary {
			primary = v.n
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}

	k.mu.Lock()
	defer k.mu.Unlock()
	for n, v := range loaded {
		old, ok := k.versions[n]
		switch {
		case !ok:
			v.km = &keyMaterial{}
		case v.destroyed.IsZero() && bytesEqual(old.wrapped, v.wrapped):
			v.km = old.km // keep the unwrapped material
		default:
			old.km.wipe()
			v.km = &keyMaterial{}
		}
	}
	k.versions = loaded
	k.primary = primary
	return nil
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// wipe zeroes unwrapped material and forbids unwrapping it again. Called
// once the version is destroyed.
func (m *keyMaterial) wipe() {
	m.mu.Lock()
	defer m.mu.Unlock()
	zero(m.material)
	m.material, m.loaded, m.err = nil, true, errors.New("key version was destroyed")
}

func wrapAAD(keyring string, n uint32, alg Algorithm) []byte {
	ad := appendLP([]byte("clawhold/keyring/v1"), keyring)
	ad = binary.BigEndian.AppendUint32(ad, n)
	return append(ad, byte(alg))
}

// withKey calls fn with the version's unwrapped material, asking the root
// the first time. fn must not keep the slice.
func (k *Keyring) withKey(ctx context.Context, v *version, fn func(material []byte) error) error {
	m := v.km
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.loaded {
		m.loaded = true
		if v.wrapped == nil {
			m.err = fmt.Errorf("key version %d of %s was destroyed", v.n, k.name)
		} else if mat, err := k.root.Unwrap(ctx, v.wrapped, wrapAAD(k.name, v.n, v.alg)); err != nil {
			m.err = fmt.Errorf("unwrapping key version %d of %s (sealed by root %s, configured root %s): %w",
				v.n, k.name, v.rootID, k.root.ID(), err)
		} else if len(mat) != KeySize {
			zero(mat)
			m.err = fmt.Errorf("unwrapping key version %d of %s: material has wrong size", v.n, k.name)
		} else {
			m.material = mat
		}
	}
	if m.err != nil {
		return m.err
	}
	return fn(m.material)
}

// dataAEAD returns the AEAD for the data key of (version, user, session).
func (k *Keyring) dataAEAD(ctx context.Context, v *version, user, session string) (cipher.AEAD, error) {
	id := dataKeyID{v.n, user, session}
	k.cacheMu.Lock()
	a, ok := k.cache[id]
	k.cacheMu.Unlock()
	if ok {
		return a, nil
	}
	err := k.withKey(ctx, v, func(material []byte) error {
		dk, err := deriveDataKey(material, k.name, v.n, v.alg, k.tenant, user, session)
		if err != nil {
			return fmt.Errorf("deriving data key: %w", err)
		}
		a, err = newAEAD(v.alg, dk)
		zero(dk)
		return err
	})
	if err != nil {
		return nil, err
	}
	k.cacheMu.Lock()
	if len(k.cache) >= maxCachedKeys {
		clear(k.cache)
	}
	k.cache[id] = a
	k.cacheMu.Unlock()
	return a, nil
}

func (k *Keyring) dropCache(n uint32) {
	k.cacheMu.Lock()
	defer k.cacheMu.Unlock()
	for id := range k.cache {
		if id.version == n {
			delete(k.cache, id)
		}
	}
}

func (k *Keyring) checkContext(c Context) error {
	if err := c.validate(); err != nil {
		return err
	}
	if c.Tenant != k.tenant {
		return fmt.Errorf("context tenant %q does not match keyring %s", c.Tenant, k.name)
	}
	return nil
}

// ErrExpired is returned when the active version is past its maximum age
// and the caller did not let the keyring rotate first (see Update).
var ErrExpired = errors.New("active key version is past its maximum age: rotation required")

// Update runs fn in a write transaction on the keyring's database, after
// rotating if the active version is due. Use it for every write that seals.
func (k *Keyring) Update(ctx context.Context, fn func(*store.Tx) error) error {
	if err := k.RotateIfDue(ctx); err != nil {
		return err
	}
	return k.db.Update(ctx, fn)
}

// SealTx encrypts plaintext for c with the active version, inside tx (the
// transaction that will store the result). It returns the ciphertext and
// the version used, which callers store beside it for rewrap and counts.
func (k *Keyring) SealTx(ctx context.Context, tx *store.Tx, c Context, plaintext []byte) ([]byte, uint32, error) {
	if err := k.checkContext(c); err != nil {
		return nil, 0, err
	}
	v, err := k.activeTx(ctx, tx)
	if err != nil {
		return nil, 0, err
	}
	a, err := k.dataAEAD(ctx, v, c.User, c.Session)
	if err != nil {
		return nil, 0, err
	}
	out, err := seal(nil, a, k.opts.Rand, Header{Format: formatV1, Algorithm: v.alg, KeyID: k.name, Version: v.n}, c, plaintext)
	return out, v.n, err
}

// seal appends h (with a fresh random nonce) and the sealed plaintext to dst.
// Random nonces are safe here because every data key is derived per
// (version, user, session) and versions rotate within 90 days, keeping each
// AES-GCM key far below the 2^32-message bound of NIST SP 800-38D.
func seal(dst []byte, a cipher.AEAD, random io.Reader, h Header, c Context, plaintext []byte) ([]byte, error) {
	h.Nonce = make([]byte, h.Algorithm.NonceSize())
	if _, err := io.ReadFull(random, h.Nonce); err != nil {
		return nil, fmt.Errorf("reading nonce: %w", err)
	}
	if dst == nil {
		dst = make([]byte, 0, h.size()+len(plaintext)+tagSize)
	}
	start := len(dst)
	dst = h.appendTo(dst)
	return a.Seal(dst, h.Nonce, plaintext, associatedData(dst[start:], c)), nil
}

// open authenticates and decrypts body under the header bytes hdr,
// appending the plaintext to dst.
func open(dst []byte, a cipher.AEAD, h Header, hdr, body []byte, c Context) ([]byte, error) {
	pt, err := a.Open(dst, h.Nonce, body, associatedData(hdr, c))
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// activeTx returns the active version after confirming, in tx, that the
// database agrees it is still active. A stale view (another process rotated
// or retired) is reloaded from tx. On PostgreSQL the row is locked FOR SHARE:
// rotation must update it (deactivate) and retirement locks it FOR UPDATE, so
// neither can complete until this transaction has stored what it sealed.
func (k *Keyring) activeTx(ctx context.Context, tx *store.Tx) (*version, error) {
	const attempts = 8 // each retry follows a concurrent rotation
	for attempt := 0; attempt < attempts; attempt++ {
		k.mu.RLock()
		v := k.versions[k.primary]
		k.mu.RUnlock()
		if v != nil {
			if k.opts.Now().Sub(v.created) >= k.opts.Policy.MaxAge {
				return nil, fmt.Errorf("%s version %d: %w", k.name, v.n, ErrExpired)
			}
			var deactivated, destroyed sql.NullInt64
			q := `SELECT deactivated_at, destroyed_at FROM key_versions WHERE keyring = ? AND version = ?`
			if tx.Dialect() == store.Postgres {
				q += ` FOR SHARE`
			}
			err := tx.QueryRow(ctx, q, k.name, int64(v.n)).Scan(&deactivated, &destroyed)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("checking key version: %w", err)
			}
			if err == nil && !deactivated.Valid && !destroyed.Valid {
				return v, nil
			}
		}
		if err := k.loadTx(ctx, tx); err != nil {
			return nil, fmt.Errorf("reloading keyring %s: %w", k.name, err)
		}
	}
	return nil, fmt.Errorf("keyring %s has no active version", k.name)
}

// ErrRetired is returned by Open for a ciphertext whose key version was
// retired. Retire refuses while any stored record uses a version, so a
// reader that gets it holds a copy read before a rewrap moved the record:
// reading the record again gives the current ciphertext.
var ErrRetired = errors.New("key version retired")

// Open decrypts a ciphertext sealed for c by this keyring, with whichever
// version sealed it, unless that version was destroyed.
func (k *Keyring) Open(ctx context.Context, c Context, ciphertext []byte) ([]byte, error) {
	if err := k.checkContext(c); err != nil {
		return nil, err
	}
	h, body, err := ParseHeader(ciphertext)
	if err != nil {
		return nil, err
	}
	if h.KeyID != k.name {
		return nil, fmt.Errorf("%w (sealed by keyring %q, not %s)", ErrOpen, h.KeyID, k.name)
	}
	v, err := k.version(ctx, h.Version)
	if err != nil {
		return nil, err
	}
	if v.alg != h.Algorithm {
		return nil, ErrOpen
	}
	a, err := k.dataAEAD(ctx, v, c.User, c.Session)
	if err != nil {
		return nil, err
	}
	return open(nil, a, h, ciphertext[:len(ciphertext)-len(body)], body, c)
}

// version finds n, reloading from the database once if it is unknown (a
// version another process created).
func (k *Keyring) version(ctx context.Context, n uint32) (*version, error) {
	k.mu.RLock()
	v := k.versions[n]
	k.mu.RUnlock()
	if v == nil {
		if err := k.db.View(ctx, func(tx *store.Tx) error { return k.loadTx(ctx, tx) }); err != nil {
			return nil, fmt.Errorf("reloading keyring %s: %w", k.name, err)
		}
		k.mu.RLock()
		v = k.versions[n]
		k.mu.RUnlock()
	}
	if v == nil {
		return nil, fmt.Errorf("%w: %s has no key version %d", ErrOpen, k.name, n)
	}
	if !v.destroyed.IsZero() {
		return nil, fmt.Errorf("%w: key version %d of %s was retired on %s: its data cannot be opened",
			ErrRetired, n, k.name, v.destroyed.UTC().Format(time.RFC3339))
	}
	return v, nil
}

// Rotate creates a new active version; the previous one becomes decrypt-only.
func (k *Keyring) Rotate(ctx context.Context) (uint32, error) {
	return k.rotate(ctx, false)
}

// RotateIfDue rotates when the active version has reached RotateAfter. It
// re-checks inside the transaction so processes sharing the database rotate
// once, not once each.
func (k *Keyring) RotateIfDue(ctx context.Context) error {
	k.mu.RLock()
	v := k.versions[k.primary]
	k.mu.RUnlock()
	if v != nil && k.opts.Now().Sub(v.created) < k.opts.Policy.RotateAfter {
		return nil
	}
	_, err := k.rotate(ctx, true)
	return err
}

func (k *Keyring) rotate(ctx context.Context, onlyIfDue bool) (uint32, error) {
	var created uint32
	err := k.db.Update(ctx, func(tx *store.Tx) error {
		if tx.Dialect() == store.Postgres {
			// Serialize rotations of this keyring across processes; SQLite
			// already has a single writer.
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext(?))`, "clawhold/keyring/"+k.name); err != nil {
				return err
			}
		}
		var newest sql.NullInt64
		var newestCreated sql.NullInt64
		err := tx.QueryRow(ctx, `SELECT version, created_at FROM key_versions
			WHERE keyring = ? AND deactivated_at IS NULL AND destroyed_at IS NULL
			ORDER BY version DESC LIMIT 1`, k.name).Scan(&newest, &newestCreated)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		now := k.opts.Now()
		if onlyIfDue && newest.Valid && now.Sub(time.UnixMilli(newestCreated.Int64)) < k.opts.Policy.RotateAfter {
			return k.loadTx(ctx, tx) // someone else rotated; adopt theirs
		}
		var maxVersion sql.NullInt64
		if err := tx.QueryRow(ctx, `SELECT MAX(version) FROM key_versions WHERE keyring = ?`, k.name).Scan(&maxVersion); err != nil {
			return err
		}
		n := uint32(maxVersion.Int64) + 1
		alg := k.opts.Policy.Algorithm
		material := make([]byte, KeySize)
		defer zero(material)
		if _, err := io.ReadFull(k.opts.Rand, material); err != nil {
			return fmt.Errorf("generating key: %w", err)
		}
		wrapped, err := k.root.Wrap(ctx, material, wrapAAD(k.name, n, alg))
		if err != nil {
			return fmt.Errorf("wrapping new key with root %s: %w", k.root.ID(), err)
		}
		if _, err := tx.Exec(ctx, `UPDATE key_versions SET deactivated_at = ?
			WHERE keyring = ? AND deactivated_at IS NULL`, now.UnixMilli(), k.name); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO key_versions (keyring, version, algorithm, wrapped, root_key_id, created_at)
			VALUES (?, ?, ?, ?, ?, ?)`, k.name, int64(n), alg.String(), wrapped, k.root.ID(), now.UnixMilli()); err != nil {
			return err
		}
		created = n
		return k.loadTx(ctx, tx)
	})
	if err != nil {
		// The in-memory view may hold the rolled-back version: reload.
		_ = k.db.View(ctx, func(tx *store.Tx) error { return k.loadTx(ctx, tx) })
		return 0, fmt.Errorf("rotating %s: %w", k.name, err)
	}
	if created != 0 {
		k.opts.Logger.Info("key rotated", "keyring", k.name, "version", created)
	}
	return created, nil
}
