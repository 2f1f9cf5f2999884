package backup

import (
	"bytes"
	"context"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// maxManifest bounds what is read of manifest.json.
const maxManifest = 256 << 20

var blobPattern = regexp.MustCompile(`^blobs/[0-9]{6,}$`)

// Verify checks backup id under dir without restoring it: it unwraps the
// data key with root, authenticates the manifest and every chunk of every
// blob, and compares every size and SHA-256. The first problem is returned,
// naming the file; failures that mean modification or damage wrap
// ErrCorrupt.
func Verify(ctx context.Context, root keys.Root, dir, id string) (*Manifest, error) {
	if err := ValidID(id); err != nil {
		return nil, err
	}
	m, _, err := verifyPath(ctx, root, filepath.Join(dir, id), id)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	return m, nil
}

// verifyPath verifies the backup in bdir and returns its manifest and
// the AEAD of its data key.
func verifyPath(ctx context.Context, root keys.Root, bdir, id string) (*Manifest, cipher.AEAD, error) {
	if fi, err := os.Lstat(bdir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no backup %s in %s (see clawhold backup list)", id, filepath.Dir(bdir))
	} else if err != nil {
		return nil, nil, err
	} else if !fi.IsDir() {
		return nil, nil, fmt.Errorf("%w: %s is not a directory", ErrCorrupt, bdir)
	}
	m, a, err := loadManifest(ctx, root, bdir, id)
	if err != nil {
		return nil, nil, err
	}
	if err := checkLayout(bdir, m); err != nil {
		return nil, nil, err
	}
	for _, e := range m.Entries {
		if e.Blob == "" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if err := readBlob(a, bdir, m, e, io.Discard); err != nil {
			return nil, nil, err
		}
	}
	return m, a, nil
}

// readBlob authenticates e's blob and writes its plaintext to w.
func readBlob(a cipher.AEAD, bdir string, m *Manifest, e Entry, w io.Writer) error {
	f, err := os.OpenFile(filepath.Join(bdir, filepath.FromSlash(e.Blob)), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return corrupt(e, "the blob is missing")
	}
	if err != nil {
		return fmt.Errorf("%s (%s): %w", e.Path, e.Blob, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s (%s): %w", e.Path, e.Blob, err)
	}
	if !fi.Mode().IsRegular() {
		return corrupt(e, "the blob is not a regular file")
	}
	if fi.Size() != e.BlobSize {
		return corrupt(e, "the blob has %d bytes, the manifest says %d", fi.Size(), e.BlobSize)
	}
	return openStream(a, m.ID, m.ChunkSize, e, f, w)
}

// readHeader reads manifest.json without any key.
func readHeader(bdir string) (*manifestFile, error) {
	f, err := os.OpenFile(filepath.Join(bdir, manifestName), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing", ErrCorrupt, manifestName)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", manifestName, err)
	}
	if len(data) > maxManifest {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrCorrupt, manifestName, maxManifest)
	}
	var mf manifestFile
	if err := json.Unmarshal(data, &mf); err != nil {
		return nil, fmt.Errorf("%w: %s is not valid JSON", ErrCorrupt, manifestName)
	}
	if mf.Format != Format {
		return nil, fmt.Errorf("%w: %s: unknown format %q (this clawhold reads %s)", ErrCorrupt, manifestName, mf.Format, Format)
	}
	return &mf, nil
}

// loadManifest reads manifest.json, unwraps the data key and authenticates
// the sealed manifest against the plaintext header.
func loadManifest(ctx context.Context, root keys.Root, bdir, id string) (*Manifest, cipher.AEAD, error) {
	mf, err := readHeader(bdir)
	if err != nil {
		return nil, nil, err
	}
	if mf.ID != id {
		return nil, nil, fmt.Errorf("%w: %s names backup %q, not %q", ErrCorrupt, manifestName, mf.ID, id)
	}
	dk, err := root.Unwrap(ctx, mf.WrappedKey, keyAAD(mf.ID, mf.Tenant))
	if err != nil {
		return nil, nil, fmt.Errorf("unwrapping the backup's data key (wrapped by root key %s; configured root key %s): "+
			"restoring needs the same root key or KMS key, and the manifest must be unmodified: %w", mf.RootKeyID, root.ID(), err)
	}
	a, err := newAEAD(dk)
	clear(dk)
	if err != nil {
		return nil, nil, err
	}
	if len(mf.Sealed) < nonceSize+tagSize {
		return nil, nil, fmt.Errorf("%w: %s: the sealed manifest is truncated", ErrCorrupt, manifestName)
	}
	body, err := a.Open(nil, mf.Sealed[:nonceSize], mf.Sealed[nonceSize:], manifestAAD(mf.ID))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %s: the sealed manifest fails authentication", ErrCorrupt, manifestName)
	}
	var m Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: the sealed manifest is not valid JSON", ErrCorrupt, manifestName)
	}
	if !sameHeader(m.Header, mf.Header) {
		return nil, nil, fmt.Errorf("%w: %s: the plaintext header differs from the sealed manifest", ErrCorrupt, manifestName)
	}
	if err := checkEntries(&m); err != nil {
		return nil, nil, err
	}
	return &m, a, nil
}

func sameHeader(a, b Header) bool {
	return a.Format == b.Format && a.ID == b.ID && a.Tenant == b.Tenant && a.Created.Equal(b.Created) &&
		a.ClawholdVersion == b.ClawholdVersion && a.RootKeyID == b.RootKeyID &&
		bytes.Equal(a.WrappedKey, b.WrappedKey) && a.ChunkSize == b.ChunkSize &&
		a.Blobs == b.Blobs && a.BlobBytes == b.BlobBytes
}

// checkEntries rejects a manifest that, though authentic, could not have
// been written by Create: a restore must never be steered outside the
// tenant's directories, whatever the manifest says.
func checkEntries(m *Manifest) error {
	if m.ChunkSize < minChunkSize || m.ChunkSize > maxChunkSize {
		return fmt.Errorf("%w: chunk size %d is out of range", ErrCorrupt, m.ChunkSize)
	}
	if err := store.ValidTenantName(m.Tenant); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	paths, blobs := map[string]bool{}, map[string]bool{}
	var total int64
	hasStore, recs := false, false
	for _, e := range m.Entries {
		bad := func(why string) error { return fmt.Errorf("%w: manifest entry %q: %s", ErrCorrupt, e.Path, why) }
		if paths[e.Path] {
			return bad("listed twice")
		}
		paths[e.Path] = true
		switch e.Kind {
		case KindSQLite, KindFile, KindDir, KindSymlink, KindRecords:
		default:
			return bad("unknown kind " + e.Kind)
		}
		switch {
		case e.Path == StorePath:
			hasStore = hasStore || e.Kind == KindSQLite
		case e.Path == RecordsPath:
			recs = recs || e.Kind == KindRecords
		case !cellPath(e.Path):
			return bad("not a path under home/ or workspace/")
		}
		if e.Kind == KindRecords && e.Path != RecordsPath || e.Path == StorePath && e.Kind != KindSQLite {
			return bad("wrong kind")
		}
		hasBlob := e.Kind != KindDir && e.Kind != KindSymlink
		if hasBlob != (e.Blob != "") {
			return bad("blob presence does not match its kind")
		}
		if hasBlob {
			if !blobPattern.MatchString(e.Blob) || blobs[e.Blob] {
				return bad("bad or repeated blob name")
			}
			blobs[e.Blob] = true
			total += e.BlobSize
		}
	}
	if !hasStore || !recs {
		return fmt.Errorf("%w: the manifest lacks the tenant database or the system records", ErrCorrupt)
	}
	if len(blobs) != m.Blobs || total != m.BlobBytes {
		return fmt.Errorf("%w: the manifest's blob count or size is inconsistent", ErrCorrupt)
	}
	return nil
}

// cellPath reports whether p is home, workspace or a clean relative path
// under one of them.
func cellPath(p string) bool {
	if p != path.Clean(p) || !filepath.IsLocal(filepath.FromSlash(p)) || strings.Contains(p, "\\") {
		return false
	}
	top, _, _ := strings.Cut(p, "/")
	return top == "home" || top == "workspace"
}

// checkLayout rejects files in the backup directory the manifest does not
// name: nothing may be added to a backup unnoticed.
func checkLayout(bdir string, m *Manifest) error {
	want := map[string]bool{}
	for _, e := range m.Entries {
		if e.Blob != "" {
			want[e.Blob] = true
		}
	}
	top, err := os.ReadDir(bdir)
	if err != nil {
		return err
	}
	for _, d := range top {
		if d.Name() != manifestName && d.Name() != blobsDir {
			return fmt.Errorf("%w: unexpected file %s", ErrCorrupt, d.Name())
		}
	}
	blobs, err := os.ReadDir(filepath.Join(bdir, blobsDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, d := range blobs {
		if name := blobsDir + "/" + d.Name(); !want[name] {
			return fmt.Errorf("%w: unexpected file %s", ErrCorrupt, name)
		}
	}
	return nil
}

// Status values of Info.
const (
	StatusComplete = "complete" // every blob is present with its recorded size
	StatusDamaged  = "damaged"
)

// Info describes one backup for List. It comes from the plaintext header
// and the files' sizes, without the key: "complete" is a structural check;
// Verify authenticates.
type Info struct {
	ID              string    `json:"id"`
	Tenant          string    `json:"tenant"`
	Created         time.Time `json:"created"`
	Size            int64     `json:"size"` // bytes on disk
	Files           int       `json:"files"`
	ClawholdVersion string    `json:"clawhold_version,omitempty"`
	RootKeyID       string    `json:"root_key_id,omitempty"`
	Status          string    `json:"status"`
	Problem         string    `json:"problem,omitempty"`
}

// ErrNoBackup is returned by LastGood when a tenant has no complete backup.
var ErrNoBackup = errors.New("no complete backup")

// List returns the backups under dir, oldest first. A missing dir holds
// no backups. Staging and half-deleted directories are not listed.
func List(dir string) ([]Info, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing backups: %w", err)
	}
	var out []Info
	for _, d := range ents {
		if !d.IsDir() || ValidID(d.Name()) != nil {
			continue
		}
		out = append(out, inspect(filepath.Join(dir, d.Name()), d.Name()))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// idTenant and idTime read what an id encodes, for a backup whose
// manifest cannot be read.
func idTenant(id string) string { return id[len("20060102T150405Z-") : len(id)-len("-0a1b2c3d")] }

func idTime(id string) time.Time {
	t, _ := time.Parse("20060102T150405Z", id[:len("20060102T150405Z")])
	return t
}

func inspect(bdir, id string) Info {
	info := Info{ID: id, Tenant: idTenant(id), Created: idTime(id), Status: StatusDamaged}
	filepath.WalkDir(bdir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				info.Size += fi.Size()
			}
		}
		return nil
	})
	mf, err := readHeader(bdir)
	if err != nil {
		info.Problem = err.Error()
		return info
	}
	if mf.ID != id || mf.Tenant != info.Tenant {
		info.Problem = fmt.Sprintf("%s names backup %q of tenant %q", manifestName, mf.ID, mf.Tenant)
		return info
	}
	info.Created, info.ClawholdVersion, info.RootKeyID, info.Files = mf.Created, mf.ClawholdVersion, mf.RootKeyID, mf.Blobs
	blobs, err := os.ReadDir(filepath.Join(bdir, blobsDir))
	if err != nil {
		info.Problem = "blobs: " + err.Error()
		return info
	}
	var n int
	var size int64
	for _, d := range blobs {
		fi, err := d.Info()
		if err != nil || !fi.Mode().IsRegular() {
			info.Problem = "blobs/" + d.Name() + " is not a regular file"
			return info
		}
		n++
		size += fi.Size()
	}
	if n != mf.Blobs || size != mf.BlobBytes {
		info.Problem = fmt.Sprintf("%d blobs of %d bytes, the manifest says %d of %d", n, size, mf.Blobs, mf.BlobBytes)
		return info
	}
	info.Status = StatusComplete
	return info
}

// LastGood returns when tenant's newest complete backup under dir was
// taken, or ErrNoBackup. It reads no key, so it suits a periodic audit;
// verify authenticates.
func LastGood(dir, tenant string) (time.Time, error) {
	infos, err := List(dir)
	if err != nil {
		return time.Time{}, err
	}
	for i := len(infos) - 1; i >= 0; i-- {
		if infos[i].Tenant == tenant && infos[i].Status == StatusComplete {
			return infos[i].Created, nil
		}
	}
	return time.Time{}, fmt.Errorf("tenant %s: %w", tenant, ErrNoBackup)
}
