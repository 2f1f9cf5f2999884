package account

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/store"
)

const (
	// SetupTokenTTL is how long a setup token stays redeemable.
	SetupTokenTTL = time.Hour
	// setupTokenPrefix marks tokens so they are recognisable in a paste
	// and to secret scanners.
	setupTokenPrefix = "chsetup_"
	setupTokenBytes  = 32

	reasonBadToken = "invalid, expired or used token"
)

// Setup tokens carry 256 random bits, so, like recovery codes, they are
// stored as plain SHA-256: nothing to slow down for.
func setupTokenHash(token string) []byte {
	sum := sha256.Sum256([]byte("clawhold setup token v1\x00" + token))
	return sum[:]
}

// adminExistsTx reports whether any admin (enabled or not) exists.
func adminExistsTx(ctx context.Context, tx *store.Tx) (bool, error) {
	var n int64
	if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM users WHERE role = ?`, string(RoleAdmin)).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// lockSetupTx serializes setup across processes, so two tokens redeemed at
// once cannot both see "no admin yet". SQLite's single writer already does.
func lockSetupTx(ctx context.Context, tx *store.Tx) error {
	if tx.Dialect() != store.Postgres {
		return nil
	}
	_, err := tx.Exec(ctx, `LOCK TABLE setup_tokens IN EXCLUSIVE MODE`)
	return err
}

// CreateSetupToken returns a token that RedeemSetupToken accepts once,
// within SetupTokenTTL, to create the first admin. Only its hash is stored.
// It is refused once an admin exists.
func (s *Service) CreateSetupToken(ctx context.Context, m Meta) (token string, expires time.Time, err error) {
	raw := randomBytes(setupTokenBytes)
	token = setupTokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	clear(raw)
	now := s.now()
	expires = now.Add(SetupTokenTTL)
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		if err := lockSetupTx(ctx, tx); err != nil {
			return err
		}
		if exists, err := adminExistsTx(ctx, tx); err != nil {
			return err
		} else if exists {
			return ErrAdminExists
		}
		// Expired and used tokens are of no further use.
		if _, err := tx.Exec(ctx, `DELETE FROM setup_tokens WHERE expires_at <= ? OR used_at IS NOT NULL`, now.UnixMilli()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO setup_tokens (token_hash, created_at, expires_at) VALUES (?, ?, ?)`,
			setupTokenHash(token), now.UnixMilli(), expires.UnixMilli()); err != nil {
			return err
		}
		return events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventSetupToken, Actor: m.actor(), Subject: "setup",
			Detail: m.detail("expires", expires.UTC().Format(timeFormat))})
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("creating setup token: %w", err)
	}
	return token, expires, nil
}

// RedeemSetupToken spends token to create the first admin, name, in the
// SetupTenant. It fails with ErrSetupToken for a wrong, expired or used
// token and ErrAdminExists once there is an admin. Failures count against
// the client's IP in the limiter. The caller owns, and should clear,
// password.
func (s *Service) RedeemSetupToken(ctx context.Context, m Meta, token, name string, password []byte) (*User, error) {
	ipKey := IPKey(m.IP)
	if err := s.checkLimiter(ipKey); err != nil {
		return nil, err
	}
	nu := NewUser{Name: name, Tenant: s.cfg.SetupTenant, Role: RoleAdmin, Password: password}
	if err := s.validateNew(nu); err != nil {
		return nil, err
	}
	// Check the token before spending an argon2 run on the password;
	// the transaction below checks again and spends it.
	th := setupTokenHash(strings.TrimSpace(token))
	valid := false
	err := s.db.View(ctx, func(tx *store.Tx) error {
		var n int64
		err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM setup_tokens WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?`,
			th, s.now().UnixMilli()).Scan(&n)
		valid = n == 1
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("redeeming setup token: %w", err)
	}
	if !valid {
		return nil, s.setupFailed(ctx, m, name, reasonBadToken, ErrSetupToken, ipKey)
	}
	hash, err := s.hasher.hash(ctx, password)
	if err != nil {
		return nil, fmt.Errorf("redeeming setup token: %w", err)
	}
	var u *User
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		if err := lockSetupTx(ctx, tx); err != nil {
			return err
		}
		if exists, err := adminExistsTx(ctx, tx); err != nil {
			return err
		} else if exists {
			return ErrAdminExists
		}
		now := s.now()
		res, err := tx.Exec(ctx, `UPDATE setup_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?`,
			now.UnixMilli(), th, now.UnixMilli())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrSetupToken
		}
		if u, err = s.insertTx(ctx, tx, nu, hash); err != nil {
			return err
		}
		return events.AppendTx(ctx, tx, events.Event{Time: now, Type: EventSetup, Actor: m.actor(), Subject: name,
			Detail: m.detail("tenant", nu.Tenant, "role", string(nu.Role))})
	})
	switch {
	case errors.Is(err, ErrAdminExists):
		return nil, s.setupFailed(ctx, m, name, "admin exists", ErrAdminExists, ipKey)
	case errors.Is(err, ErrSetupToken):
		return nil, s.setupFailed(ctx, m, name, reasonBadToken, ErrSetupToken, ipKey)
	case err != nil:
		return nil, fmt.Errorf("redeeming setup token: %w", err)
	}
	return u, nil
}

// setupFailed records a refused setup and returns want, joined with any
// error recording it.
func (s *Service) setupFailed(ctx context.Context, m Meta, name, reason string, want error, limiterKeys ...string) error {
	if err := s.recordFailure(ctx, m, EventSetupFailed, eventSubject(name), reason, limiterKeys...); err != nil {
		return errors.Join(want, err)
	}
	return want
}
