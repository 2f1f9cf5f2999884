package account

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/store"
)

func TestIPKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1", "ip:192.0.2.1"},
		{"192.0.2.1:4431", "ip:192.0.2.1"},
		{"::ffff:192.0.2.1", "ip:192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "ip:2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "ip:2001:db8:1:2::/64"},
		{"fe80::1%eth0", "ip:fe80::/64"},
		{"", ""},
		{"not an ip", "ip:?not an ip"},
	} {
		if got := IPKey(tc.in); got != tc.want {
			t.Errorf("IPKey(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if k := AccountKey(strings.Repeat("x", 10000)); len(k) > maxLimitKey {
		t.Errorf("AccountKey of a long name is %d bytes", len(k))
	}
}

func TestLimiter(t *testing.T) {
	type step struct {
		after  time.Duration // advance the clock first
		op     string        // "fail", "ok" (Succeed), "check"
		banned bool          // for "check": want banned; for "fail": want a ban to start
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"three failures in two minutes ban", []step{
			{0, "fail", false}, {time.Minute, "fail", false}, {59 * time.Second, "fail", true},
			{0, "check", true},
		}},
		{"failures spread wider than the window do not", []step{
			{0, "fail", false}, {time.Minute, "fail", false}, {time.Minute, "fail", false},
			{0, "check", false}, {61 * time.Second, "fail", false},
		}},
		{"ban lasts five minutes", []step{
			{0, "fail", false}, {0, "fail", false}, {0, "fail", true},
			{5*time.Minute - time.Second, "check", true}, {time.Second, "check", false},
		}},
		{"second ban doubles, third doubles again", []step{
			{0, "fail", false}, {0, "fail", false}, {0, "fail", true},
			{5 * time.Minute, "check", false},
			{0, "fail", false}, {0, "fail", false}, {0, "fail", true},
			{10*time.Minute - time.Second, "check", true}, {time.Second, "check", false},
			{0, "fail", false}, {0, "fail", false}, {0, "fail", true},
			{20*time.Minute - time.Second, "check", true}, {time.Second, "check", false},
		}},
		{"success resets the doubling", []step{
			{0, "fail", false}, {0, "fail", false}, {0, "fail", true},
			{5 * time.Minute, "ok", false},
			{0, "fail", false}, {0, "fail", false}, {0, "fail", true},
			{5 * time.Minute, "check", false},
		}},
		{"success clears partial failures", []step{
			{0, "fail", false}, {0, "fail", false}, {0, "ok", false}, {0, "fail", false}, {0, "check", false},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			l := NewLimiter(LimiterConfig{Now: clk.Now})
			for i, st := range tc.steps {
				clk.Advance(st.after)
				switch st.op {
				case "fail":
					bans := l.Fail("user:alice")
					if (len(bans) > 0) != st.banned {
						t.Fatalf("step %d: Fail started %v, want ban=%v", i, bans, st.banned)
					}
				case "ok":
					l.Succeed("user:alice")
				case "check":
					if _, banned := l.Check("user:alice", "ip:192.0.2.1"); banned != st.banned {
						t.Fatalf("step %d: banned = %v, want %v", i, banned, st.banned)
					}
				}
			}
		})
	}
}

func TestLimiterCap(t *testing.T) {
	clk := newClock()
	l := NewLimiter(LimiterConfig{Now: clk.Now, BanTime: time.Hour, MaxBanTime: 3 * time.Hour})
	var got []time.Duration
	for range 5 {
		var bans []Ban
		for range 3 {
			bans = l.Fail("k")
		}
		got = append(got, bans[0].Duration)
		clk.Advance(bans[0].Duration)
	}
	want := []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour, 3 * time.Hour, 3 * time.Hour}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ban durations %v, want %v", got, want)
	}
}

// TestLimiterSpray: spraying addresses neither grows memory past
// MaxEntries nor evicts the ban on the account under attack.
func TestLimiterSpray(t *testing.T) {
	clk := newClock()
	const max = 1000
	l := NewLimiter(LimiterConfig{Now: clk.Now, MaxEntries: max})
	for range 3 {
		l.Fail("user:victim")
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 200_000 {
		l.Fail(IPKey(fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)), AccountKey(fmt.Sprintf("spray%d", i)))
		if l.Len() > max {
			t.Fatalf("after %d failures, %d entries > %d", i, l.Len(), max)
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapAlloc) - int64(before.HeapAlloc); grow > 2<<20 {
		t.Errorf("heap grew by %d bytes for %d entries", grow, max)
	}
	if _, banned := l.Check("user:victim"); !banned {
		t.Error("the spray evicted the victim's ban")
	}
}

// TestLockout drives the limiter through Authenticate: checked before the
// password (no argon2 while banned), recorded after, reset by success.
func TestLockout(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{MFAOptional: true})
		ctx := t.Context()
		f.mustCreate(t, "alice", RoleViewer)
		wrong := []byte("wrong password, twelve+")

		// Per account: three failures from three addresses ban the account.
		for i := range 3 {
			if _, err := f.svc.Authenticate(ctx, webMeta(fmt.Sprintf("203.0.113.%d", i+1)), "alice", wrong); !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("attempt %d: %v", i, err)
			}
			f.clk.Advance(30 * time.Second)
		}
		before := f.svc.hashes.Load()
		_, err := f.svc.Authenticate(ctx, webMeta("203.0.113.9"), "alice", []byte(testPassword))
		var le *LockedError
		if !errors.As(err, &le) || !errors.Is(err, ErrLocked) {
			t.Fatalf("right password while banned = %v, want *LockedError", err)
		}
		if f.svc.hashes.Load() != before {
			t.Error("a banned attempt ran argon2")
		}
		evs := f.eventsOf(t, EventLockout)
		if len(evs) != 1 || evs[0].Subject != "alice" || evs[0].Detail["scope"] != "user" || evs[0].Detail["seconds"] != float64(300) {
			t.Fatalf("lockout events = %+v", evs)
		}
		f.clk.Advance(5 * time.Minute)
		if _, err := f.svc.Authenticate(ctx, webMeta("203.0.113.9"), "alice", []byte(testPassword)); err != nil {
			t.Fatalf("after the ban: %v", err)
		}
		// Success reset the account: two more failures do not ban.
		for range 2 {
			f.svc.Authenticate(ctx, webMeta("203.0.113.10"), "alice", wrong)
		}
		if _, err := f.svc.Authenticate(ctx, webMeta("203.0.113.11"), "alice", []byte(testPassword)); err != nil {
			t.Fatalf("after success and two failures: %v", err)
		}

		// Per IP: one address guessing three names is banned, for every name.
		for _, name := range []string{"bob", "carol", "dave"} {
			f.svc.Authenticate(ctx, webMeta("198.51.100.77"), name, wrong)
		}
		if _, err := f.svc.Authenticate(ctx, webMeta("198.51.100.77"), "alice", []byte(testPassword)); !errors.Is(err, ErrLocked) {
			t.Errorf("banned IP = %v, want ErrLocked", err)
		}

		// MFA failures count too.
		f.mustCreate(t, "erin", RoleViewer)
		f.enrol(t, "erin")
		for i := range 3 {
			f.svc.VerifyTOTP(ctx, webMeta(fmt.Sprintf("192.0.2.%d", 100+i)), "erin", "000000")
		}
		if err := f.svc.VerifyTOTP(ctx, webMeta("192.0.2.110"), "erin", f.code(t, "erin", 1)); !errors.Is(err, ErrLocked) {
			t.Errorf("TOTP while banned = %v, want ErrLocked", err)
		}
	})
}

// TestEventsHaveNoSecrets runs every flow with distinctive secrets and
// searches all recorded events for them.
func TestEventsHaveNoSecrets(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{})
		ctx := t.Context()
		const pw, wrongPW, newPW = "Zebra-Quokka-Pangolin-1", "Zebra-Quokka-Pangolin-2", "Okapi-Narwhal-Axolotl-3"
		tok, _, err := f.svc.CreateSetupToken(ctx, adminMeta)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.RedeemSetupToken(ctx, webMeta("192.0.2.200"), tok, "root", []byte(pw)); err != nil {
			t.Fatal(err)
		}
		var secrets []string
		secrets = append(secrets, tok, pw, wrongPW, newPW)
		m := webMeta("192.0.2.201")
		f.svc.Authenticate(ctx, m, "root", []byte(wrongPW))
		f.svc.Authenticate(ctx, m, "root", []byte(pw))
		en, err := f.svc.EnrollTOTP(ctx, m, "root")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, en.Secret)
		confirm := f.code(t, "root", 0)
		codes, err := f.svc.ConfirmTOTP(ctx, m, "root", confirm)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, codes...)
		secrets = append(secrets, normalizeRecovery(codes[0]))
		f.svc.VerifyTOTP(ctx, m, "root", confirm) // replay
		f.clk.Advance(totpPeriod * time.Second)
		good := f.code(t, "root", 0)
		if err := f.svc.VerifyTOTP(ctx, m, "root", good); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.UseRecoveryCode(ctx, m, "root", codes[0]); err != nil {
			t.Fatal(err)
		}
		f.svc.UseRecoveryCode(ctx, m, "root", codes[0]) // used
		f.svc.SetPassword(ctx, adminMeta, "root", []byte(newPW))
		f.svc.SetRole(ctx, adminMeta, "root", RoleOperator)
		f.svc.Disable(ctx, adminMeta, "root")
		f.svc.ResetMFA(ctx, adminMeta, "root")
		for range 3 {
			f.svc.Authenticate(ctx, webMeta("192.0.2.202"), "root", []byte(wrongPW))
		}

		text := f.allEventText(t)
		for _, typ := range []string{EventSetupToken, EventSetup, EventLogin, EventLoginFailed, EventLockout, EventMFAEnroll,
			EventMFA, EventMFAFailed, EventRecoveryUsed, EventUserPassword, EventUserRole, EventUserDisable, EventUserResetMFA} {
			if !strings.Contains(text, `"type":"`+typ+`"`) {
				t.Errorf("no %s event", typ)
			}
		}
		for _, s := range secrets {
			if strings.Contains(text, s) || strings.Contains(strings.ToLower(text), strings.ToLower(s)) {
				t.Errorf("events contain a secret (%d characters)", len(s))
			}
		}
		// TOTP codes are six digits, which timestamps may contain by
		// chance; look for them as whole JSON values instead.
		for _, c := range []string{confirm, good} {
			if strings.Contains(text, `"`+c+`"`) || strings.Contains(text, ":"+c+",") {
				t.Error("events contain a TOTP code")
			}
		}
	})
}
