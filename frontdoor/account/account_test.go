package account

import (
	"errors"
	"strings"
	"testing"

	"github.com/clawhold/clawhold/store"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"alice", true},
		{"a", true},
		{"alice.smith_2-x@example.com", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"Alice", false},
		{"al ice", false},
		{"../etc", false},
		{"alice\n", false},
		{"ålice", false},
	} {
		if err := ValidName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestCreateGetList(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{})
		ctx := t.Context()
		u := f.mustCreate(t, "alice", RoleOperator)
		if u.Name != "alice" || u.Tenant != "default" || u.Role != RoleOperator || u.Disabled || u.TOTP {
			t.Errorf("Create returned %+v", u)
		}
		if _, err := f.svc.Create(ctx, adminMeta, NewUser{Name: "bob", Tenant: "acme", Role: RoleViewer, Password: []byte(testPassword)}); err != nil {
			t.Fatal(err)
		}

		tests := []struct {
			name string
			nu   NewUser
			want error // nil: any error
		}{
			{"duplicate", NewUser{Name: "alice", Tenant: "default", Role: RoleViewer, Password: []byte(testPassword)}, ErrExists},
			{"bad name", NewUser{Name: "Alice", Tenant: "default", Role: RoleViewer, Password: []byte(testPassword)}, nil},
			{"bad tenant", NewUser{Name: "carol", Tenant: "../x", Role: RoleViewer, Password: []byte(testPassword)}, nil},
			{"system tenant", NewUser{Name: "carol", Tenant: "system", Role: RoleViewer, Password: []byte(testPassword)}, nil},
			{"bad role", NewUser{Name: "carol", Tenant: "default", Role: "root", Password: []byte(testPassword)}, nil},
			{"weak password", NewUser{Name: "carol", Tenant: "default", Role: RoleViewer, Password: []byte("carol1234567")}, ErrWeakPassword},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := f.svc.Create(ctx, adminMeta, tc.nu)
				if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
					t.Fatalf("Create = %v, want %v", err, tc.want)
				}
			})
		}

		got, err := f.svc.Get(ctx, "bob")
		if err != nil || got.Tenant != "acme" || got.Role != RoleViewer {
			t.Errorf("Get(bob) = %+v, %v", got, err)
		}
		if _, err := f.svc.Get(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(nobody) = %v, want ErrNotFound", err)
		}
		all, err := f.svc.List(ctx, ListOptions{})
		if err != nil || len(all) != 2 || all[0].Name != "alice" || all[1].Name != "bob" {
			t.Errorf("List() = %+v, %v", all, err)
		}
		acme, err := f.svc.List(ctx, ListOptions{Tenant: "acme"})
		if err != nil || len(acme) != 1 || acme[0].Name != "bob" {
			t.Errorf("List(acme) = %+v, %v", acme, err)
		}
		if n := len(f.eventsOf(t, EventUserCreate)); n != 2 {
			t.Errorf("%d user.create events, want 2", n)
		}
	})
}

func TestAuthenticate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{})
		ctx := t.Context()
		f.mustCreate(t, "alice", RoleViewer)
		f.mustCreate(t, "mallory", RoleViewer)
		if err := f.svc.Disable(ctx, adminMeta, "mallory"); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, user, pw string
			reason         string // "" = success
		}{
			{"right password", "alice", testPassword, ""},
			{"wrong password", "alice", "not the password", reasonBadPassword},
			{"unknown user", "nobody", testPassword, reasonUnknownUser},
			{"invalid name", "../../etc/passwd", testPassword, reasonUnknownUser},
			{"disabled user", "mallory", testPassword, reasonDisabled},
			{"empty password", "alice", "", reasonBadPassword},
		}
		for i, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				// A fresh client address each time, so the limiter stays out
				// of this test (see TestLockout).
				m := webMeta("198.51.100." + string(rune('1'+i)))
				f.svc.limiter.Succeed(AccountKey(tc.user))
				before := f.svc.hashes.Load()
				failsBefore := len(f.eventsOf(t, EventLoginFailed))
				u, err := f.svc.Authenticate(ctx, m, tc.user, []byte(tc.pw))
				// Every path, including unknown users, runs argon2 exactly once.
				if n := f.svc.hashes.Load() - before; n != 1 {
					t.Errorf("argon2 ran %d times, want 1", n)
				}
				if tc.reason == "" {
					if err != nil || u == nil || u.Name != tc.user {
						t.Fatalf("Authenticate = %+v, %v", u, err)
					}
					return
				}
				if err != ErrInvalidCredentials {
					t.Fatalf("Authenticate = %v, want exactly ErrInvalidCredentials", err)
				}
				evs := f.eventsOf(t, EventLoginFailed)
				if len(evs) != failsBefore+1 {
					t.Fatalf("%d login_failed events, want %d", len(evs), failsBefore+1)
				}
				ev := evs[len(evs)-1]
				if ev.Detail["reason"] != tc.reason || ev.Detail["ip"] != m.IP || ev.Detail["user_agent"] != m.UserAgent {
					t.Errorf("event detail = %v, want reason %q", ev.Detail, tc.reason)
				}
			})
		}
		// The event for an invalid name does not echo it.
		for _, ev := range f.eventsOf(t, EventLoginFailed) {
			if strings.Contains(ev.Subject, "passwd") {
				t.Errorf("event subject %q echoes an invalid name", ev.Subject)
			}
		}
	})
}

func TestUserChanges(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *store.DB) {
		f := newFixture(t, db, Config{MFAOptional: true})
		ctx := t.Context()
		f.mustCreate(t, "alice", RoleViewer)
		m := webMeta("192.0.2.10")

		if err := f.svc.SetRole(ctx, adminMeta, "alice", RoleAdmin); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.SetRole(ctx, adminMeta, "alice", "god"); err == nil {
			t.Error("SetRole(god) succeeded")
		}
		if err := f.svc.SetRole(ctx, adminMeta, "nobody", RoleAdmin); !errors.Is(err, ErrNotFound) {
			t.Errorf("SetRole(nobody) = %v, want ErrNotFound", err)
		}
		if u, _ := f.svc.Get(ctx, "alice"); u.Role != RoleAdmin {
			t.Errorf("role = %s, want admin", u.Role)
		}
		evs := f.eventsOf(t, EventUserRole)
		if len(evs) != 1 || evs[0].Detail["from"] != "viewer" || evs[0].Detail["to"] != "admin" || evs[0].Actor != adminMeta.Actor {
			t.Errorf("set_role events = %+v", evs)
		}

		if err := f.svc.Disable(ctx, adminMeta, "alice"); err != nil {
			t.Fatal(err)
		}
		if err := f.svc.Disable(ctx, adminMeta, "alice"); err != nil { // idempotent, no second event
			t.Fatal(err)
		}
		if _, err := f.svc.Authenticate(ctx, m, "alice", []byte(testPassword)); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("disabled login = %v", err)
		}
		if err := f.svc.Enable(ctx, adminMeta, "alice"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Authenticate(ctx, m, "alice", []byte(testPassword)); err != nil {
			t.Errorf("enabled login = %v", err)
		}
		if n := len(f.eventsOf(t, EventUserDisable)); n != 1 {
			t.Errorf("%d disable events, want 1", n)
		}
		if n := len(f.eventsOf(t, EventUserEnable)); n != 1 {
			t.Errorf("%d enable events, want 1", n)
		}

		newPW := "a whole new passphrase"
		if err := f.svc.SetPassword(ctx, adminMeta, "alice", []byte("alice-password")); !errors.Is(err, ErrWeakPassword) {
			t.Errorf("SetPassword(weak) = %v", err)
		}
		if err := f.svc.SetPassword(ctx, adminMeta, "alice", []byte(newPW)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.Authenticate(ctx, m, "alice", []byte(testPassword)); !errors.Is(err, ErrInvalidCredentials) {
			t.Errorf("old password = %v", err)
		}
		if _, err := f.svc.Authenticate(ctx, m, "alice", []byte(newPW)); err != nil {
			t.Errorf("new password = %v", err)
		}
		if strings.Contains(f.allEventText(t), newPW) {
			t.Error("an event contains the new password")
		}
	})
}
