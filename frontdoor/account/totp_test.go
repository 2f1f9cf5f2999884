package account

import (
	"bytes"
	"encoding/base32"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/clawhold/clawhold/store"
)

// TestHOTPMatchesLibrary: our RFC 4226 code agrees with package otp (and
// RFC 6238's published SHA-1 vectors).
func TestHOTPMatchesLibrary(t *testing.T) {
	secret := []byte("12345678901234567890") // RFC 6238 appendix B key
	b32 := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	rfc := map[int64]string{59: "287082", 1111111109: "081804", 1234567890: "005924", 2000000000: "279037"}
	for unix, want := range rfc {
		if got := string(hotp(secret, uint64(unix/totpPeriod))); got != want {
			t.Errorf("hotp at %d = %s, want %s (RFC 6238)", unix, got, want)
		}
	}
	for i := range 50 {
		at := time.Unix(int64(i)*7919*totpPeriod, 0)
		want, err := totp.GenerateCodeCustom(b32, at, totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			t.Fatal(err)
		}
		if got := string(hotp(secret, uint64(at.Unix()/totpPeriod))); got != want {
			t.Errorf("hotp at %v = %s, package otp says %s", at, got, want)
		}
	}
}

func TestEnrollTOTP(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{})
		ctx := t.Context()
		f.mustCreate(t, "alice", RoleViewer)
		m := webMeta("192.0.2.20")

		if _, err := f.svc.EnrollTOTP(ctx, adminMeta, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("EnrollTOTP(nobody) = %v, want ErrNotFound", err)
		}
		if _, err := f.svc.ConfirmTOTP(ctx, m, "alice", "123456"); !errors.Is(err, ErrNoEnrolment) {
			t.Errorf("ConfirmTOTP before enrolment = %v, want ErrNoEnrolment", err)
		}
		en, err := f.svc.EnrollTOTP(ctx, adminMeta, "alice")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(en.URL, "otpauth://totp/clawhold:alice?") || !strings.Contains(en.URL, "secret="+en.Secret) {
			t.Errorf("URL = %q", en.URL)
		}
		if !bytes.HasPrefix(en.QRCode, []byte("\x89PNG\r\n\x1a\n")) {
			t.Error("QR code is not a PNG")
		}
		// The secret is sealed at rest: the stored bytes do not hold it.
		r, err := f.svc.loadTOTP(ctx, "alice")
		if err != nil || r == nil || r.confirmed {
			t.Fatalf("loadTOTP = %+v, %v", r, err)
		}
		raw, _ := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(en.Secret)
		if bytes.Contains(r.ciphertext, raw) || bytes.Contains(r.ciphertext, []byte(en.Secret)) {
			t.Error("stored TOTP secret is not sealed")
		}
		// Pending: not usable to log in yet.
		if u, _ := f.svc.Get(ctx, "alice"); u.TOTP {
			t.Error("TOTP reported enabled before confirmation")
		}
		if err := f.svc.VerifyTOTP(ctx, m, "alice", f.code(t, "alice", 0)); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("VerifyTOTP while pending = %v", err)
		}
		f.svc.limiter.Succeed(AccountKey("alice"), IPKey(m.IP))

		wrong := []string{"000000", "abcdef", "12345", "1234567", ""}
		for _, c := range wrong {
			if c == f.code(t, "alice", 0) {
				continue
			}
			if _, err := f.svc.ConfirmTOTP(ctx, webMeta("192.0.2.21"), "alice", c); !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("ConfirmTOTP(%q) = %v", c, err)
			}
			f.svc.limiter.Succeed(AccountKey("alice"), IPKey("192.0.2.21"))
		}
		codes, err := f.svc.ConfirmTOTP(ctx, m, "alice", f.code(t, "alice", 0))
		if err != nil {
			t.Fatal(err)
		}
		if len(codes) != RecoveryCodes {
			t.Errorf("%d recovery codes, want %d", len(codes), RecoveryCodes)
		}
		seen := map[string]bool{}
		for _, c := range codes {
			if len(c) != 19 || seen[c] {
				t.Errorf("recovery code %q malformed or repeated", c)
			}
			seen[c] = true
		}
		u, _ := f.svc.Get(ctx, "alice")
		if !u.TOTP || u.Recovery != RecoveryCodes || !f.svc.MFARequired(u) {
			t.Errorf("after confirm: %+v", u)
		}
		if _, err := f.svc.EnrollTOTP(ctx, adminMeta, "alice"); !errors.Is(err, ErrMFAEnrolled) {
			t.Errorf("second EnrollTOTP = %v, want ErrMFAEnrolled", err)
		}
		if n := len(f.eventsOf(t, EventMFAEnroll)); n != 1 {
			t.Errorf("%d mfa_enroll events, want 1", n)
		}

		// reset-mfa clears the secret and the codes; enrolment starts over.
		if err := f.svc.ResetMFA(ctx, adminMeta, "alice"); err != nil {
			t.Fatal(err)
		}
		u, _ = f.svc.Get(ctx, "alice")
		if u.TOTP || u.Recovery != 0 {
			t.Errorf("after reset: %+v", u)
		}
		if err := f.svc.UseRecoveryCode(ctx, m, "alice", codes[0]); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("recovery code after reset = %v", err)
		}
		f.enrol(t, "alice")
		if n := len(f.eventsOf(t, EventUserResetMFA)); n != 1 {
			t.Errorf("%d reset_mfa events, want 1", n)
		}
	})
}

// TestTOTPSkew: a code from the previous, current or next step is
// accepted; two steps away is not.
func TestTOTPSkew(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{})
		tests := []struct {
			delta int64
			ok    bool
		}{
			{-3, false}, {-2, false}, {-1, true}, {0, true}, {1, true}, {2, false},
		}
		for i := range tests {
			name := "user" + string(rune('a'+i))
			f.mustCreate(t, name, RoleViewer)
			f.enrol(t, name)
		}
		f.clk.Advance(10 * totpPeriod * time.Second) // leave the enrolment step behind
		for i, tc := range tests {
			name := "user" + string(rune('a'+i))
			err := f.svc.VerifyTOTP(t.Context(), webMeta("192.0.2.30"), name, f.code(t, name, tc.delta))
			if (err == nil) != tc.ok {
				t.Errorf("step %+d: VerifyTOTP = %v, want ok=%v", tc.delta, err, tc.ok)
			}
			f.svc.limiter.Succeed(IPKey("192.0.2.30"))
		}
	})
}

// TestTOTPReplay: each code (time step) is accepted once per user, and no
// step at or before the last accepted one is accepted after it.
func TestTOTPReplay(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{})
		ctx := t.Context()
		f.mustCreate(t, "alice", RoleViewer)
		f.mustCreate(t, "bob", RoleViewer)
		f.enrol(t, "alice")
		f.enrol(t, "bob")
		m := webMeta("192.0.2.40")

		// The code used to confirm cannot be used to log in.
		if err := f.svc.VerifyTOTP(ctx, m, "alice", f.code(t, "alice", 0)); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("confirmation code reused: %v", err)
		}
		f.clk.Advance(totpPeriod * time.Second)
		code := f.code(t, "alice", 0)
		steps := []struct {
			name string
			code string
			ok   bool
		}{
			{"fresh code", code, true},
			{"same code again", code, false},
			{"previous step after a newer one", f.code(t, "alice", -1), false},
			{"next step", f.code(t, "alice", 1), true},
			{"current step after next", code, false},
		}
		for _, st := range steps {
			err := f.svc.VerifyTOTP(ctx, m, "alice", st.code)
			if (err == nil) != st.ok {
				t.Errorf("%s: VerifyTOTP = %v, want ok=%v", st.name, err, st.ok)
			}
			f.svc.limiter.Succeed(AccountKey("alice"), IPKey(m.IP))
		}
		// Another user's state is separate.
		if err := f.svc.VerifyTOTP(ctx, m, "bob", f.code(t, "bob", 0)); err != nil {
			t.Errorf("bob: %v", err)
		}
		var replays int
		for _, ev := range f.eventsOf(t, EventMFAFailed) {
			if ev.Detail["reason"] == reasonReplayed {
				replays++
			}
		}
		if replays != 4 {
			t.Errorf("%d replay events, want 4", replays)
		}
		if n := len(f.eventsOf(t, EventMFA)); n != 3 {
			t.Errorf("%d mfa events, want 3", n)
		}
	})
}

func TestRecoveryCodes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{})
		ctx := t.Context()
		f.mustCreate(t, "alice", RoleViewer)
		f.mustCreate(t, "bob", RoleViewer)
		codes := f.enrol(t, "alice")
		bobCodes := f.enrol(t, "bob")
		m := webMeta("192.0.2.50")

		loose := strings.ToLower(strings.ReplaceAll(codes[1], "-", " "))
		steps := []struct {
			name, user, code string
			ok               bool
		}{
			{"first use", "alice", codes[0], true},
			{"second use", "alice", codes[0], false},
			{"lower case, spaces", "alice", loose, true},
			{"another user's code", "alice", bobCodes[0], false},
			{"garbage", "alice", "not-a-code", false},
			{"unknown user", "nobody", codes[2], false},
			{"owner can still use theirs", "bob", bobCodes[0], true},
		}
		for _, st := range steps {
			err := f.svc.UseRecoveryCode(ctx, m, st.user, st.code)
			if (err == nil) != st.ok || (err != nil && !errors.Is(err, ErrInvalidCredentials)) {
				t.Errorf("%s: UseRecoveryCode = %v, want ok=%v", st.name, err, st.ok)
			}
			f.svc.limiter.Succeed(AccountKey(st.user), IPKey(m.IP))
		}
		if u, _ := f.svc.Get(ctx, "alice"); u.Recovery != RecoveryCodes-2 {
			t.Errorf("alice has %d unused codes, want %d", u.Recovery, RecoveryCodes-2)
		}
		evs := f.eventsOf(t, EventRecoveryUsed)
		if len(evs) != 3 {
			t.Fatalf("%d recovery events, want 3", len(evs))
		}
		// Only hashes are stored.
		err := db.View(ctx, func(tx *store.Tx) error {
			rows, err := tx.Query(ctx, `SELECT code_hash FROM user_recovery_codes`)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var h []byte
				if err := rows.Scan(&h); err != nil {
					return err
				}
				if len(h) != 32 {
					t.Errorf("stored code hash is %d bytes", len(h))
				}
				for _, c := range append(codes, bobCodes...) {
					if bytes.Contains(h, []byte(normalizeRecovery(c))) {
						t.Error("a recovery code is stored in the clear")
					}
				}
			}
			return rows.Err()
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestTOTPRewrap: SealedTables lets the system keyring rewrap TOTP
// secrets, and codes keep working after the old key version is retired.
func TestTOTPRewrap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{})
		ctx := t.Context()
		f.mustCreate(t, "alice", RoleViewer)
		f.enrol(t, "alice")
		newest, err := f.kr.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.kr.Rewrap(ctx)
		if err != nil || res.Rewrapped != 1 || res.Failed != 0 {
			t.Fatalf("Rewrap = %+v, %v; want 1 rewrapped", res, err)
		}
		if err := f.kr.Retire(ctx, newest-1); err != nil {
			t.Fatalf("Retire(%d): %v", newest-1, err)
		}
		f.clk.Advance(totpPeriod * time.Second)
		if err := f.svc.VerifyTOTP(ctx, webMeta("192.0.2.90"), "alice", f.code(t, "alice", 0)); err != nil {
			t.Errorf("VerifyTOTP after rewrap: %v", err)
		}
	})
}
