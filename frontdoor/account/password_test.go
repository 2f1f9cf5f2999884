package account

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/clawhold/clawhold/store"
)

func TestHashFormat(t *testing.T) {
	hs := hasher{params: DefaultParams(), sem: make(chan struct{}, 1)}
	pw := []byte(testPassword)
	h, err := hs.hash(t.Context(), pw)
	if err != nil {
		t.Fatal(err)
	}
	// 16-byte salt and 32-byte hash, unpadded standard base64.
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Fatalf("hash %q does not match %s", h, re)
	}
	if h2, _ := hs.hash(t.Context(), pw); h2 == h {
		t.Error("two hashes of one password are equal: salt not random")
	}
	for _, tc := range []struct {
		pw         string
		ok, rehash bool
	}{
		{testPassword, true, false},
		{testPassword + "x", false, false},
		{"", false, false},
	} {
		ok, rehash, err := hs.verify(t.Context(), []byte(tc.pw), h, h)
		if err != nil || ok != tc.ok || rehash != tc.rehash {
			t.Errorf("verify(len %d) = %v, %v, %v; want %v, %v, nil", len(tc.pw), ok, rehash, err, tc.ok, tc.rehash)
		}
	}
	// Other parameters verify, and ask for a rehash.
	cheap := hasher{params: cheapParams, sem: make(chan struct{}, 1)}
	old, _ := cheap.hash(t.Context(), pw)
	if ok, rehash, err := hs.verify(t.Context(), pw, old, h); !ok || !rehash || err != nil {
		t.Errorf("verify(old params) = %v, %v, %v; want true, true, nil", ok, rehash, err)
	}
}

func TestParsePHC(t *testing.T) {
	salt := "c2FsdHNhbHRzYWx0c2FsdA"                      // 16 bytes
	hash := "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g" // 32 bytes
	good := "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + hash
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"good", good, true},
		{"argon2i", strings.Replace(good, "argon2id", "argon2i", 1), false},
		{"old version", strings.Replace(good, "v=19", "v=16", 1), false},
		{"missing version", "$argon2id$m=19456,t=2,p=1$" + salt + "$" + hash, false},
		{"params reordered", strings.Replace(good, "m=19456,t=2,p=1", "t=2,m=19456,p=1", 1), false},
		{"leading zero", strings.Replace(good, "t=2", "t=02", 1), false},
		{"plus sign", strings.Replace(good, "t=2", "t=+2", 1), false},
		{"zero time", strings.Replace(good, "t=2", "t=0", 1), false},
		{"zero lanes", strings.Replace(good, "p=1", "p=0", 1), false},
		{"256 lanes", strings.Replace(good, "p=1", "p=256", 1), false},
		{"memory below 8 KiB per lane", strings.Replace(good, "m=19456,t=2,p=1", "m=15,t=2,p=2", 1), false},
		{"memory over cap", strings.Replace(good, "m=19456", "m=4194304", 1), false},
		{"memory overflow", strings.Replace(good, "m=19456", "m=99999999999", 1), false},
		{"time over cap", strings.Replace(good, "t=2", "t=1000", 1), false},
		{"padded salt", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "==$" + hash, false},
		{"short salt", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$" + hash, false},
		{"short hash", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$aGFzaA", false},
		{"newline in salt", "$argon2id$v=19$m=19456,t=2,p=1$" + salt[:10] + "\r\n" + salt[10:] + "$" + hash, false},
		{"bad base64", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$" + strings.Repeat("!", 43), false},
		{"trailing field", good + "$", false},
		{"no leading $", good[1:], false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parsePHC(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("parsePHC(%q) error = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if tc.ok && h.encode() != tc.in {
				t.Errorf("encode(parse(x)) = %q, want %q", h.encode(), tc.in)
			}
		})
	}
}

// FuzzParsePHC: parsing never panics, and whatever parses re-encodes to
// the same string (one canonical form).
func FuzzParsePHC(f *testing.F) {
	f.Add("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g")
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")
	f.Add("$argon2i$v=19$m=0,t=0,p=0$$")
	f.Add("$$$$$")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parsePHC(s)
		if err != nil {
			return
		}
		if !h.params.valid() {
			t.Fatalf("parsed invalid params %+v", h.params)
		}
		if got := h.encode(); got != s {
			t.Fatalf("encode(parse(%q)) = %q", s, got)
		}
	})
}

func TestCheckPassword(t *testing.T) {
	tests := []struct {
		name, user, pw string
		ok             bool
	}{
		{"good", "alice", testPassword, true},
		{"twelve characters", "alice", "tr0ub4dor&3x", true},
		{"unicode counts runes", "alice", "éééééééééééx", true},
		{"too short", "alice", "short-pw-11", false},
		{"too short in runes", "alice", "ééééééééééé", false},
		{"too long", "alice", strings.Repeat("ab", MaxPasswordLen/2+1), false},
		{"invalid utf-8", "alice", "abcdefghijk\xff", false},
		{"is the user name", "alice.smith@x", "alice.smith@x", false},
		{"contains the user name", "alice", "ALICE-is-the-best", false},
		{"common", "alice", "Password1234", false},
		{"common list entry", "bob", "correcthorsebatterystaple", false},
		{"repeated", "alice", "zzzzzzzzzzzzzz", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkPassword(tc.user, []byte(tc.pw))
			if (err == nil) != tc.ok {
				t.Fatalf("checkPassword = %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrWeakPassword) {
					t.Errorf("error %v does not wrap ErrWeakPassword", err)
				}
				if strings.Contains(err.Error(), tc.pw) {
					t.Errorf("error %q contains the password", err)
				}
			}
		})
	}
}

func TestNewRefusesWeakParams(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{})
		for _, p := range []Params{cheapParams, {Memory: 19456, Time: 1, Threads: 1}, {Memory: 7168, Time: 4, Threads: 1}} {
			if _, err := New(t.Context(), db, f.kr, Config{Params: p}); err == nil {
				t.Errorf("New(%+v) succeeded; want refusal", p)
			}
		}
		if _, err := New(t.Context(), db, f.kr, Config{Params: Params{Memory: 47104, Time: 1, Threads: 1}}); err != nil {
			t.Errorf("New(46 MiB, t=1): %v", err)
		}
	})
}

// TestRehashOnLogin: a hash made with older parameters is replaced, with
// the current ones, at the next successful login, and only then.
func TestRehashOnLogin(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{MFAOptional: true})
		f.mustCreate(t, "alice", RoleViewer)
		before := storedHash(t, f, "alice")

		newer := Params{Memory: 128, Time: 2, Threads: 1}
		svc2, err := newService(t.Context(), db, f.kr, Config{Params: newer, Now: f.clk.Now, MFAOptional: true})
		if err != nil {
			t.Fatal(err)
		}
		// A failed login does not rehash.
		if _, err := svc2.Authenticate(t.Context(), webMeta("192.0.2.7"), "alice", []byte("wrong password!")); !errors.Is(err, ErrInvalidCredentials) {
			t.Fatalf("wrong password: %v", err)
		}
		if got := storedHash(t, f, "alice"); got != before {
			t.Fatal("failed login changed the hash")
		}
		if _, err := svc2.Authenticate(t.Context(), webMeta("192.0.2.7"), "alice", []byte(testPassword)); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		after := storedHash(t, f, "alice")
		if !strings.HasPrefix(after, "$argon2id$v=19$m=128,t=2,p=1$") {
			t.Fatalf("hash after login = %.40q..., want m=128,t=2,p=1", after)
		}
		if n := len(f.eventsOf(t, EventPasswordRehash)); n != 1 {
			t.Errorf("%d rehash events, want 1", n)
		}
		// Logging in again verifies the new hash and leaves it alone.
		if _, err := svc2.Authenticate(t.Context(), webMeta("192.0.2.7"), "alice", []byte(testPassword)); err != nil {
			t.Fatalf("Authenticate after rehash: %v", err)
		}
		if storedHash(t, f, "alice") != after {
			t.Error("second login rehashed again")
		}
	})
}

func storedHash(t *testing.T, f *fixture, name string) string {
	t.Helper()
	var h string
	err := f.db.View(t.Context(), func(tx *store.Tx) error {
		return tx.QueryRow(t.Context(), `SELECT password_hash FROM users WHERE name = ?`, name).Scan(&h)
	})
	if err != nil {
		t.Fatal(err)
	}
	return h
}
