package backup

import (
	"bytes"
	"context"
	"database/sql"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/instance"
)

// openEncrypted opens an instance whose cells keep their state in cellfs.
func openEncrypted(t *testing.T, dataDir, backupDir string, create bool) *instance.Instance {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "clawhold.yaml")
	os.WriteFile(cfg, []byte("backup:\n  dir: "+backupDir+"\ncells:\n  encrypted_state: true\n"), 0o600)
	in, err := instance.Open(context.Background(), instance.Options{DataDir: dataDir, ConfigPath: cfg, CreateRootKey: create})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

// TestBackupEncryptedCell: a stopped cell whose state is encrypted is
// backed up through a private mount of its volume (files and databases as
// they are: nothing writes) and restored into a new encrypted volume on a
// fresh data dir, readable there, with no plaintext on disk at any point.
func TestBackupEncryptedCell(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root for FUSE and CI=true forbids skipping")
		}
		t.Skip("needs root: mounts cellfs")
	}
	ctx := context.Background()
	base := t.TempDir()
	dataDir, backupDir := filepath.Join(base, "data"), filepath.Join(base, "backups")
	in := openEncrypted(t, dataDir, backupDir, true)
	if err := in.EnsureTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	const canary = "CANARY-ENCRYPTED-CELL-9e1f"

	// A database made on an ordinary directory (no SQLite on a mount this
	// process serves), then put into the volume with plain file writes.
	plainDB := filepath.Join(t.TempDir(), "state.sqlite")
	db, err := sql.Open("sqlite", "file:"+plainDB)
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(`CREATE TABLE t (v TEXT)`)
	for range 200 {
		db.Exec(`INSERT INTO t VALUES (?)`, canary)
	}
	db.Close()
	dbBytes, _ := os.ReadFile(plainDB)

	l := cell.NewLayout(dataDir, "acme")
	mnt, unmount, err := mountState(ctx, in, "acme", l)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(mnt, ".openclaw"), 0o700)
	os.WriteFile(filepath.Join(mnt, ".openclaw", "state.sqlite"), dbBytes, 0o600)
	os.WriteFile(filepath.Join(mnt, "notes.txt"), []byte(canary), 0o600)
	unmount()

	m, err := Create(ctx, in, "acme", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, in.Root, backupDir, m.ID); err != nil {
		t.Fatal(err)
	}
	var sawDB, sawNotes bool
	for _, e := range m.Entries {
		sawDB = sawDB || e.Path == "home/.openclaw/state.sqlite"
		sawNotes = sawNotes || e.Path == "home/notes.txt"
	}
	if !sawDB || !sawNotes {
		t.Fatalf("the backup misses the encrypted home's files: %+v", m.Entries)
	}
	noPlaintext(t, backupDir, canary)

	fresh := filepath.Join(base, "fresh")
	os.MkdirAll(fresh, 0o700)
	key, _ := os.ReadFile(filepath.Join(dataDir, "root.key"))
	os.WriteFile(filepath.Join(fresh, "root.key"), key, 0o600)
	in2 := openEncrypted(t, fresh, backupDir, false)
	if _, err := Restore(ctx, in2, m.ID, Options{}, false); err != nil {
		t.Fatal(err)
	}
	l2 := cell.NewLayout(fresh, "acme")
	noPlaintext(t, l2.CipherHome, canary)
	if ents, _ := os.ReadDir(l2.Home); len(ents) != 0 {
		t.Fatalf("the restored home is in plaintext at %s", l2.Home)
	}
	mnt2, unmount2, err := mountState(ctx, in2, "acme", l2)
	if err != nil {
		t.Fatal(err)
	}
	notes, _ := os.ReadFile(filepath.Join(mnt2, "notes.txt"))
	restoredDB, _ := os.ReadFile(filepath.Join(mnt2, ".openclaw", "state.sqlite"))
	unmount2()
	if string(notes) != canary || !bytes.Equal(restoredDB, dbBytes) {
		t.Fatalf("restored through the new volume: notes %q, database %d bytes (want %d, equal)", notes, len(restoredDB), len(dbBytes))
	}
}

// noPlaintext fails if any file under root contains s.
func noPlaintext(t *testing.T, root, s string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(s)) {
			t.Errorf("plaintext %q in %s", s, p)
		}
		return nil
	})
}
