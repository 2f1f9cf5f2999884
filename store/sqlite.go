package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	_ "modernc.org/sqlite" // registers driver "sqlite"
)

// sqliteReaders is the size of each database's reader pool.
const sqliteReaders = 4

// SQLiteStore keeps each database in its own SQLite file: dir/system.db and
// dir/tenants/<name>.db.
type SQLiteStore struct {
	dir        string // absolute
	tenantsDir string

	mu      sync.Mutex // guards the fields below, and serializes opening and deleting
	closed  bool
	system  *DB
	tenants map[string]*DB
}

// OpenSQLite returns a store keeping its files in dir, which must exist (the
// caller creates it 0700). It creates dir/tenants with mode 0700. Databases
// are opened on first use.
func OpenSQLite(dir string) (*SQLiteStore, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store %q: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening sqlite store: %s is not a directory", abs)
	}
	tenantsDir := filepath.Join(abs, "tenants")
	if err := os.Mkdir(tenantsDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	// Tighten it whether we just created it (umask) or found it looser.
	if err := os.Chmod(tenantsDir, 0o700); err != nil {
		return nil, fmt.Errorf("opening sqlite store: %w", err)
	}
	return &SQLiteStore{
		dir:        abs,
		tenantsDir: tenantsDir,
		tenants:    make(map[string]*DB),
	}, nil
}

// System returns the system database, dir/system.db.
func (s *SQLiteStore) System(ctx context.Context) (*DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if s.system != nil {
		return s.system, nil
	}
	db, err := openSQLiteDB(ctx, filepath.Join(s.dir, "system.db"), "system", kindSystem)
	if err != nil {
		return nil, err
	}
	s.system = db
	return db, nil
}

// Tenant returns the tenant's database, dir/tenants/<name>.db, creating it
// if needed.
func (s *SQLiteStore) Tenant(ctx context.Context, name string) (*DB, error) {
	if err := ValidTenantName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errClosed
	}
	if db := s.tenants[name]; db != nil {
		return db, nil
	}
	db, err := openSQLiteDB(ctx, s.tenantPath(name), name, kindTenant)
	if err != nil {
		return nil, err
	}
	s.tenants[name] = db
	return db, nil
}

// TenantExists reports whether the tenant's database file exists.
func (s *SQLiteStore) TenantExists(ctx context.Context, name string) (bool, error) {
	if err := ValidTenantName(name); err != nil {
		return false, err
	}
	_, err := os.Lstat(s.tenantPath(name))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("checking tenant %q: %w", name, err)
}

// DeleteTenant closes the tenant's database and removes its file and the
// -wal, -shm and -journal files beside it. A *DB for the tenant obtained
// earlier fails from then on.
func (s *SQLiteStore) DeleteTenant(ctx context.Context, name string) error {
	if err := ValidTenantName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	if db := s.tenants[name]; db != nil {
		delete(s.tenants, name)
		if err := db.close(); err != nil {
			return fmt.Errorf("deleting tenant %q: %w", name, err)
		}
	}
	// The main file goes last so that an interrupted delete still shows the
	// tenant as existing and can be retried.
	p := s.tenantPath(name)
	for _, f := range []string{p + "-wal", p + "-shm", p + "-journal", p} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("deleting tenant %q: %w", name, err)
		}
	}
	return nil
}

// Close closes every open database. The store is unusable afterwards.
func (s *SQLiteStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	errs := closeDBs(&s.system, s.tenants)
	return errors.Join(errs...)
}

// tenantPath returns the file of a tenant whose name is valid.
func (s *SQLiteStore) tenantPath(name string) string {
	return filepath.Join(s.tenantsDir, name+".db")
}

// openSQLiteDB opens (creating if needed) and migrates the database at path.
func openSQLiteDB(ctx context.Context, path, name string, kind dbKind) (_ *DB, err error) {
	if err := createPrivateFile(path); err != nil {
		return nil, fmt.Errorf("opening %s database: %w", name, err)
	}

	// The single writer: one connection, so writers queue in the pool, and
	// BEGIN IMMEDIATE, so a transaction takes the write lock up front (where
	// busy_timeout applies) rather than failing with SQLITE_BUSY when it
	// first writes. synchronous=FULL because this is key material.
	rw, err := sql.Open("sqlite", sqliteDSN(path, url.Values{
		"_txlock":       {"immediate"},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
	}))
	if err != nil {
		return nil, fmt.Errorf("opening %s database: %w", name, err)
	}
	rw.SetMaxOpenConns(1)
	rw.SetMaxIdleConns(1)
	db := &DB{name: name, dialect: SQLite, rw: rw, ro: rw}
	defer func() {
		if err != nil {
			db.close()
		}
	}()
	// Connect now: the writer's first connection switches the file to WAL
	// before any reader opens it.
	var mode string
	if err := rw.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return nil, fmt.Errorf("opening %s database: %w", name, err)
	}
	// Readers beside the writer rely on WAL; refuse to run without it (e.g.
	// on a file system without shared memory support).
	if mode != "wal" {
		return nil, fmt.Errorf("opening %s database: journal_mode is %q, want \"wal\"", name, mode)
	}

	ro, err := sql.Open("sqlite", sqliteDSN(path, url.Values{"_query_only": {"1"}}))
	if err != nil {
		return nil, fmt.Errorf("opening %s database: %w", name, err)
	}
	ro.SetMaxOpenConns(sqliteReaders)
	ro.SetMaxIdleConns(sqliteReaders)
	db.ro = ro

	if err := migrate(ctx, db, kind, path); err != nil {
		return nil, err
	}
	return db, nil
}

// sqliteDSN returns a modernc.org/sqlite DSN for path with the settings every
// connection shares plus extra.
func sqliteDSN(path string, extra url.Values) string {
	q := url.Values{
		"_busy_timeout": {"10000"},
		"_foreign_keys": {"1"},
		"_dqs":          {"0"}, // a mistyped "identifier" is an error, not a string
		"_defensive":    {"1"}, // no SQL that can deliberately corrupt the file
		"cache":         {"private"},
	}
	for k, v := range extra {
		q[k] = v
	}
	// A file: URI so that any byte in the path is escaped, not parsed.
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// createPrivateFile makes sure path exists as a regular file that only its
// owner can read, creating it 0600 before SQLite first opens it, so the
// database never exists with a looser mode. SQLite gives the -wal and -shm
// files the database file's mode.
func createPrivateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		return f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (mode %v)", path, fi.Mode())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		slog.Warn("store: tightening database file mode", "path", path, "mode", fi.Mode().Perm())
		if err := os.Chmod(path, 0o600); err != nil {
			return err
		}
	}
	return nil
}
