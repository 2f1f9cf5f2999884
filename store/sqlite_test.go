package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestSQLiteFileModes(t *testing.T) {
	// With umask 0 nothing is masked off, so every mode checked below is
	// the one the store chose, not the environment's.
	old := syscall.Umask(0)
	defer syscall.Umask(old)

	dir := t.TempDir()
	s := openTestSQLite(t, dir)
	ctx := t.Context()
	sys, err := s.System(ctx)
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, sys, "x")
	putSecret(t, mustTenant(t, s, "acme"), "y")

	tests := []struct {
		path string
		want os.FileMode
	}{
		{"tenants", os.ModeDir | 0o700},
		{"system.db", 0o600},
		{"system.db-wal", 0o600},
		{"system.db-shm", 0o600},
		{"tenants/acme.db", 0o600},
		{"tenants/acme.db-wal", 0o600},
		{"tenants/acme.db-shm", 0o600},
	}
	for _, tt := range tests {
		fi, err := os.Stat(filepath.Join(dir, tt.path))
		if err != nil {
			t.Errorf("%s: %v", tt.path, err)
			continue
		}
		if got := fi.Mode() & (os.ModeDir | os.ModePerm); got != tt.want {
			t.Errorf("%s: mode %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestSQLiteTightensLooseModes(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tenants"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "tenants"), 0o755); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "tenants", "acme.db")
	if err := os.WriteFile(loose, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o644)

	s := openTestSQLite(t, dir)
	mustTenant(t, s, "acme")
	for path, want := range map[string]os.FileMode{"tenants": 0o700, "tenants/acme.db": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
}

func TestSQLiteRefusesSymlinkedDatabase(t *testing.T) {
	dir := t.TempDir()
	s := openTestSQLite(t, dir)
	target := filepath.Join(t.TempDir(), "elsewhere.db")
	if err := os.Symlink(target, filepath.Join(dir, "tenants", "acme.db")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tenant(t.Context(), "acme"); err == nil {
		t.Fatalf("Tenant opened a database through a symlink")
	}
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("symlink target was created: %v", err)
	}
}

func TestSQLiteWAL(t *testing.T) {
	s := openTestSQLite(t, t.TempDir())
	ctx := t.Context()
	db := mustTenant(t, s, "acme")
	for name, pool := range map[string]func(context.Context, func(*Tx) error) error{"Update": db.Update, "View": db.View} {
		var mode string
		if err := pool(ctx, func(tx *Tx) error { return tx.QueryRow(ctx, "PRAGMA journal_mode").Scan(&mode) }); err != nil {
			t.Fatal(err)
		}
		if mode != "wal" {
			t.Errorf("%s: journal_mode = %q, want wal", name, mode)
		}
	}
	var sync, fk int
	db.Update(ctx, func(tx *Tx) error {
		if err := tx.QueryRow(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "PRAGMA foreign_keys").Scan(&fk)
	})
	if sync != 2 { // FULL
		t.Errorf("writer synchronous = %d, want 2 (FULL)", sync)
	}
	if fk != 1 {
		t.Errorf("writer foreign_keys = %d, want 1", fk)
	}
}

// Readers use their own pool: a View completes while an Update holds the
// writer, and sees the last committed state.
func TestSQLiteViewDoesNotWaitForWriter(t *testing.T) {
	s := openTestSQLite(t, t.TempDir())
	ctx := t.Context()
	db := mustTenant(t, s, "acme")
	putSecret(t, db, "committed")

	inTx := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.Update(ctx, func(tx *Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO secrets (name, version, ciphertext, key_version, created_at, updated_at) VALUES ('pending', 1, x'00', 1, 0, 0)`)
			close(inTx)
			<-release
			return err
		})
	}()
	<-inTx
	got := make(chan []string, 1)
	go func() { got <- secretNames(t, db) }()
	select {
	case names := <-got:
		if !slices.Equal(names, []string{"committed"}) {
			t.Errorf("View during Update saw %q, want [committed]", names)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("View blocked behind an open Update")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSQLiteOneFilePerTenant(t *testing.T) {
	dir := t.TempDir()
	s := openTestSQLite(t, dir)
	ctx := t.Context()
	if _, err := s.System(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"alpha", "beta", "gamma-1"} {
		putSecret(t, mustTenant(t, s, name), name)
	}
	if err := s.DeleteTenant(ctx, "beta"); err != nil {
		t.Fatalf("DeleteTenant: %v", err)
	}

	list := func(d string) []string {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}
	if got, want := list(filepath.Join(dir, "tenants")), []string{
		"alpha.db", "alpha.db-shm", "alpha.db-wal",
		"gamma-1.db", "gamma-1.db-shm", "gamma-1.db-wal",
	}; !slices.Equal(got, want) {
		t.Errorf("tenants dir after deleting beta = %q, want %q", got, want)
	}
	if got, want := list(dir), []string{"system.db", "system.db-shm", "system.db-wal", "tenants"}; !slices.Equal(got, want) {
		t.Errorf("store dir = %q, want %q", got, want)
	}
	// Each remaining tenant's file holds its own data.
	for _, name := range []string{"alpha", "gamma-1"} {
		if got := secretNames(t, mustTenant(t, s, name)); !slices.Equal(got, []string{name}) {
			t.Errorf("%s: secrets %q", name, got)
		}
	}
}

func TestSQLiteInvalidNamesTouchNoFiles(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "store")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	s := openTestSQLite(t, dir)
	for _, name := range []string{"../x", "../../store/system", "a/b"} {
		s.Tenant(t.Context(), name)
	}
	var found []string
	filepath.Walk(parent, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			found = append(found, strings.TrimPrefix(p, parent))
		}
		return nil
	})
	if len(found) != 0 {
		t.Errorf("invalid tenant names created files: %q", found)
	}
}

func TestOpenSQLiteNeedsDir(t *testing.T) {
	if _, err := OpenSQLite(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Errorf("OpenSQLite on a missing dir succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := OpenSQLite(f); err == nil {
		t.Errorf("OpenSQLite on a file succeeded")
	}
}

// Many goroutines in two stores over the same files (as two processes
// would be) do read-modify-write increments. With deferred transactions the
// read-then-write upgrade fails with SQLITE_BUSY at once, whatever
// busy_timeout says; BEGIN IMMEDIATE makes them queue. Every increment must
// succeed and none may be lost.
func TestSQLiteConcurrentUpdates(t *testing.T) {
	dir := t.TempDir()
	stores := []*SQLiteStore{openTestSQLite(t, dir), openTestSQLite(t, dir)}
	ctx := t.Context()
	dbs := []*DB{mustTenant(t, stores[0], "acme"), mustTenant(t, stores[1], "acme")}
	err := dbs[0].Update(ctx, func(tx *Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO secrets (name, version, ciphertext, key_version, created_at, updated_at) VALUES ('counter', 0, x'00', 1, 0, 0)`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	const goroutines, perGoroutine = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, 2*goroutines*perGoroutine)
	for g := range goroutines {
		db := dbs[g%2]
		wg.Go(func() {
			for range perGoroutine {
				errs <- db.Update(ctx, func(tx *Tx) error {
					var v int
					if err := tx.QueryRow(ctx, `SELECT version FROM secrets WHERE name = 'counter'`).Scan(&v); err != nil {
						return fmt.Errorf("read: %w", err)
					}
					_, err := tx.Exec(ctx, `UPDATE secrets SET version = ? WHERE name = 'counter'`, v+1)
					if err != nil {
						return fmt.Errorf("write: %w", err)
					}
					return nil
				})
			}
		})
		// Readers alongside, as the server would have.
		wg.Go(func() {
			for range perGoroutine {
				errs <- db.View(ctx, func(tx *Tx) error {
					var v int
					return tx.QueryRow(ctx, `SELECT version FROM secrets WHERE name = 'counter'`).Scan(&v)
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent transaction failed: %v", err)
		}
	}
	var v int
	dbs[1].View(ctx, func(tx *Tx) error {
		return tx.QueryRow(ctx, `SELECT version FROM secrets WHERE name = 'counter'`).Scan(&v)
	})
	if v != goroutines*perGoroutine {
		t.Errorf("counter = %d, want %d (lost updates)", v, goroutines*perGoroutine)
	}
}
