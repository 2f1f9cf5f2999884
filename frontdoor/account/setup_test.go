package account

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/store"
)

func TestSetupToken(t *testing.T) {
	const pw = "first admin passphrase"
	tests := []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"redeem creates admin", func(t *testing.T, f *fixture) {
			tok, exp, err := f.svc.CreateSetupToken(t.Context(), adminMeta)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tok, setupTokenPrefix) || !exp.Equal(f.clk.Now().Add(time.Hour)) {
				t.Errorf("token %.8q..., expires %v", tok, exp)
			}
			u, err := f.svc.RedeemSetupToken(t.Context(), webMeta("192.0.2.60"), tok, "root", []byte(pw))
			if err != nil {
				t.Fatal(err)
			}
			if u.Role != RoleAdmin || u.Tenant != "default" {
				t.Errorf("admin = %+v", u)
			}
			if _, err := f.svc.Authenticate(t.Context(), webMeta("192.0.2.60"), "root", []byte(pw)); err != nil {
				t.Errorf("admin login: %v", err)
			}
			if n := len(f.eventsOf(t, EventSetup)); n != 1 {
				t.Errorf("%d setup events, want 1", n)
			}
			if strings.Contains(f.allEventText(t), tok) || strings.Contains(f.allEventText(t), pw) {
				t.Error("an event contains the token or the password")
			}
		}},
		{"single use", func(t *testing.T, f *fixture) {
			tok, _, _ := f.svc.CreateSetupToken(t.Context(), adminMeta)
			if _, err := f.svc.RedeemSetupToken(t.Context(), webMeta("192.0.2.61"), tok, "root", []byte(pw)); err != nil {
				t.Fatal(err)
			}
			// With no admin left, only single use stops the token.
			if err := f.svc.SetRole(t.Context(), adminMeta, "root", RoleViewer); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.RedeemSetupToken(t.Context(), webMeta("192.0.2.61"), tok, "root2", []byte(pw)); !errors.Is(err, ErrSetupToken) {
				t.Errorf("second redeem = %v, want ErrSetupToken", err)
			}
		}},
		{"expired", func(t *testing.T, f *fixture) {
			tok, _, _ := f.svc.CreateSetupToken(t.Context(), adminMeta)
			f.clk.Advance(SetupTokenTTL)
			if _, err := f.svc.RedeemSetupToken(t.Context(), webMeta("192.0.2.62"), tok, "root", []byte(pw)); !errors.Is(err, ErrSetupToken) {
				t.Errorf("redeem after expiry = %v, want ErrSetupToken", err)
			}
		}},
		{"wrong token", func(t *testing.T, f *fixture) {
			f.svc.CreateSetupToken(t.Context(), adminMeta)
			before := f.svc.hashes.Load()
			if _, err := f.svc.RedeemSetupToken(t.Context(), webMeta("192.0.2.63"), setupTokenPrefix+"nope", "root", []byte(pw)); !errors.Is(err, ErrSetupToken) {
				t.Errorf("redeem wrong token = %v, want ErrSetupToken", err)
			}
			if f.svc.hashes.Load() != before {
				t.Error("a wrong token cost an argon2 run")
			}
			if n := len(f.eventsOf(t, EventSetupFailed)); n != 1 {
				t.Errorf("%d setup_failed events, want 1", n)
			}
		}},
		{"create refused when an admin exists", func(t *testing.T, f *fixture) {
			f.mustCreate(t, "boss", RoleAdmin)
			if _, _, err := f.svc.CreateSetupToken(t.Context(), adminMeta); !errors.Is(err, ErrAdminExists) {
				t.Errorf("CreateSetupToken = %v, want ErrAdminExists", err)
			}
		}},
		{"redeem refused when an admin exists", func(t *testing.T, f *fixture) {
			tok, _, _ := f.svc.CreateSetupToken(t.Context(), adminMeta)
			f.mustCreate(t, "boss", RoleAdmin)
			if _, err := f.svc.RedeemSetupToken(t.Context(), webMeta("192.0.2.64"), tok, "root", []byte(pw)); !errors.Is(err, ErrAdminExists) {
				t.Errorf("redeem = %v, want ErrAdminExists", err)
			}
			if _, err := f.svc.Get(t.Context(), "root"); !errors.Is(err, ErrNotFound) {
				t.Errorf("root exists after a refused setup: %v", err)
			}
		}},
		{"weak password keeps the token", func(t *testing.T, f *fixture) {
			tok, _, _ := f.svc.CreateSetupToken(t.Context(), adminMeta)
			if _, err := f.svc.RedeemSetupToken(t.Context(), webMeta("192.0.2.65"), tok, "root", []byte("short")); !errors.Is(err, ErrWeakPassword) {
				t.Errorf("redeem weak = %v, want ErrWeakPassword", err)
			}
			if _, err := f.svc.RedeemSetupToken(t.Context(), webMeta("192.0.2.65"), tok, "root", []byte(pw)); err != nil {
				t.Errorf("redeem after weak = %v", err)
			}
		}},
		{"guessing is rate limited", func(t *testing.T, f *fixture) {
			tok, _, _ := f.svc.CreateSetupToken(t.Context(), adminMeta)
			m := webMeta("192.0.2.66")
			for range 3 {
				f.svc.RedeemSetupToken(t.Context(), m, setupTokenPrefix+"guess", "root", []byte(pw))
			}
			if _, err := f.svc.RedeemSetupToken(t.Context(), m, tok, "root", []byte(pw)); !errors.Is(err, ErrLocked) {
				t.Errorf("redeem while banned = %v, want ErrLocked", err)
			}
		}},
	}
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				// Each case needs "no admin yet": clear what earlier cases made.
				err := db.Update(t.Context(), func(tx *store.Tx) error {
					for _, q := range []string{`DELETE FROM setup_tokens`, `DELETE FROM user_recovery_codes`, `DELETE FROM user_totp`, `DELETE FROM users`, `DELETE FROM events`} {
						if _, err := tx.Exec(t.Context(), q); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				tc.run(t, newFixture(t, db, Config{}))
			})
		}
	})
}
