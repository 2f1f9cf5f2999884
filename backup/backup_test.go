package backup

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/frontdoor/account"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/store"
)

const (
	canarySecret = "CANARY-SECRET-7f3a9c"
	canaryEvent  = "CANARY-EVENT-51be02"
	canaryCellDB = "CANARY-CELLDB-c0ffee"
	canaryJSON   = "CANARY-JSON-d15ea5e"
	canaryBig    = "CANARY-BIG-0ddba11"
	canaryPath   = "canary-path-name.json"
	chunk        = 4096
)

// openInstance opens (creating with a root key when create) the
// installation at dataDir, with backups under backupDir.
func openInstance(t *testing.T, dataDir, backupDir string, create bool) *instance.Instance {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "clawhold.yaml")
	if err := os.WriteFile(cfg, []byte("backup:\n  dir: "+backupDir+"\ncells:\n  encrypted_state: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in, err := instance.Open(context.Background(), instance.Options{DataDir: dataDir, ConfigPath: cfg, CreateRootKey: create})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

func accounts(t *testing.T, in *instance.Instance) *account.Service {
	t.Helper()
	ctx := context.Background()
	sys, err := in.DB(ctx, instance.SystemTenant)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := in.Keyring(ctx, instance.SystemTenant)
	if err != nil {
		t.Fatal(err)
	}
	s, err := account.New(ctx, sys, kr, account.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sqliteOpen(t *testing.T, path string, q url.Values) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", sqliteDSN(path, q))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// fixture is a tenant with secrets, events, a user with a pending TOTP
// enrolment and a cell whose WAL database is being written.
type fixture struct {
	in         *instance.Instance
	dataDir    string
	backupDir  string
	totpSecret string
	bigFile    []byte
	// writer state
	stop      chan struct{}
	wg        sync.WaitGroup
	committed atomic.Int64 // rows committed so far in the cell database
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	base := t.TempDir()
	f := &fixture{dataDir: filepath.Join(base, "data"), backupDir: filepath.Join(base, "backups"), stop: make(chan struct{})}
	f.in = openInstance(t, f.dataDir, f.backupDir, true)
	if err := f.in.EnsureTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	sec, err := f.in.Secrets(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sec.Set(ctx, "test", "models/openai/apiKey", []byte(canarySecret)); err != nil {
		t.Fatal(err)
	}
	db, err := f.in.DB(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(ctx, func(tx *store.Tx) error {
		for i := range 50 {
			if _, err := tx.Exec(ctx, `INSERT INTO events (ts, type, actor, subject, detail) VALUES (?, 'test', 'test', 'x', ?)`, i, canaryEvent); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	acc := accounts(t, f.in)
	pw := []byte("correct horse battery staple 42")
	if _, err := acc.Create(ctx, account.Meta{Actor: "test"}, account.NewUser{Name: "alice", Tenant: "acme", Role: account.Role("operator"), Password: pw}); err != nil {
		t.Fatal(err)
	}
	en, err := acc.EnrollTOTP(ctx, account.Meta{Actor: "test"}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	f.totpSecret = en.Secret

	l := cell.NewLayout(f.dataDir, "acme")
	state := l.StateDir()
	for _, d := range []string{state, l.Workspace, filepath.Join(l.Home, "logs")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(state, canaryPath), []byte(`{"note":"`+canaryJSON+`"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(canaryPath, filepath.Join(state, "current.json")); err != nil {
		t.Fatal(err)
	}
	f.bigFile = bytes.Repeat([]byte(canaryBig+" lorem ipsum\n"), 3*chunk/20)
	if err := os.WriteFile(filepath.Join(l.Workspace, "big.txt"), f.bigFile, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.Workspace, "empty"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// The cell database, in WAL mode, written by a goroutine throughout.
	cdb := sqliteOpen(t, filepath.Join(state, "memory.sqlite"), url.Values{"_pragma": {"journal_mode(wal)", "busy_timeout(10000)"}})
	cdb.SetMaxOpenConns(1)
	if _, err := cdb.Exec(`CREATE TABLE msgs (id INTEGER PRIMARY KEY, body TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	insert := func() error {
		_, err := cdb.Exec(`INSERT INTO msgs (body) VALUES (?)`, canaryCellDB+strings.Repeat("x", 200))
		if err == nil {
			f.committed.Add(1)
		}
		return err
	}
	for range 200 {
		if err := insert(); err != nil {
			t.Fatal(err)
		}
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			select {
			case <-f.stop:
				return
			default:
			}
			if err := insert(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	t.Cleanup(f.stopWriter)
	return f
}

func (f *fixture) stopWriter() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.wg.Wait()
}

func opts() Options { return Options{ChunkSize: chunk, Version: "test"} }

func TestBackupCreateVerifyRestore(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	before := f.committed.Load()
	m, err := Create(ctx, f.in, "acme", opts())
	if err != nil {
		t.Fatal(err)
	}
	f.stopWriter()
	if after := f.committed.Load(); after <= before {
		t.Logf("the writer committed no rows during create (%d)", after)
	}
	if _, err := Verify(ctx, f.in.Root, f.backupDir, m.ID); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, e := range m.Entries {
		kinds[e.Path] = e.Kind
	}
	for p, want := range map[string]string{
		StorePath: KindSQLite, RecordsPath: KindRecords,
		"home/.openclaw/memory.sqlite": KindSQLite, "home/.openclaw/" + canaryPath: KindFile,
		"home/.openclaw/current.json": KindSymlink, "workspace/big.txt": KindFile, "home/logs": KindDir,
	} {
		if kinds[p] != want {
			t.Errorf("entry %s: kind %q, want %q (entries %v)", p, kinds[p], want, kinds)
		}
	}
	for p := range kinds {
		if strings.HasSuffix(p, "-wal") || strings.HasSuffix(p, "-shm") {
			t.Errorf("backup holds %s, a live database's side file", p)
		}
	}

	// Nothing readable in the backup: no canary, no file name.
	err = filepath.WalkDir(f.backupDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() && fi.Mode().Perm() != 0o700 || !d.IsDir() && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", p, fi.Mode().Perm())
		}
		if d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, c := range []string{canarySecret, canaryEvent, canaryCellDB, canaryJSON, canaryBig, canaryPath, "alice", "argon2id", "SQLite format 3"} {
			if bytes.Contains(data, []byte(c)) {
				t.Errorf("%s contains %q in plaintext", p, c)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	list, err := List(f.backupDir)
	if err != nil || len(list) != 1 || list[0].Status != StatusComplete || list[0].Tenant != "acme" || list[0].ID != m.ID {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if last, err := LastGood(f.backupDir, "acme"); err != nil || !last.Equal(m.Created) {
		t.Fatalf("LastGood = %v, %v; want %v", last, err, m.Created)
	}
	if _, err := LastGood(f.backupDir, "other"); !errors.Is(err, ErrNoBackup) {
		t.Fatalf("LastGood(other) = %v, want ErrNoBackup", err)
	}

	// A fresh data directory with only the root key copied over.
	fresh := filepath.Join(t.TempDir(), "fresh")
	if err := os.Mkdir(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(filepath.Join(f.dataDir, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fresh, "root.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	in2 := openInstance(t, fresh, f.backupDir, false)
	if _, err := Restore(ctx, in2, m.ID, opts(), false); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, in2, fresh, f, before)

	// A second restore refuses, then replaces with force.
	if _, err := Restore(ctx, in2, m.ID, opts(), false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over an existing tenant = %v, want a refusal naming --force", err)
	}
	if _, err := Restore(ctx, in2, m.ID, opts(), true); err != nil {
		t.Fatalf("restore --force: %v", err)
	}
	checkRestored(t, in2, fresh, f, before)
}

func checkRestored(t *testing.T, in *instance.Instance, dataDir string, f *fixture, before int64) {
	t.Helper()
	ctx := context.Background()
	sec, err := in.Secrets(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	v, _, err := sec.Get(ctx, "test", "models/openai/apiKey")
	if err != nil || string(v) != canarySecret {
		t.Fatalf("restored secret = %q, %v", v, err)
	}
	tenants, err := in.Tenants(ctx)
	if err != nil || !slices.Contains(tenants, "acme") {
		t.Fatalf("tenants = %v, %v", tenants, err)
	}
	for _, p := range []string{filepath.Join(dataDir, "tenants", "acme.db"), filepath.Join(cell.NewLayout(dataDir, "acme").StateDir(), "memory.sqlite")} {
		db := sqliteOpen(t, p, url.Values{"mode": {"ro"}})
		var res string
		if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil || res != "ok" {
			t.Fatalf("%s: integrity_check = %q, %v", p, res, err)
		}
		db.Close()
	}
	db := sqliteOpen(t, filepath.Join(cell.NewLayout(dataDir, "acme").StateDir(), "memory.sqlite"), url.Values{"mode": {"ro"}})
	var n, maxID int64
	if err := db.QueryRow(`SELECT COUNT(*), MAX(id) FROM msgs`).Scan(&n, &maxID); err != nil {
		t.Fatal(err)
	}
	if n < before || n != maxID {
		t.Fatalf("restored cell database has %d rows (max id %d), want at least the %d committed before the backup, without gaps", n, maxID, before)
	}
	db.Close()
	var events int
	tdb, err := in.DB(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := tdb.View(ctx, func(tx *store.Tx) error {
		return tx.QueryRow(ctx, `SELECT COUNT(*) FROM events WHERE detail = ?`, canaryEvent).Scan(&events)
	}); err != nil || events != 50 {
		t.Fatalf("restored events = %d, %v", events, err)
	}

	l := cell.NewLayout(dataDir, "acme")
	if b, err := os.ReadFile(filepath.Join(l.StateDir(), canaryPath)); err != nil || !strings.Contains(string(b), canaryJSON) {
		t.Fatalf("restored json = %q, %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(l.StateDir(), canaryPath)); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("restored json mode = %v, %v", fi, err)
	}
	if target, err := os.Readlink(filepath.Join(l.StateDir(), "current.json")); err != nil || target != canaryPath {
		t.Fatalf("restored symlink = %q, %v", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(l.Workspace, "big.txt")); err != nil || !bytes.Equal(b, f.bigFile) {
		t.Fatalf("restored big file differs (%d bytes, %v)", len(b), err)
	}
	if b, err := os.ReadFile(filepath.Join(l.Workspace, "empty")); err != nil || len(b) != 0 {
		t.Fatalf("restored empty file = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(l.Home, "logs")); err != nil || !fi.IsDir() {
		t.Fatalf("restored logs dir: %v", err)
	}
	if os.Geteuid() == 0 {
		ids := cell.IDsFor("acme")
		for _, p := range []string{l.Home, filepath.Join(l.StateDir(), "memory.sqlite"), filepath.Join(l.StateDir(), "current.json"), filepath.Join(l.Workspace, "big.txt")} {
			fi, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != ids.UID || int(st.Gid) != ids.GID {
				t.Errorf("%s is owned by %d:%d, want the cell's %d:%d", p, st.Uid, st.Gid, ids.UID, ids.GID)
			}
		}
	}
	if ents, _ := os.ReadDir(l.Dir); len(ents) != 2 {
		t.Fatalf("cell dir holds %v, want only home and workspace (no staging left)", ents)
	}

	// The user, with its TOTP secret sealed again by this installation's
	// system keyring: confirming enrolment with a code from the original
	// secret works.
	acc := accounts(t, in)
	u, err := acc.Get(ctx, "alice")
	if err != nil || u.Tenant != "acme" {
		t.Fatalf("restored user = %+v, %v", u, err)
	}
	code, err := totp.GenerateCodeCustom(f.totpSecret, time.Now(), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := acc.ConfirmTOTP(ctx, account.Meta{Actor: "test", IP: "192.0.2.1"}, "alice", code); err != nil {
		t.Fatalf("confirming TOTP with the original secret after restore: %v", err)
	}
	// Undo the confirmation so a second check can confirm again.
	if err := acc.ResetMFA(ctx, account.Meta{Actor: "test"}, "alice"); err != nil {
		t.Fatal(err)
	}
}

// copyTree copies a backup directory for a corruption case.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestBackupDetectsCorruption(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	m, err := Create(ctx, f.in, "acme", opts())
	if err != nil {
		t.Fatal(err)
	}
	f.stopWriter()
	blobOf := func(path string) string {
		for _, e := range m.Entries {
			if e.Path == path {
				return e.Blob
			}
		}
		t.Fatalf("no entry %s", path)
		return ""
	}
	big := blobOf("workspace/big.txt")
	full := nonceSize + chunk + tagSize
	editFile := func(rel string, fn func([]byte) []byte) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, filepath.FromSlash(rel))
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, fn(b), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	editManifest := func(fn func(map[string]any)) func(t *testing.T, dir string) {
		return editFile(manifestName, func(b []byte) []byte {
			var v map[string]any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			fn(v)
			out, _ := json.Marshal(v)
			return out
		})
	}
	cases := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		want   []string // substrings of the error
	}{
		{"flipped byte", editFile(big, func(b []byte) []byte { b[full+100] ^= 1; return b }),
			[]string{"workspace/big.txt", "chunk 2 of", "fails authentication"}},
		{"truncated blob", editFile(big, func(b []byte) []byte { return b[:len(b)-100] }),
			[]string{"workspace/big.txt", "bytes, the manifest says"}},
		{"dropped last chunk and manifest size", editFile(big, func(b []byte) []byte { return b[:2*full] }),
			[]string{"workspace/big.txt"}},
		{"swapped chunks", editFile(big, func(b []byte) []byte {
			out := slices.Clone(b)
			copy(out[:full], b[full:2*full])
			copy(out[full:2*full], b[:full])
			return out
		}), []string{"workspace/big.txt", "chunk 1 of", "fails authentication"}},
		{"swapped blobs", func(t *testing.T, dir string) {
			a, b := filepath.Join(dir, blobOf("workspace/empty")), filepath.Join(dir, blobOf("home/.openclaw/"+canaryPath))
			ab, _ := os.ReadFile(a)
			bb, _ := os.ReadFile(b)
			os.WriteFile(a, bb, 0o600)
			os.WriteFile(b, ab, 0o600)
		}, []string{"bytes, the manifest says"}},
		{"missing blob", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, big)) }, []string{"workspace/big.txt", "missing"}},
		{"extra file", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, blobsDir, "999999"), []byte("x"), 0o600)
		}, []string{"unexpected file blobs/999999"}},
		{"edited manifest header", editManifest(func(v map[string]any) { v["clawhold_version"] = "evil" }),
			[]string{"manifest.json", "header differs"}},
		{"edited sealed manifest", editManifest(func(v map[string]any) {
			s := v["sealed"].(string)
			v["sealed"] = s[:20] + string(rune('A'+(s[20]-'A'+1)%26)) + s[21:]
		}), []string{"manifest.json", "fails authentication"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bdir := filepath.Join(t.TempDir(), "backups")
			copyTree(t, f.backupDir, bdir)
			c.mutate(t, filepath.Join(bdir, m.ID))
			_, err := Verify(ctx, f.in.Root, bdir, m.ID)
			if err == nil || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Verify = %v, want ErrCorrupt", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Verify error %q does not contain %q", err, w)
				}
			}
			// Restore refuses and writes nothing.
			fresh := filepath.Join(t.TempDir(), "fresh")
			os.Mkdir(fresh, 0o700)
			key, _ := os.ReadFile(filepath.Join(f.dataDir, "root.key"))
			os.WriteFile(filepath.Join(fresh, "root.key"), key, 0o600)
			in2 := openInstance(t, fresh, bdir, false)
			if _, err := Restore(ctx, in2, m.ID, opts(), false); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "nothing was written") {
				t.Fatalf("Restore = %v, want ErrCorrupt before writing", err)
			}
			if ok, _ := in2.Store.TenantExists(ctx, "acme"); ok {
				t.Error("a failed restore created the tenant database")
			}
			if _, err := os.Lstat(filepath.Join(fresh, "cells")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a failed restore created cell files: %v", err)
			}
		})
	}

	// A different root key cannot open the backup.
	other := filepath.Join(t.TempDir(), "other")
	in3 := openInstance(t, other, f.backupDir, true)
	if _, err := Verify(ctx, in3.Root, f.backupDir, m.ID); err == nil || !strings.Contains(err.Error(), "root key") {
		t.Fatalf("Verify with another root key = %v", err)
	}
	// List sees a missing blob without the key.
	os.Remove(filepath.Join(f.backupDir, m.ID, big))
	if list, _ := List(f.backupDir); len(list) != 1 || list[0].Status != StatusDamaged {
		t.Fatalf("List after removing a blob = %+v", list)
	}
}

func TestBackupPrune(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	bdir := filepath.Join(base, "backups")
	in := openInstance(t, filepath.Join(base, "data"), bdir, true)
	for _, tn := range []string{"a", "b"} {
		if err := in.EnsureTenant(ctx, tn); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := range 4 {
		o := opts()
		o.Now = func() time.Time { return t0.Add(time.Duration(i) * time.Hour) }
		m, err := Create(ctx, in, "a", o)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	o := opts()
	o.Now = func() time.Time { return t0 }
	mb, err := Create(ctx, in, "b", o)
	if err != nil {
		t.Fatal(err)
	}
	// A crashed create's leftovers are neither listed nor kept.
	stale := filepath.Join(bdir, stagingPref+"20250101T000000Z-a-00000000")
	os.Mkdir(stale, 0o700)
	old := t0.Add(-48 * time.Hour)
	os.Chtimes(stale, old, old)

	remaining := func() []string {
		list, err := List(bdir)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range list {
			out = append(out, i.ID)
		}
		return out
	}
	now := t0.Add(10 * time.Hour)
	cases := []struct {
		name string
		r    Retention
		want []string
	}{
		{"keep 3", Retention{Keep: 3}, []string{mb.ID, ids[1], ids[2], ids[3]}},
		{"keep 0 no age: nothing", Retention{}, []string{mb.ID, ids[1], ids[2], ids[3]}},
		{"max age 8.5h", Retention{MaxAge: 8*time.Hour + 30*time.Minute}, []string{mb.ID, ids[2], ids[3]}},
		{"max age 1h keeps the newest", Retention{MaxAge: time.Hour}, []string{mb.ID, ids[3]}},
	}
	for _, c := range cases {
		if _, err := Prune(bdir, c.r, now); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := remaining(); !slices.Equal(got, c.want) {
			t.Fatalf("%s: remaining %v, want %v", c.name, got, c.want)
		}
	}
	if _, err := os.Lstat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale staging directory survived prune: %v", err)
	}
	if last, err := LastGood(bdir, "a"); err != nil || !last.Equal(t0.Add(3*time.Hour)) {
		t.Errorf("LastGood(a) = %v, %v", last, err)
	}
}

func TestBackupIDs(t *testing.T) {
	for id, ok := range map[string]bool{
		"20260102T150405Z-acme-0a1b2c3d":      true,
		"20260102T150405Z-a-b-c-0a1b2c3d":     true,
		"../20260102T150405Z-acme-0a1b2c3d":   false,
		"20260102T150405Z-acme-0a1b2c3d/..":   false,
		"20260102T150405Z-Acme-0a1b2c3d":      false,
		"":                                    false,
		stagingPref + "20260102T150405Z-a-00": false,
	} {
		if err := ValidID(id); (err == nil) != ok {
			t.Errorf("ValidID(%q) = %v", id, err)
		}
	}
	if got := idTenant("20260102T150405Z-a-b-c-0a1b2c3d"); got != "a-b-c" {
		t.Errorf("idTenant = %q", got)
	}
}

func TestBackupChunkFraming(t *testing.T) {
	key := bytes.Repeat([]byte{7}, keySize)
	a, err := newAEAD(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			plain := bytes.Repeat([]byte{'p'}, size)
			var blob bytes.Buffer
			s, err := sealStream(a, randReader{}, "id", "home/f", chunk, bytes.NewReader(plain), &blob)
			if err != nil {
				t.Fatal(err)
			}
			if s.blobSize != sealedSize(int64(size), chunk) || int64(blob.Len()) != s.blobSize {
				t.Fatalf("blob size %d, want %d", blob.Len(), sealedSize(int64(size), chunk))
			}
			e := Entry{Path: "home/f", Blob: "blobs/000001", Size: s.size, SHA256: s.sha256, BlobSize: s.blobSize, BlobSHA256: s.blobSum}
			var out bytes.Buffer
			if err := openStream(a, "id", chunk, e, bytes.NewReader(blob.Bytes()), &out); err != nil || !bytes.Equal(out.Bytes(), plain) {
				t.Fatalf("openStream = %v", err)
			}
			if n := chunkCount(int64(size), chunk); n > 1 {
				// Dropping the last chunk is caught by its last flag even
				// where the sizes and hashes were made to match.
				cut := blob.Bytes()[:(n-1)*(nonceSize+chunk+tagSize)]
				te := e
				te.Size, te.BlobSize = (n-1)*chunk, int64(len(cut))
				if err := openStream(a, "id", chunk, te, bytes.NewReader(cut), &bytes.Buffer{}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "fails authentication") {
					t.Errorf("opening a blob without its last chunk = %v", err)
				}
			}
			for _, wrong := range []Entry{{Path: "home/g"}, {Path: e.Path}} {
				we := e
				we.Path = wrong.Path
				id := "id"
				if wrong.Path == e.Path {
					id = "other"
				}
				if err := openStream(a, id, chunk, we, bytes.NewReader(blob.Bytes()), &bytes.Buffer{}); !errors.Is(err, ErrCorrupt) {
					t.Errorf("opening under another path or backup = %v", err)
				}
			}
		})
	}
}

type randReader struct{}

func (randReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i * 31)
	}
	return len(p), nil
}

// TestBackupSnapshotIdleWAL snapshots a WAL database no one has open (no
// -wal or -shm file), which a read-only connection must still read.
func TestBackupSnapshotIdleWAL(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "idle.sqlite")
	db := sqliteOpen(t, src, url.Values{"_pragma": {"journal_mode(wal)"}})
	if _, err := db.Exec(`CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, s := range []string{"-wal", "-shm"} {
		if _, err := os.Lstat(src + s); err == nil {
			t.Logf("%s still exists after close", s)
		}
	}
	dst := filepath.Join(dir, "snap.db")
	f, err := snapshotSQLite(context.Background(), src, dst)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	var v string
	if err := sqliteOpen(t, dst, url.Values{"mode": {"ro"}}).QueryRow(`SELECT v FROM t`).Scan(&v); err != nil || v != "x" {
		t.Fatalf("snapshot = %q, %v", v, err)
	}
}
