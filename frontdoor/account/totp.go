package account

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"image/png"
	"strings"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// TOTP follows RFC 6238 with the parameters every authenticator app
// supports: HMAC-SHA1, 6 digits, 30-second steps.
const (
	totpPeriod     = 30 // seconds
	totpSkew       = 1  // steps accepted either side of now, for clock drift
	totpDigits     = 6
	totpSecretSize = 20 // bytes: RFC 4226's recommended 160 bits
	qrSize         = 256

	// RecoveryCodes is how many recovery codes a user gets at enrolment.
	RecoveryCodes = 10
	// recoveryCodeBytes of randomness per code: 80 bits, written as 16
	// base32 characters in four groups.
	recoveryCodeBytes = 10
	maxCodeLen        = 64 // bytes of a typed code worth looking at

	reasonWrongCode     = "wrong code"
	reasonReplayed      = "code already used"
	reasonNoTOTP        = "no TOTP enrolled"
	reasonWrongRecovery = "wrong or used recovery code"
)

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return b
}

// Enrollment is what a user needs to add the account to an authenticator.
// It holds the secret: show it to that user once and keep it nowhere.
type Enrollment struct {
	Secret string // base32, for manual entry
	URL    string // otpauth://totp/...
	QRCode []byte // PNG of URL
}

func (s *Service) totpContext(name string) keys.Context {
	return keys.Context{Tenant: systemTenant, Kind: totpKind, ID: name}
}

// EnrollTOTP starts (or restarts) TOTP enrolment: a new secret is stored,
// sealed, and is unusable for login until ConfirmTOTP sees a code from it.
// A user who already has confirmed TOTP must be reset first.
func (s *Service) EnrollTOTP(ctx context.Context, m Meta, name string) (*Enrollment, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	secret := randomBytes(totpSecretSize)
	defer clear(secret)
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: s.cfg.Issuer, AccountName: name, Period: totpPeriod, Digits: otp.DigitsSix,
		Algorithm: otp.AlgorithmSHA1, Secret: secret,
	})
	if err != nil {
		return nil, fmt.Errorf("enrolling TOTP for %s: %w", name, err)
	}
	img, err := key.Image(qrSize, qrSize)
	if err != nil {
		return nil, fmt.Errorf("enrolling TOTP for %s: QR code: %w", name, err)
	}
	var qr bytes.Buffer
	if err := png.Encode(&qr, img); err != nil {
		return nil, fmt.Errorf("enrolling TOTP for %s: QR code: %w", name, err)
	}
	err = s.kr.Update(ctx, func(tx *store.Tx) error {
		if _, err := getTx(ctx, tx, name); err != nil {
			return err
		}
		var confirmed sql.NullInt64
		err := tx.QueryRow(ctx, `SELECT confirmed_at FROM user_totp WHERE user_name = ?`, name).Scan(&confirmed)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if confirmed.Valid {
			return ErrMFAEnrolled
		}
		ct, v, err := s.kr.SealTx(ctx, tx, s.totpContext(name), secret)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO user_totp (user_name, secret, key_version, confirmed_at, last_step, created_at) VALUES (?, ?, ?, NULL, 0, ?)
			ON CONFLICT (user_name) DO UPDATE SET secret = excluded.secret, key_version = excluded.key_version,
			confirmed_at = NULL, last_step = 0, created_at = excluded.created_at`,
			name, ct, int64(v), s.now().UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("enrolling TOTP for %s: %w", name, err)
	}
	return &Enrollment{Secret: key.Secret(), URL: key.URL(), QRCode: qr.Bytes()}, nil
}

// totpRow is a user's stored TOTP state.
type totpRow struct {
	ciphertext []byte
	confirmed  bool
	lastStep   int64
	disabled   bool
}

func (s *Service) loadTOTP(ctx context.Context, name string) (*totpRow, error) {
	var r totpRow
	err := s.db.View(ctx, func(tx *store.Tx) error {
		var confirmed sql.NullInt64
		var disabled int64
		err := tx.QueryRow(ctx, `SELECT t.secret, t.confirmed_at, t.last_step, u.disabled FROM user_totp t JOIN users u ON u.name = t.user_name WHERE t.user_name = ?`, name).
			Scan(&r.ciphertext, &confirmed, &r.lastStep, &disabled)
		r.confirmed, r.disabled = confirmed.Valid, disabled != 0
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// hotp is RFC 4226's HOTP value of counter under key, as totpDigits
// digits. Written here rather than taken from package otp so the secret
// stays in a []byte we can clear.
func hotp(key []byte, counter uint64) []byte {
	mac := hmac.New(sha1.New, key)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	out := make([]byte, totpDigits)
	for i := totpDigits - 1; i >= 0; i-- {
		out[i] = byte('0' + v%10)
		v /= 10
	}
	return out
}

// normalizeTOTP returns code without spaces if it is exactly totpDigits
// ASCII digits, else nil.
func normalizeTOTP(code string) []byte {
	if len(code) > maxCodeLen {
		return nil
	}
	c := []byte(strings.ReplaceAll(code, " ", ""))
	if len(c) != totpDigits {
		return nil
	}
	for _, b := range c {
		if b < '0' || b > '9' {
			return nil
		}
	}
	return c
}

// matchStep finds the time step, within ±totpSkew of now, whose code is
// code. It returns the newest matching step after lastStep, or replayed
// when only steps at or before lastStep match. Every candidate is compared
// in constant time.
func matchStep(secret, code []byte, now, lastStep int64) (step int64, replayed bool) {
	for st := now - totpSkew; st <= now+totpSkew; st++ {
		if st < 0 {
			continue
		}
		if subtle.ConstantTimeCompare(hotp(secret, uint64(st)), code) == 1 {
			if st > lastStep {
				step = st
			} else {
				replayed = true
			}
		}
	}
	if step > 0 {
		replayed = false
	}
	return step, replayed
}

// checkTOTP opens name's secret and matches code against it. It returns the
// accepted step, or a failure reason.
func (s *Service) checkTOTP(ctx context.Context, name string, r *totpRow, code string) (int64, string, error) {
	c := normalizeTOTP(code)
	if c == nil {
		return 0, reasonWrongCode, nil
	}
	secret, err := s.kr.Open(ctx, s.totpContext(name), r.ciphertext)
	if err != nil {
		return 0, "", fmt.Errorf("opening TOTP secret: %w", err)
	}
	defer clear(secret)
	step, replayed := matchStep(secret, c, s.now().Unix()/totpPeriod, r.lastStep)
	switch {
	case replayed:
		return 0, reasonReplayed, nil
	case step == 0:
		return 0, reasonWrongCode, nil
	}
	return step, "", nil
}

// ConfirmTOTP completes enrolment with a code from the new secret and
// returns the user's recovery codes. They are shown once: only their hashes
// are kept.
func (s *Service) ConfirmTOTP(ctx context.Context, m Meta, name, code string) ([]string, error) {
	ipKey, accountKey := IPKey(m.IP), AccountKey(name)
	if err := s.checkLimiter(ipKey, accountKey); err != nil {
		return nil, err
	}
	subject := eventSubject(name)
	r, err := s.loadTOTP(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("confirming TOTP for %s: %w", subject, err)
	}
	if r == nil || r.confirmed || r.disabled {
		return nil, ErrNoEnrolment
	}
	step, reason, err := s.checkTOTP(ctx, name, r, code)
	if err != nil {
		return nil, fmt.Errorf("confirming TOTP for %s: %w", name, err)
	}
	if reason != "" {
		return nil, s.failed(ctx, m, EventMFAFailed, name, reason, ipKey, accountKey)
	}
	codes := newRecoveryCodes()
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		// Only the secret that was checked: a concurrent re-enrolment wins.
		res, err := tx.Exec(ctx, `UPDATE user_totp SET confirmed_at = ?, last_step = ? WHERE user_name = ? AND confirmed_at IS NULL AND secret = ?`,
			s.now().UnixMilli(), step, name, r.ciphertext)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return ErrNoEnrolment
		}
		if err := s.replaceRecoveryCodesTx(ctx, tx, name, codes); err != nil {
			return err
		}
		return events.AppendTx(ctx, tx, events.Event{Time: s.now(), Type: EventMFAEnroll, Actor: m.actor(), Subject: name,
			Detail: m.detail("recovery_codes", len(codes))})
	})
	if err != nil {
		return nil, fmt.Errorf("confirming TOTP for %s: %w", name, err)
	}
	s.limiter.Succeed(accountKey)
	return codes, nil
}

// VerifyTOTP checks a code from name's confirmed TOTP secret. A code is
// accepted once: its time step must be newer than the last one accepted,
// so a code seen over a shoulder or in a log cannot be replayed, even
// within its 90-second window.
func (s *Service) VerifyTOTP(ctx context.Context, m Meta, name, code string) error {
	ipKey, accountKey := IPKey(m.IP), AccountKey(name)
	if err := s.checkLimiter(ipKey, accountKey); err != nil {
		return err
	}
	subject := eventSubject(name)
	r, err := s.loadTOTP(ctx, name)
	if err != nil {
		return fmt.Errorf("verifying TOTP for %s: %w", subject, err)
	}
	if r == nil || !r.confirmed {
		return s.failed(ctx, m, EventMFAFailed, subject, reasonNoTOTP, ipKey, accountKey)
	}
	if r.disabled {
		return s.failed(ctx, m, EventMFAFailed, subject, reasonDisabled, ipKey, accountKey)
	}
	step, reason, err := s.checkTOTP(ctx, name, r, code)
	if err != nil {
		return fmt.Errorf("verifying TOTP for %s: %w", name, err)
	}
	if reason != "" {
		return s.failed(ctx, m, EventMFAFailed, name, reason, ipKey, accountKey)
	}
	replayed := false
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		// The conditional update is the replay check that counts: two
		// requests with one code race here, and only one moves last_step.
		res, err := tx.Exec(ctx, `UPDATE user_totp SET last_step = ? WHERE user_name = ? AND confirmed_at IS NOT NULL AND last_step < ?`,
			step, name, step)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			replayed = true
			return nil
		}
		return events.AppendTx(ctx, tx, events.Event{Time: s.now(), Type: EventMFA, Actor: m.actor(), Subject: name, Detail: m.detail()})
	})
	if err != nil {
		return fmt.Errorf("verifying TOTP for %s: %w", name, err)
	}
	if replayed {
		return s.failed(ctx, m, EventMFAFailed, name, reasonReplayed, ipKey, accountKey)
	}
	s.limiter.Succeed(accountKey)
	return nil
}

// Recovery codes carry 80 random bits, so they are stored as SHA-256
// (bound to the user name) rather than argon2id: a slow hash protects
// guessable secrets, and 2^80 guesses are out of reach either way; a fast,
// deterministic hash also lets one indexed, atomic UPDATE both find and
// spend a code, instead of ten argon2 runs per attempt.

func newRecoveryCodes() []string {
	codes := make([]string, RecoveryCodes)
	for i := range codes {
		b := randomBytes(recoveryCodeBytes)
		c := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b) // 16 characters
		clear(b)
		codes[i] = c[0:4] + "-" + c[4:8] + "-" + c[8:12] + "-" + c[12:16]
	}
	return codes
}

// normalizeRecovery accepts a code as printed, in any case, with or
// without dashes and spaces.
func normalizeRecovery(code string) string {
	if len(code) > maxCodeLen {
		return ""
	}
	return strings.NewReplacer("-", "", " ", "").Replace(strings.ToUpper(code))
}

func recoveryHash(name, normalized string) []byte {
	h := sha256.New()
	h.Write([]byte("clawhold recovery code v1\x00"))
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(normalized))
	return h.Sum(nil)
}

func (s *Service) replaceRecoveryCodesTx(ctx context.Context, tx *store.Tx, name string, codes []string) error {
	if _, err := tx.Exec(ctx, `DELETE FROM user_recovery_codes WHERE user_name = ?`, name); err != nil {
		return err
	}
	now := s.now().UnixMilli()
	for _, c := range codes {
		if _, err := tx.Exec(ctx, `INSERT INTO user_recovery_codes (user_name, code_hash, created_at) VALUES (?, ?, ?)`,
			name, recoveryHash(name, normalizeRecovery(c)), now); err != nil {
			return err
		}
	}
	return nil
}

// UseRecoveryCode spends one of name's recovery codes in place of a TOTP
// code. Each code works once.
func (s *Service) UseRecoveryCode(ctx context.Context, m Meta, name, code string) error {
	ipKey, accountKey := IPKey(m.IP), AccountKey(name)
	if err := s.checkLimiter(ipKey, accountKey); err != nil {
		return err
	}
	subject := eventSubject(name)
	norm := normalizeRecovery(code)
	if len(norm) != 16 || ValidName(name) != nil {
		return s.failed(ctx, m, EventMFAFailed, subject, reasonWrongRecovery, ipKey, accountKey)
	}
	reason := ""
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		var disabled int64
		err := tx.QueryRow(ctx, `SELECT disabled FROM users WHERE name = ?`, name).Scan(&disabled)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			reason = reasonWrongRecovery
			return nil
		case err != nil:
			return err
		case disabled != 0:
			reason = reasonDisabled
			return nil
		}
		res, err := tx.Exec(ctx, `UPDATE user_recovery_codes SET used_at = ? WHERE user_name = ? AND code_hash = ? AND used_at IS NULL`,
			s.now().UnixMilli(), name, recoveryHash(name, norm))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			reason = reasonWrongRecovery
			return nil
		}
		var left int64
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM user_recovery_codes WHERE user_name = ? AND used_at IS NULL`, name).Scan(&left); err != nil {
			return err
		}
		return events.AppendTx(ctx, tx, events.Event{Time: s.now(), Type: EventRecoveryUsed, Actor: m.actor(), Subject: name,
			Detail: m.detail("remaining", left)})
	})
	if err != nil {
		return fmt.Errorf("using recovery code of %s: %w", name, err)
	}
	if reason != "" {
		return s.failed(ctx, m, EventMFAFailed, subject, reason, ipKey, accountKey)
	}
	s.limiter.Succeed(accountKey)
	return nil
}
