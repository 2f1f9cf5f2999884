package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	_ "modernc.org/sqlite" // registers driver "sqlite"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/store"
)

// Options configure Create, Restore and RunSchedule. Zero values take
// defaults.
type Options struct {
	// Dir is the backup directory (default: backup.dir, else
	// <data dir>/backups).
	Dir string
	// Version is the clawhold version recorded in manifests.
	Version string
	// ChunkSize is the plaintext size of a chunk (default 1 MiB).
	ChunkSize int
	Now       func() time.Time
	Rand      io.Reader
	Logger    *slog.Logger
	// Spawn, when set, takes RunOnce's backups in another process
	// (clawhold up: it serves the cells' encrypted state, and the process
	// that snapshots through that mount must not be its server).
	Spawn func(ctx context.Context, tenant string) error
}

func (o Options) withDefaults(in *instance.Instance) Options {
	if o.Dir == "" && in != nil {
		o.Dir = in.Config.BackupDir(in.DataDir)
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Logger == nil {
		if in != nil && in.Logger != nil {
			o.Logger = in.Logger
		} else {
			o.Logger = slog.New(slog.DiscardHandler)
		}
	}
	return o
}

// sqliteMagic starts every SQLite database file.
var sqliteMagic = []byte("SQLite format 3\x00")

// Create backs up tenant into a new directory under o.Dir and returns its
// manifest. The backup is written to a staging directory, verified in full
// and only then renamed into place, so a crash never leaves a partial backup
// that List reports as complete.
func Create(ctx context.Context, in *instance.Instance, tenant string, o Options) (m *Manifest, err error) {
	o = o.withDefaults(in)
	if o.ChunkSize < minChunkSize || o.ChunkSize > maxChunkSize {
		return nil, fmt.Errorf("backup: chunk size %d is outside [%d, %d]", o.ChunkSize, minChunkSize, maxChunkSize)
	}
	if err := checkSQLite(in); err != nil {
		return nil, err
	}
	if tenant == instance.SystemTenant {
		return nil, errors.New("backup: the system tenant is not backed up on its own: back up each tenant")
	}
	if err := in.CheckTenant(ctx, tenant); err != nil {
		return nil, err
	}
	if err := ensureDir(o.Dir); err != nil {
		return nil, err
	}

	created := o.Now().UTC().Truncate(time.Millisecond)
	suffix := make([]byte, 4)
	if _, err := io.ReadFull(o.Rand, suffix); err != nil {
		return nil, fmt.Errorf("backup: reading randomness: %w", err)
	}
	id := created.Format("20060102T150405Z") + "-" + tenant + "-" + hex.EncodeToString(suffix)
	staging := filepath.Join(o.Dir, stagingPref+id)
	if err := os.Mkdir(staging, 0o700); err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	for _, d := range []string{blobsDir, ".scratch"} {
		if err := os.Mkdir(filepath.Join(staging, d), 0o700); err != nil {
			return nil, fmt.Errorf("backup %s: %w", id, err)
		}
	}

	dk := make([]byte, keySize)
	defer clear(dk)
	if _, err := io.ReadFull(o.Rand, dk); err != nil {
		return nil, fmt.Errorf("backup %s: generating the data key: %w", id, err)
	}
	wrapped, err := in.Root.Wrap(ctx, dk, keyAAD(id, tenant))
	if err != nil {
		return nil, fmt.Errorf("backup %s: wrapping the data key with root key %s: %w", id, in.Root.ID(), err)
	}
	a, err := newAEAD(dk)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(staging)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	defer root.Close()
	w := &writer{ctx: ctx, id: id, root: root, scratch: filepath.Join(staging, ".scratch"), aead: a, o: o}

	// The store database: an online snapshot, consistent under writers.
	dbPath := filepath.Join(in.DataDir, "tenants", tenant+".db")
	fi, err := os.Lstat(dbPath)
	if err != nil {
		return nil, fmt.Errorf("backup %s: tenant database: %w", id, err)
	}
	if err := w.addSQLite(StorePath, dbPath, fi); err != nil {
		return nil, err
	}

	recs, err := readRecords(ctx, in, tenant)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	data, err := json.Marshal(recs)
	recs.wipe()
	if err != nil {
		return nil, fmt.Errorf("backup %s: encoding records: %w", id, err)
	}
	err = w.addReader(Entry{Path: RecordsPath, Kind: KindRecords, Mode: 0o600, ModTime: created}, bytes.NewReader(data))
	clear(data)
	if err != nil {
		return nil, err
	}

	layout := cell.NewLayout(in.DataDir, tenant)
	if err := w.addHome(ctx, in, tenant, layout); err != nil {
		return nil, err
	}
	if err := w.addTree(layout.Workspace, "workspace"); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(filepath.Join(staging, ".scratch")); err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}

	m = &Manifest{
		Header: Header{
			Format: Format, ID: id, Tenant: tenant, Created: created,
			ClawholdVersion: o.Version, RootKeyID: in.Root.ID(), WrappedKey: wrapped,
			ChunkSize: o.ChunkSize, Blobs: w.blobs, BlobBytes: w.blobBytes,
		},
		Entries: w.entries,
	}
	if err := writeManifest(staging, a, o.Rand, m); err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	if err := syncDir(staging); err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	// Read everything back through the root key before the backup counts.
	if _, _, err := verifyPath(ctx, in.Root, staging, id); err != nil {
		return nil, fmt.Errorf("backup %s: verifying what was written: %w", id, err)
	}
	if err := os.Rename(staging, filepath.Join(o.Dir, id)); err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	if err := syncDir(o.Dir); err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	o.Logger.Info("backup created", "id", id, "tenant", tenant, "entries", len(m.Entries), "bytes", w.blobBytes)
	return m, nil
}

// checkSQLite refuses stores other than SQLite: a PostgreSQL schema is
// backed up with the database's own tools.
func checkSQLite(in *instance.Instance) error {
	if _, ok := in.Store.(*store.SQLiteStore); !ok {
		return errors.New("backup: only the sqlite store is supported; back up a postgres store with pg_dump (one schema per tenant)")
	}
	return nil
}

// ensureDir creates the backup directory 0700, or tightens an existing one.
func ensureDir(dir string) error {
	if !filepath.IsAbs(dir) {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return fmt.Errorf("backup directory %s: %w", dir, err)
		}
		dir = abs
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating backup directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("backup directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("backup directory %s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("backup directory: %w", err)
		}
	}
	return nil
}

// writer adds entries to a staging directory.
type writer struct {
	ctx context.Context
	id  string
	// root is the staging directory. Blobs are created relative to it, by
	// descriptor, so that a walk inside a running cell's mount namespace
	// (where the staging directory's path does not resolve) still writes
	// them there.
	root *os.Root
	// scratch is the directory addSQLite snapshots into before sealing:
	// the staging directory's, or one inside an encrypted cell's home
	// while that is walked from the cell's mount namespace.
	scratch   string
	aead      cipher.AEAD
	o         Options
	entries   []Entry
	blobs     int
	blobBytes int64
	// raw copies databases and their -wal files as they are: the tree is
	// quiescent (a stopped cell) and must not be opened with SQLite.
	raw bool
}

// addReader seals r as the blob of e and records e.
func (w *writer) addReader(e Entry, r io.Reader) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	w.blobs++
	e.Blob = fmt.Sprintf("%s/%06d", blobsDir, w.blobs)
	f, err := w.root.OpenFile(e.Blob, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup %s: %w", w.id, err)
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	s, err := sealStream(w.aead, w.o.Rand, w.id, e.Path, w.o.ChunkSize, r, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("backup %s: %s: %w", w.id, e.Path, err)
	}
	e.Size, e.SHA256, e.BlobSize, e.BlobSHA256 = s.size, s.sha256, s.blobSize, s.blobSum
	w.blobBytes += s.blobSize
	w.entries = append(w.entries, e)
	return nil
}

// addSQLite snapshots the database at src with VACUUM INTO through a
// read-only connection: the copy is a consistent image of one committed
// state (WAL content included) however busy the writers are, which a byte
// copy of a live database and its -wal is not.
func (w *writer) addSQLite(name, src string, fi fs.FileInfo) error {
	tmp := filepath.Join(w.scratch, fmt.Sprintf("%06d.db", w.blobs+1))
	defer os.Remove(tmp)
	f, err := snapshotSQLite(w.ctx, src, tmp)
	if err != nil {
		return fmt.Errorf("backup %s: snapshot of %s: %w", w.id, name, err)
	}
	defer f.Close()
	return w.addReader(Entry{Path: name, Kind: KindSQLite, Mode: uint32(fi.Mode().Perm()), ModTime: fi.ModTime()}, f)
}

// sqliteDSN is a file: URI so that any byte of path is escaped.
func sqliteDSN(path string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}

// snapshotSQLite writes a snapshot of src into the new file dst and
// returns dst open at its start. Every path is opened by the calling
// goroutine (one connection, taken and used here; no temporary files, no
// helper threads), which addLiveHome relies on.
func snapshotSQLite(ctx context.Context, src, dst string) (*os.File, error) {
	// VACUUM INTO wants a new or empty file; create it private first. The
	// snapshot is read back through this descriptor: were the name
	// replaced meanwhile (it may lie in a directory the cell can write),
	// what is sealed is still only what SQLite wrote into this file.
	f, err := os.OpenFile(dst, os.O_RDONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, err
	}
	if err := vacuumInto(ctx, src, dst); err != nil {
		f.Close()
		return nil, err
	}
	head := make([]byte, len(sqliteMagic))
	if _, err := f.ReadAt(head, 0); err != nil || !bytes.Equal(head, sqliteMagic) {
		f.Close()
		return nil, fmt.Errorf("the snapshot did not arrive in %s", dst)
	}
	return f, nil
}

func vacuumInto(ctx context.Context, src, dst string) error {
	db, err := sql.Open("sqlite", sqliteDSN(src, url.Values{
		"mode":          {"ro"},
		"_busy_timeout": {"10000"},
		"cache":         {"private"},
		// No temporary files (which would go to the /tmp of whichever
		// mount namespace this runs in) and no sorter threads.
		"_pragma": {"temp_store(memory)", "threads(0)"},
	}))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// database/sql opens a connection in the goroutine that asks for it
	// when none is idle: this one.
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		conn.Close()
		return err
	}
	if err := conn.Close(); err != nil {
		return err
	}
	return db.Close()
}

// addTree adds root and everything under it as prefix/...: directories,
// symlinks (as links), SQLite databases (as snapshots, without their -wal,
// -shm and -journal files) and other regular files (as copies). A missing
// root (a cell that never started) adds nothing.
func (w *writer) addTree(root, prefix string) error {
	fi, err := os.Lstat(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup %s: %w", w.id, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("backup %s: %s is not a directory", w.id, root)
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p != root {
				return nil // removed while we walked
			}
			return fmt.Errorf("backup %s: walking %s: %w", w.id, p, err)
		}
		if err := w.ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := prefix
		if rel != "." {
			name = prefix + "/" + filepath.ToSlash(rel)
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("backup %s: %w", w.id, err)
		}
		e := Entry{Path: name, Mode: uint32(info.Mode().Perm()), ModTime: info.ModTime()}
		switch {
		case info.IsDir() && prefix == "home" && rel != "." && filepath.Dir(rel) == "." && isScratch(info):
			return fs.SkipDir
		case info.IsDir():
			e.Kind = KindDir
			w.entries = append(w.entries, e)
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("backup %s: %w", w.id, err)
			}
			e.Kind, e.Target = KindSymlink, target
			w.entries = append(w.entries, e)
		case info.Mode().IsRegular():
			if isSidecar(p) && !(w.raw && !strings.HasSuffix(p, "-shm")) {
				return nil
			}
			return w.addFile(e, p)
		default:
			w.o.Logger.Debug("backup: skipping a file that is neither regular, a directory nor a symlink", "path", name, "mode", info.Mode().String())
		}
		return nil
	})
}

// addFile adds the regular file at p: a snapshot if it is a SQLite
// database, else a copy.
func (w *writer) addFile(e Entry, p string) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("backup %s: %w", w.id, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup %s: %w", w.id, err)
	}
	if !fi.Mode().IsRegular() {
		return nil // replaced between the walk and the open
	}
	head := make([]byte, len(sqliteMagic))
	n, _ := io.ReadFull(f, head)
	if n == len(head) && bytes.Equal(head, sqliteMagic) && !w.raw {
		f.Close()
		return w.addSQLite(e.Path, p, fi)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup %s: %w", w.id, err)
	}
	e.Kind, e.Mode, e.ModTime = KindFile, uint32(fi.Mode().Perm()), fi.ModTime()
	return w.addReader(e, f)
}

// isSidecar reports whether p is the -wal, -shm or -journal file of a
// SQLite database, which the database's snapshot already covers.
func isSidecar(p string) bool {
	for _, suffix := range []string{"-wal", "-shm", "-journal"} {
		if base, ok := strings.CutSuffix(p, suffix); ok && hasSQLiteMagic(base) {
			return true
		}
	}
	return false
}

func hasSQLiteMagic(p string) bool {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return false
	}
	head := make([]byte, len(sqliteMagic))
	n, _ := io.ReadFull(f, head)
	return n == len(head) && bytes.Equal(head, sqliteMagic)
}

// writeManifest seals m under a and writes manifest.json.
func writeManifest(dir string, a cipher.AEAD, random io.Reader, m *Manifest) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding the manifest: %w", err)
	}
	sealed := make([]byte, nonceSize, nonceSize+len(body)+tagSize)
	if _, err := io.ReadFull(random, sealed); err != nil {
		return fmt.Errorf("reading a nonce: %w", err)
	}
	sealed = a.Seal(sealed, sealed[:nonceSize], body, manifestAAD(m.ID))
	out, err := json.MarshalIndent(manifestFile{Header: m.Header, Sealed: sealed}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the manifest: %w", err)
	}
	return writeFileSync(filepath.Join(dir, manifestName), append(out, '\n'))
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}
