package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/frontdoor/session"
	"github.com/clawhold/clawhold/instance"
)

const testPassword = "correct horse battery staple 7"

// openTest opens the installation at d beside the CLI, as the front door
// would, with the account service and a session manager on the system
// keyring. Close it before running commands that write.
func openTest(t *testing.T, d string, now func() time.Time) (*instance.Instance, *account.Service, *session.Manager) {
	t.Helper()
	ctx := context.Background()
	in, err := instance.Open(ctx, instance.Options{DataDir: d})
	if err != nil {
		t.Fatal(err)
	}
	sys, err := in.DB(ctx, instance.SystemTenant)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := in.Keyring(ctx, instance.SystemTenant)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := account.New(ctx, sys, kr, account.Config{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return in, svc, &session.Manager{DB: sys, Keyring: kr, Actor: "test"}
}

// newSession signs user in, as the front door would, and returns the token.
func newSession(t *testing.T, d, user, tenant, role string) string {
	t.Helper()
	in, _, m := openTest(t, d, nil)
	defer in.Close()
	tok, _, err := m.Create(context.Background(), session.Login{User: user, Tenant: tenant, Role: role, IP: "192.0.2.7", AuthMethod: "password+totp"})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// sessionLive reports whether tok still names a live session.
func sessionLive(t *testing.T, d, tok string) bool {
	t.Helper()
	in, _, m := openTest(t, d, nil)
	defer in.Close()
	_, err := m.Lookup(context.Background(), tok)
	if err != nil && !errors.Is(err, session.ErrNoSession) {
		t.Fatal(err)
	}
	return err == nil
}

func systemEvents(t *testing.T, d, typ string) []events.Event {
	t.Helper()
	in, _, _ := openTest(t, d, nil)
	defer in.Close()
	db, err := in.DB(context.Background(), instance.SystemTenant)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := events.List(context.Background(), db, events.Filter{Type: typ})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

type listedUser struct {
	Name     string
	Tenant   string
	Role     string
	Disabled bool
	TOTP     bool
	Recovery int `json:"recovery_codes"`
}

func listUsers(t *testing.T, d string, args ...string) map[string]listedUser {
	t.Helper()
	out := mustRun(t, "", append([]string{"--data-dir", d, "users", "list", "--json"}, args...)...)
	var list []listedUser
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("users list --json: %v: %q", err, out)
	}
	m := map[string]listedUser{}
	for _, u := range list {
		m[u.Name] = u
	}
	return m
}

func TestUsersAddListAndPasswordHandling(t *testing.T) {
	d := newDataDir(t)
	out, errOut, err := run(t, testPassword+"\n", "--data-dir", d, "users", "add", "alice", "--tenant", "default", "--role", "operator")
	if err != nil {
		t.Fatalf("users add: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "alice: created (tenant default, role operator)") {
		t.Fatalf("users add said %q", out)
	}
	if strings.Contains(out+errOut, testPassword) {
		t.Fatal("the password was printed")
	}
	// Default role is viewer; --json prints the user.
	out = mustRun(t, testPassword+"-b", "--data-dir", d, "users", "add", "bob", "--tenant", "default", "--json")
	var u listedUser
	if err := json.Unmarshal([]byte(out), &u); err != nil || u.Name != "bob" || u.Role != "viewer" {
		t.Fatalf("users add --json: %q %v", out, err)
	}

	table := mustRun(t, "", "--data-dir", d, "users", "list")
	for _, want := range []string{"NAME", "RECOVERY CODES", "alice", "operator", "bob", "viewer"} {
		if !strings.Contains(table, want) {
			t.Fatalf("users list lacks %q:\n%s", want, table)
		}
	}
	users := listUsers(t, d)
	if a := users["alice"]; len(users) != 2 || a.Tenant != "default" || a.Role != "operator" || a.Disabled || a.TOTP || a.Recovery != 0 {
		t.Fatalf("users list --json: %+v", users)
	}
	raw := mustRun(t, "", "--data-dir", d, "users", "list", "--json")
	for _, bad := range []string{"argon2", "hash", testPassword} {
		if strings.Contains(strings.ToLower(raw), bad) {
			t.Fatalf("users list --json shows %q: %s", bad, raw)
		}
	}
	if got := listUsers(t, d, "--tenant", "default"); len(got) != 2 {
		t.Fatalf("--tenant default: %+v", got)
	}

	// The password has no flag: it cannot come from argv.
	if _, _, err := run(t, "", "--data-dir", d, "users", "add", "carol", "--tenant", "default", "--password", testPassword); err == nil || !strings.Contains(err.Error(), "unknown flag") {
		t.Fatalf("--password accepted: %v", err)
	}
	// Weak passwords are refused, saying why and not echoing them.
	for pw, why := range map[string]string{"short-pw": "shorter than 12", "carol-carol-carol": "contains the user name", "": "no password"} {
		out, errOut, err := run(t, pw+"\n", "--data-dir", d, "users", "add", "carol", "--tenant", "default")
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Fatalf("password %q: %v", pw, err)
		}
		if pw != "" && strings.Contains(out+errOut+err.Error(), pw) {
			t.Fatalf("password %q echoed", pw)
		}
	}
	if _, ok := listUsers(t, d)["carol"]; ok {
		t.Fatal("carol created with a refused password")
	}
	// The tenant must exist; duplicates and bad roles are refused.
	if _, _, err := run(t, testPassword, "--data-dir", d, "users", "add", "carol", "--tenant", "acme"); err == nil || !strings.Contains(err.Error(), `tenant "acme" does not exist`) {
		t.Fatalf("unknown tenant: %v", err)
	}
	if _, _, err := run(t, testPassword, "--data-dir", d, "users", "add", "carol"); err == nil || !strings.Contains(err.Error(), "--tenant is required") {
		t.Fatalf("no tenant: %v", err)
	}
	if _, _, err := run(t, testPassword, "--data-dir", d, "users", "add", "alice", "--tenant", "default"); err == nil || !errors.Is(err, account.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, _, err := run(t, testPassword, "--data-dir", d, "users", "add", "carol", "--tenant", "default", "--role", "root"); err == nil {
		t.Fatal("role root accepted")
	}

	// The password works, and the event names the CLI actor.
	in, svc, _ := openTest(t, d, nil)
	if _, err := svc.Authenticate(context.Background(), account.Meta{IP: "192.0.2.1"}, "alice", []byte(testPassword)); err != nil {
		t.Fatalf("alice cannot sign in: %v", err)
	}
	in.Close()
	evs := systemEvents(t, d, account.EventUserCreate)
	if len(evs) != 2 || !strings.HasPrefix(evs[0].Actor, "cli:") {
		t.Fatalf("user.create events: %+v", evs)
	}
}

func TestUsersDisableRevokesSessions(t *testing.T) {
	d := newDataDir(t)
	mustRun(t, testPassword, "--data-dir", d, "users", "add", "alice", "--tenant", "default")
	mustRun(t, testPassword+"!", "--data-dir", d, "users", "add", "bob", "--tenant", "default")
	a1 := newSession(t, d, "alice", "default", "viewer")
	a2 := newSession(t, d, "alice", "default", "viewer")
	b1 := newSession(t, d, "bob", "default", "viewer")

	out := mustRun(t, "", "--data-dir", d, "users", "disable", "alice")
	if !strings.Contains(out, "alice: disabled; 2 session(s) ended") {
		t.Fatalf("disable said %q", out)
	}
	if sessionLive(t, d, a1) || sessionLive(t, d, a2) {
		t.Fatal("alice's sessions survived disable")
	}
	if !sessionLive(t, d, b1) {
		t.Fatal("bob's session ended too")
	}
	if !listUsers(t, d)["alice"].Disabled {
		t.Fatal("alice not disabled")
	}
	evs := systemEvents(t, d, session.EventRevoke)
	if len(evs) != 2 || evs[0].Detail["reason"] != session.ReasonUserDisable || !strings.HasPrefix(evs[0].Actor, "cli:") {
		t.Fatalf("revoke events: %+v", evs)
	}
	if n := len(systemEvents(t, d, account.EventUserDisable)); n != 1 {
		t.Fatalf("%d user.disable events", n)
	}

	mustRun(t, "", "--data-dir", d, "users", "enable", "alice")
	if listUsers(t, d)["alice"].Disabled {
		t.Fatal("alice still disabled")
	}
	in, svc, _ := openTest(t, d, nil)
	_, err := svc.Authenticate(context.Background(), account.Meta{IP: "192.0.2.1"}, "alice", []byte(testPassword))
	in.Close()
	if err != nil {
		t.Fatalf("alice cannot sign in after enable: %v", err)
	}
}

func TestUsersSetRoleAndSetPassword(t *testing.T) {
	d := newDataDir(t)
	mustRun(t, testPassword, "--data-dir", d, "users", "add", "alice", "--tenant", "default")
	tok := newSession(t, d, "alice", "default", "viewer")
	out := mustRun(t, "", "--data-dir", d, "users", "set-role", "alice", "admin", "--json")
	var res struct {
		User            listedUser
		SessionsRevoked int `json:"sessions_revoked"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.User.Role != "admin" || res.SessionsRevoked != 1 {
		t.Fatalf("set-role --json: %q %v", out, err)
	}
	if sessionLive(t, d, tok) {
		t.Fatal("session kept its old role after set-role")
	}
	if _, _, err := run(t, "", "--data-dir", d, "users", "set-role", "alice", "superuser"); err == nil {
		t.Fatal("unknown role accepted")
	}
	evs := systemEvents(t, d, account.EventUserRole)
	if len(evs) != 1 || evs[0].Detail["from"] != "viewer" || evs[0].Detail["to"] != "admin" {
		t.Fatalf("set_role events: %+v", evs)
	}

	tok = newSession(t, d, "alice", "default", "admin")
	const newPassword = "a different passphrase 42"
	if _, _, err := run(t, "tiny\n", "--data-dir", d, "users", "set-password", "alice"); err == nil || !errors.Is(err, account.ErrWeakPassword) {
		t.Fatalf("weak new password: %v", err)
	}
	if !sessionLive(t, d, tok) {
		t.Fatal("a refused password change ended the session")
	}
	out, errOut, err := run(t, newPassword+"\n", "--data-dir", d, "users", "set-password", "alice")
	if err != nil || !strings.Contains(out, "alice: password changed; 1 session(s) ended") || strings.Contains(out+errOut, newPassword) {
		t.Fatalf("set-password: %v %q %q", err, out, errOut)
	}
	if sessionLive(t, d, tok) {
		t.Fatal("session survived set-password")
	}
	in, svc, _ := openTest(t, d, nil)
	defer in.Close()
	ctx := context.Background()
	if _, err := svc.Authenticate(ctx, account.Meta{IP: "192.0.2.1"}, "alice", []byte(newPassword)); err != nil {
		t.Fatalf("new password refused: %v", err)
	}
	if _, err := svc.Authenticate(ctx, account.Meta{IP: "192.0.2.2"}, "alice", []byte(testPassword)); !errors.Is(err, account.ErrInvalidCredentials) {
		t.Fatalf("old password: %v", err)
	}
}

// totpCode computes RFC 6238's code for a base32 secret at t.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.TrimRight(strings.ToUpper(secret), "="))
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha1.New, key)
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], uint64(at.Unix()/30))
	mac.Write(msg[:])
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	return fmt.Sprintf("%06d", (binary.BigEndian.Uint32(sum[off:off+4])&0x7fffffff)%1000000)
}

// enrolTOTP enrols and confirms TOTP for user at now, returning the secret.
func enrolTOTP(t *testing.T, d, user string, now time.Time) string {
	t.Helper()
	ctx := context.Background()
	in, svc, _ := openTest(t, d, func() time.Time { return now })
	defer in.Close()
	en, err := svc.EnrollTOTP(ctx, account.Meta{}, user)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ConfirmTOTP(ctx, account.Meta{}, user, totpCode(t, en.Secret, now)); err != nil {
		t.Fatal(err)
	}
	return en.Secret
}

func TestUsersResetMFA(t *testing.T) {
	d := newDataDir(t)
	mustRun(t, testPassword, "--data-dir", d, "users", "add", "alice", "--tenant", "default")
	enrolTOTP(t, d, "alice", time.Now())
	if u := listUsers(t, d)["alice"]; !u.TOTP || u.Recovery != account.RecoveryCodes {
		t.Fatalf("after enrolment: %+v", u)
	}
	if tbl := mustRun(t, "", "--data-dir", d, "users", "list"); !strings.Contains(tbl, " on ") {
		t.Fatalf("MFA not shown on:\n%s", tbl)
	}
	tok := newSession(t, d, "alice", "default", "viewer")
	out := mustRun(t, "", "--data-dir", d, "users", "reset-mfa", "alice")
	if !strings.Contains(out, "alice: MFA reset") || !strings.Contains(out, "1 session(s) ended") {
		t.Fatalf("reset-mfa said %q", out)
	}
	if u := listUsers(t, d)["alice"]; u.TOTP || u.Recovery != 0 {
		t.Fatalf("after reset: %+v", u)
	}
	if sessionLive(t, d, tok) {
		t.Fatal("session survived reset-mfa")
	}
	if n := len(systemEvents(t, d, account.EventUserResetMFA)); n != 1 {
		t.Fatalf("%d reset_mfa events", n)
	}
}

func TestUsersUnknownUser(t *testing.T) {
	d := newDataDir(t)
	for _, args := range [][]string{
		{"users", "disable", "nobody"},
		{"users", "enable", "nobody"},
		{"users", "reset-mfa", "nobody"},
		{"users", "set-role", "nobody", "admin"},
		{"users", "set-password", "nobody"},
	} {
		_, _, err := run(t, testPassword, append([]string{"--data-dir", d}, args...)...)
		if err == nil || !errors.Is(err, account.ErrNotFound) || !strings.Contains(err.Error(), "nobody") {
			t.Fatalf("%v: %v", args, err)
		}
	}
	if _, _, err := run(t, "", "--data-dir", d, "sessions", "revoke", "--user", "nobody"); err == nil || !strings.Contains(err.Error(), `"nobody"`) {
		t.Fatalf("sessions revoke --user nobody: %v", err)
	}
	if _, _, err := run(t, testPassword, "--data-dir", d, "users", "add", "Not A Name", "--tenant", "default"); err == nil {
		t.Fatal("invalid name accepted")
	}
}

func TestUsersSetupLink(t *testing.T) {
	d := newDataDir(t)
	out, errOut, err := run(t, "", "--data-dir", d, "users", "setup-link")
	if err != nil {
		t.Fatalf("setup-link: %v %s", err, errOut)
	}
	link := strings.TrimSpace(out)
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(link, "https://localhost:8443/.clawhold/setup?token=") || strings.Count(out, "\n") != 1 {
		t.Fatalf("setup-link printed %q", out)
	}
	tok := u.Query().Get("token")
	if tok == "" || strings.Contains(errOut, tok) {
		t.Fatalf("token %q (stderr %q)", tok, errOut)
	}
	if n := len(systemEvents(t, d, account.EventSetupToken)); n != 1 {
		t.Fatalf("%d setup token events", n)
	}
	in, svc, _ := openTest(t, d, nil)
	admin, err := svc.RedeemSetupToken(context.Background(), account.Meta{IP: "192.0.2.1"}, tok, "root-admin", []byte(testPassword))
	in.Close()
	if err != nil || admin.Role != account.RoleAdmin {
		t.Fatalf("redeeming the printed token: %v", err)
	}
	_, _, err = run(t, "", "--data-dir", d, "users", "setup-link")
	if err == nil || !strings.Contains(err.Error(), "an admin already exists") {
		t.Fatalf("setup-link with an admin: %v", err)
	}

	// An admin made with users add also closes setup.
	d2 := newDataDir(t)
	mustRun(t, testPassword, "--data-dir", d2, "users", "add", "boss", "--tenant", "default", "--role", "admin")
	if _, _, err := run(t, "", "--data-dir", d2, "users", "setup-link"); err == nil || !strings.Contains(err.Error(), "an admin already exists") {
		t.Fatalf("setup-link with an added admin: %v", err)
	}
}

func TestSessionsListAndRevoke(t *testing.T) {
	d := newDataDir(t)
	if out := mustRun(t, "", "--data-dir", d, "sessions", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("no sessions: %q", out)
	}
	mustRun(t, testPassword, "--data-dir", d, "users", "add", "alice", "--tenant", "default")
	a1 := newSession(t, d, "alice", "default", "viewer")
	a2 := newSession(t, d, "alice", "default", "viewer")
	s1 := newSession(t, d, "sso-user", "default", "operator") // a single sign-on user: no local account
	tbl := mustRun(t, "", "--data-dir", d, "sessions", "list")
	for _, want := range []string{"ID", "LAST SEEN", "EXPIRES", "alice", "sso-user", "192.0.2.7"} {
		if !strings.Contains(tbl, want) {
			t.Fatalf("sessions list lacks %q:\n%s", want, tbl)
		}
	}
	for _, tok := range []string{a1, a2, s1} {
		if strings.Contains(tbl, tok) {
			t.Fatal("sessions list shows a token")
		}
	}
	var list []struct {
		ID, User, Tenant, Role, IP string
	}
	raw := mustRun(t, "", "--data-dir", d, "sessions", "list", "--json", "--user", "alice")
	if err := json.Unmarshal([]byte(raw), &list); err != nil || len(list) != 2 || list[0].User != "alice" || !session.ValidID(list[0].ID) {
		t.Fatalf("sessions list --user alice --json: %q %v", raw, err)
	}
	if strings.Contains(raw, a1) || strings.Contains(raw, a2) {
		t.Fatal("sessions list --json shows a token")
	}

	// Revoke one by id.
	out := mustRun(t, "", "--data-dir", d, "sessions", "revoke", list[0].ID)
	if !strings.Contains(out, "ended") {
		t.Fatalf("revoke said %q", out)
	}
	if live := btoi(sessionLive(t, d, a1)) + btoi(sessionLive(t, d, a2)); live != 1 {
		t.Fatalf("%d of alice's sessions live after revoking one", live)
	}
	all := mustRun(t, "", "--data-dir", d, "sessions", "list", "--all")
	if !strings.Contains(all, "STATE") || !strings.Contains(all, "revoked (revoked by operator)") {
		t.Fatalf("sessions list --all:\n%s", all)
	}
	if _, _, err := run(t, "", "--data-dir", d, "sessions", "revoke", strings.Repeat("ab", 32)); err == nil || !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("unknown id: %v", err)
	}
	if _, _, err := run(t, "", "--data-dir", d, "sessions", "revoke", "not-an-id"); err == nil || !strings.Contains(err.Error(), "not a session id") {
		t.Fatalf("malformed id: %v", err)
	}
	if _, _, err := run(t, "", "--data-dir", d, "sessions", "revoke"); err == nil {
		t.Fatal("revoke with neither id nor --user")
	}
	if _, _, err := run(t, "", "--data-dir", d, "sessions", "revoke", list[0].ID, "--user", "alice"); err == nil {
		t.Fatal("revoke with both id and --user")
	}

	// Revoke by user, including a single sign-on user with no account.
	out = mustRun(t, "", "--data-dir", d, "sessions", "revoke", "--user", "alice", "--json")
	var res struct {
		N int `json:"sessions_revoked"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.N != 1 {
		t.Fatalf("revoke --user alice: %q %v", out, err)
	}
	if sessionLive(t, d, a1) || sessionLive(t, d, a2) {
		t.Fatal("alice still has a session")
	}
	mustRun(t, "", "--data-dir", d, "sessions", "revoke", "--user", "sso-user")
	if sessionLive(t, d, s1) {
		t.Fatal("sso-user still has a session")
	}
	// A known user with nothing left to revoke is not an error.
	if out := mustRun(t, "", "--data-dir", d, "sessions", "revoke", "--user", "alice"); !strings.Contains(out, "0 session(s)") {
		t.Fatalf("second revoke said %q", out)
	}
	if out := mustRun(t, "", "--data-dir", d, "sessions", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("live sessions left: %s", out)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// The system keyring covers the front door's TOTP secrets: rotate, rewrap
// and retire on the system tenant move them, and TOTP still verifies after
// the old key version is destroyed.
func TestUsersKeysRewrapCoversTOTP(t *testing.T) {
	d := newDataDir(t)
	mustRun(t, testPassword, "--data-dir", d, "users", "add", "alice", "--tenant", "default")
	now := time.Now()
	secret := enrolTOTP(t, d, "alice", now)

	mustRun(t, "", "--data-dir", d, "keys", "rotate", "--tenant", "system")
	var st struct {
		Keyrings []struct {
			Versions []struct {
				Version uint32
				Records int64
			}
		}
	}
	json.Unmarshal([]byte(mustRun(t, "", "--data-dir", d, "keys", "status", "--tenant", "system", "--json")), &st)
	v1 := int64(-1)
	if len(st.Keyrings) == 1 {
		for _, v := range st.Keyrings[0].Versions {
			if v.Version == 1 {
				v1 = v.Records
			}
		}
	}
	if v1 != 1 {
		t.Fatalf("system keyring status does not count the TOTP secret: %+v", st)
	}
	if _, _, err := run(t, "", "--data-dir", d, "keys", "retire", "--tenant", "system", "1"); err == nil {
		t.Fatal("retired a version that still seals a TOTP secret")
	}
	out := mustRun(t, "", "--data-dir", d, "keys", "rewrap", "--tenant", "system")
	if !strings.Contains(out, "system: rewrapped 1 record(s)") {
		t.Fatalf("rewrap: %q", out)
	}
	mustRun(t, "", "--data-dir", d, "keys", "retire", "--tenant", "system", "1")

	later := now.Add(2 * time.Minute)
	in, svc, _ := openTest(t, d, func() time.Time { return later })
	defer in.Close()
	if err := svc.VerifyTOTP(context.Background(), account.Meta{}, "alice", totpCode(t, secret, later)); err != nil {
		t.Fatalf("TOTP after rewrap and retire: %v", err)
	}
}
