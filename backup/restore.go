package backup

import (
	"bytes"
	"context"
	"crypto/cipher"
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
	"syscall"
	"time"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/store"
)

// Restore writes backup id (under o.Dir) into in: the tenant's database,
// its registration and users in the system database, and its cell's home
// and workspace, owned by the cell's uid (cell.IDsFor), so the cell starts
// with its history.
//
// The whole backup is verified before anything is written, and everything
// is first written beside its destination and renamed into place. An
// existing tenant (database, registration, users or cell files) is
// refused unless force, which replaces it. clawhold up must not be running
// on in's data directory: it keeps the tenant's database open.
func Restore(ctx context.Context, in *instance.Instance, id string, o Options, force bool) (m *Manifest, err error) {
	o = o.withDefaults(in)
	if err := checkSQLite(in); err != nil {
		return nil, err
	}
	if err := ValidID(id); err != nil {
		return nil, err
	}
	bdir := filepath.Join(o.Dir, id)
	m, a, err := verifyPath(ctx, in.Root, bdir, id)
	if err != nil {
		return nil, fmt.Errorf("restore %s: verifying the backup (nothing was written): %w", id, err)
	}
	tenant := m.Tenant
	fail := func(err error) (*Manifest, error) {
		return nil, fmt.Errorf("restore %s of tenant %s: %w", id, tenant, err)
	}

	recs, err := loadRecords(a, bdir, m)
	if err != nil {
		return fail(err)
	}
	defer recs.wipe()
	if recs.Tenant.Name != tenant {
		return fail(fmt.Errorf("%w: the records are of tenant %q", ErrCorrupt, recs.Tenant.Name))
	}
	for _, u := range recs.Users {
		if u.Tenant != tenant {
			return fail(fmt.Errorf("%w: user %s is of tenant %q", ErrCorrupt, u.Name, u.Tenant))
		}
	}

	layout := cell.NewLayout(in.DataDir, tenant)
	existing, err := whatExists(ctx, in, tenant, layout, recs)
	if err != nil {
		return fail(err)
	}
	if len(existing) > 0 && !force {
		return fail(fmt.Errorf("the tenant exists here (%s): pass --force to replace it", strings.Join(existing, ", ")))
	}

	// Stage: the database beside its destination, the cell files in a
	// private directory inside the cell's.
	dbPath := filepath.Join(in.DataDir, "tenants", tenant+".db")
	tmp, err := stageDatabase(ctx, a, bdir, m, dbPath)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if tmp != "" {
			os.Remove(tmp)
		}
	}()
	if err := os.MkdirAll(layout.Dir, 0o700); err != nil {
		return fail(err)
	}
	staging, err := os.MkdirTemp(layout.Dir, ".restore-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(staging)
	if err := stageCell(a, bdir, m, staging, cell.IDsFor(tenant)); err != nil {
		return fail(err)
	}

	// Commit: the database, then the system records, then the cell.
	if force {
		// RemoveTenant also forgets the instance's cached keyring of the
		// replaced database; the registration is written again below.
		if ok, _ := in.Store.TenantExists(ctx, tenant); ok {
			err = in.RemoveTenant(ctx, tenant)
		} else {
			err = in.Store.DeleteTenant(ctx, tenant)
		}
		if err != nil {
			return fail(err)
		}
		err = os.Rename(tmp, dbPath)
	} else {
		// Link does not replace: a tenant created since the check wins.
		err = os.Link(tmp, dbPath)
	}
	if err != nil {
		return fail(fmt.Errorf("placing the tenant database: %w", err))
	}
	if err := syncDir(filepath.Dir(dbPath)); err != nil {
		return fail(err)
	}
	if err := writeRecords(ctx, in, recs, o.Now()); err != nil {
		return fail(fmt.Errorf("the tenant database is in place but its registration and users are not (run the restore again with --force): %w", err))
	}
	if in.Config.Cells.EncryptedState {
		// The home goes into a fresh encrypted volume, under the volume
		// key the restored tenant database carries.
		if err := restoreEncryptedHome(ctx, in, tenant, layout, filepath.Join(staging, "home"), force); err != nil {
			return fail(fmt.Errorf("placing the cell's encrypted home: %w", err))
		}
	}
	for _, t := range []struct{ name, dst string }{{"home", layout.Home}, {"workspace", layout.Workspace}} {
		src := filepath.Join(staging, t.name)
		if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) || (t.name == "home" && in.Config.Cells.EncryptedState) {
			continue
		}
		if force {
			err = os.RemoveAll(t.dst)
		} else {
			err = os.Remove(t.dst) // only ever empty here (checked above)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(err)
		}
		if err := os.Rename(src, t.dst); err != nil {
			return fail(fmt.Errorf("placing the cell's %s: %w", t.name, err))
		}
	}
	if err := syncDir(layout.Dir); err != nil {
		return fail(err)
	}
	o.Logger.Info("backup restored", "id", id, "tenant", tenant, "users", len(recs.Users))
	return m, nil
}

// loadRecords decrypts the system records of a verified backup.
func loadRecords(a cipher.AEAD, bdir string, m *Manifest) (*records, error) {
	i := slices.IndexFunc(m.Entries, func(e Entry) bool { return e.Path == RecordsPath })
	var buf bytes.Buffer
	defer func() { clear(buf.Bytes()) }()
	if err := readBlob(a, bdir, m, m.Entries[i], &buf); err != nil {
		return nil, err
	}
	var r records
	if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("%w: %s is not valid JSON", ErrCorrupt, RecordsPath)
	}
	return &r, nil
}

// whatExists lists what of tenant is already in in.
func whatExists(ctx context.Context, in *instance.Instance, tenant string, layout cell.Layout, recs *records) ([]string, error) {
	var out []string
	if ok, err := in.Store.TenantExists(ctx, tenant); err != nil {
		return nil, err
	} else if ok {
		out = append(out, "database")
	}
	sys, err := in.DB(ctx, instance.SystemTenant)
	if err != nil {
		return nil, err
	}
	err = sys.View(ctx, func(tx *store.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM tenants WHERE name = ?`, tenant).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			out = append(out, "registration")
		}
		for _, u := range recs.Users {
			var owner string
			err := tx.QueryRow(ctx, `SELECT tenant FROM users WHERE name = ?`, u.Name).Scan(&owner)
			switch {
			case errors.Is(err, sql.ErrNoRows):
			case err != nil:
				return err
			case owner != tenant:
				// Never taken over, with or without force.
				return fmt.Errorf("user %s exists here in tenant %s: remove or rename it first", u.Name, owner)
			default:
				out = append(out, "user "+u.Name)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checking the system database: %w", err)
	}
	for _, d := range []string{layout.Home, layout.Workspace} {
		ents, err := os.ReadDir(d)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if len(ents) > 0 {
			out = append(out, "cell "+filepath.Base(d))
		}
	}
	return out, nil
}

// stageDatabase writes the tenant database snapshot to a private file
// beside dbPath and checks its integrity.
func stageDatabase(ctx context.Context, a cipher.AEAD, bdir string, m *Manifest, dbPath string) (string, error) {
	i := slices.IndexFunc(m.Entries, func(e Entry) bool { return e.Path == StorePath })
	f, err := os.CreateTemp(filepath.Dir(dbPath), "."+filepath.Base(dbPath)+".restore-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	err = readBlob(a, bdir, m, m.Entries[i], f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = integrityCheck(ctx, name)
	}
	if err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// integrityCheck runs PRAGMA integrity_check on the database at path.
func integrityCheck(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", sqliteDSN(path, url.Values{"mode": {"ro"}}))
	if err != nil {
		return err
	}
	defer db.Close()
	var res string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&res); err != nil {
		return fmt.Errorf("integrity check of %s: %w", filepath.Base(path), err)
	}
	if res != "ok" {
		return fmt.Errorf("integrity check of %s: %s", filepath.Base(path), res)
	}
	return nil
}

// stageCell writes the cell entries under staging, owned by ids. Symlinks
// are created last, so no file is ever written through one; directories
// get their modes and times last, deepest first.
func stageCell(a cipher.AEAD, bdir string, m *Manifest, staging string, ids cell.IDs) error {
	var links, dirs []Entry
	for _, e := range m.Entries {
		if !cellPath(e.Path) {
			continue
		}
		dst := filepath.Join(staging, filepath.FromSlash(e.Path))
		switch e.Kind {
		case KindDir:
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
			dirs = append(dirs, e)
		case KindSymlink:
			links = append(links, e)
		case KindFile, KindSQLite:
			f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
			if err != nil {
				return err
			}
			err = readBlob(a, bdir, m, e, f)
			if err == nil {
				err = f.Sync()
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = finish(dst, e, ids)
			}
			if err != nil {
				return err
			}
		}
	}
	for _, e := range links {
		dst := filepath.Join(staging, filepath.FromSlash(e.Path))
		if err := os.Symlink(e.Target, dst); err != nil {
			return err
		}
		if err := lchown(dst, ids); err != nil {
			return err
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := finish(filepath.Join(staging, filepath.FromSlash(dirs[i].Path)), dirs[i], ids); err != nil {
			return err
		}
	}
	return nil
}

// finish gives a restored file or directory its owner, mode and time.
func finish(path string, e Entry, ids cell.IDs) error {
	if err := lchown(path, ids); err != nil {
		return err
	}
	if err := os.Chmod(path, fs.FileMode(e.Mode).Perm()); err != nil {
		return err
	}
	if !e.ModTime.IsZero() {
		if err := os.Chtimes(path, time.Time{}, e.ModTime); err != nil {
			return err
		}
	}
	return nil
}

// lchown sets the cell's owner; an unprivileged clawhold's cells run as
// its own uid, which the files already have.
func lchown(path string, ids cell.IDs) error {
	if err := os.Lchown(path, ids.UID, ids.GID); err != nil && !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// writeRecords registers the tenant and writes its users in one system
// transaction, sealing TOTP secrets with this installation's system
// keyring.
func writeRecords(ctx context.Context, in *instance.Instance, r *records, now time.Time) error {
	kr, err := in.Keyring(ctx, instance.SystemTenant)
	if err != nil {
		return err
	}
	created := r.Tenant.CreatedAt
	if !r.Tenant.Registered {
		created = now.UnixMilli()
	}
	return kr.Update(ctx, func(tx *store.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO tenants (name, created_at) VALUES (?, ?)
			ON CONFLICT (name) DO UPDATE SET created_at = excluded.created_at`, r.Tenant.Name, created); err != nil {
			return fmt.Errorf("registering the tenant: %w", err)
		}
		for _, u := range r.Users {
			// Cascades to the user's TOTP and recovery codes.
			if _, err := tx.Exec(ctx, `DELETE FROM users WHERE name = ? AND tenant = ?`, u.Name, u.Tenant); err != nil {
				return fmt.Errorf("replacing user %s: %w", u.Name, err)
			}
			disabled := 0
			if u.Disabled {
				disabled = 1
			}
			if _, err := tx.Exec(ctx, `INSERT INTO users (name, tenant, role, disabled, password_hash, created_at, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, u.Name, u.Tenant, u.Role, disabled, u.PasswordHash, u.CreatedAt, u.UpdatedAt); err != nil {
				return fmt.Errorf("writing user %s: %w", u.Name, err)
			}
			if t := u.TOTP; t != nil {
				sealed, version, err := kr.SealTx(ctx, tx, totpContext(u.Name), t.Secret)
				if err != nil {
					return fmt.Errorf("sealing the TOTP secret of user %s: %w", u.Name, err)
				}
				if _, err := tx.Exec(ctx, `INSERT INTO user_totp (user_name, secret, key_version, confirmed_at, last_step, created_at)
					VALUES (?, ?, ?, ?, ?, ?)`, u.Name, sealed, int64(version), t.ConfirmedAt, t.LastStep, t.CreatedAt); err != nil {
					return fmt.Errorf("writing the TOTP enrolment of user %s: %w", u.Name, err)
				}
			}
			for _, c := range u.RecoveryCodes {
				if _, err := tx.Exec(ctx, `INSERT INTO user_recovery_codes (user_name, code_hash, created_at, used_at)
					VALUES (?, ?, ?, ?)`, u.Name, c.CodeHash, c.CreatedAt, c.UsedAt); err != nil {
					return fmt.Errorf("writing the recovery codes of user %s: %w", u.Name, err)
				}
			}
		}
		return nil
	})
}
