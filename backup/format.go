// Package backup takes, lists, verifies, restores and prunes encrypted,
// verifiable backups of one clawhold tenant: its store database, its
// registration and users in the system database, and its OpenClaw cell's
// home and workspace. See docs/backups.md.
//
// Each backup is a directory <dir>/<id> (0700) holding manifest.json and
// blobs/NNNNNN (0600), one blob per backed-up file. A backup has its own
// random 256-bit data key. Blobs are the file's plaintext in chunks, each
// sealed with AES-256-GCM under that key with a random nonce and the
// additional data
//
//	"clawhold/backup/v1/chunk" ‖ LP(backup id) ‖ LP(path) ‖ uint64 index ‖ last flag
//
// so a chunk moved to another file, position or backup, a dropped trailing
// chunk and a swapped chunk all fail authentication. The data key is
// wrapped by the root key (keys.Root: the local key file or the KMS), not
// by a keyring: keyring material lives in databases that are themselves
// inside the backup, or in a system database that a fresh installation
// does not have. With the same root key (or access to the same KMS key) a
// backup opens on any data directory.
//
// manifest.json carries a plaintext header (enough for list and for
// unwrapping the key) and the full manifest sealed under the data key;
// verify checks that the two agree, so any edit of either is detected.
package backup

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Format names this package's on-disk format in every manifest.
const Format = "clawhold-backup/v1"

// DefaultChunkSize is the plaintext size of every chunk but a file's last.
const DefaultChunkSize = 1 << 20

// Chunk sizes a manifest may declare: small enough to bound memory, large
// enough to bound the per-chunk overhead.
const (
	minChunkSize = 1 << 10
	maxChunkSize = 16 << 20
)

const (
	keySize   = 32 // AES-256
	nonceSize = 12 // GCM standard nonce
	tagSize   = 16

	manifestName = "manifest.json"
	blobsDir     = "blobs"
	stagingPref  = ".staging-"
	deletingPref = ".deleting-"
)

// ErrCorrupt marks every failure that means the backup was modified or
// damaged (as opposed to an I/O or key access problem).
var ErrCorrupt = errors.New("backup is damaged or was modified")

// Entry kinds.
const (
	KindSQLite  = "sqlite"  // a consistent SQLite snapshot (VACUUM INTO)
	KindRecords = "records" // the tenant's system records (registry row, users), JSON
	KindFile    = "file"    // a regular file, copied
	KindDir     = "dir"     // a directory
	KindSymlink = "symlink" // a symbolic link, recorded, never followed
)

// Paths of the entries that are not cell files.
const (
	StorePath   = "store/tenant.db"
	RecordsPath = "system/records.json"
)

// Entry is one file of a backup.
type Entry struct {
	Path    string    `json:"path"` // slash-separated: store/..., system/..., home/..., workspace/...
	Kind    string    `json:"kind"`
	Mode    uint32    `json:"mode"` // permission bits
	ModTime time.Time `json:"mtime,omitzero"`
	Target  string    `json:"target,omitempty"` // symlinks
	// Blob is the sealed content, relative to the backup directory; empty
	// for directories and symlinks.
	Blob       string `json:"blob,omitempty"`
	Size       int64  `json:"size"`                  // plaintext bytes
	SHA256     string `json:"sha256,omitempty"`      // of the plaintext
	BlobSize   int64  `json:"blob_size,omitempty"`   // sealed bytes
	BlobSHA256 string `json:"blob_sha256,omitempty"` // of the sealed blob
}

// Header is the plaintext part of manifest.json: what list shows and what
// is needed to unwrap the data key. Verify checks it against the sealed
// copy.
type Header struct {
	Format          string    `json:"format"`
	ID              string    `json:"id"`
	Tenant          string    `json:"tenant"`
	Created         time.Time `json:"created"`
	ClawholdVersion string    `json:"clawhold_version"`
	// RootKeyID names the root key that wrapped the data key (never key
	// material). Restore needs that key, or the same KMS key.
	RootKeyID  string `json:"root_key_id"`
	WrappedKey []byte `json:"wrapped_key"`
	ChunkSize  int    `json:"chunk_size"`
	// Blobs and BlobBytes let list see a missing or truncated blob
	// without the key.
	Blobs     int   `json:"blobs"`
	BlobBytes int64 `json:"blob_bytes"`
}

// Manifest is the sealed, authenticated description of a backup.
type Manifest struct {
	Header
	Entries []Entry `json:"entries"`
}

// manifestFile is manifest.json.
type manifestFile struct {
	Header
	// Sealed is nonce ‖ AES-256-GCM(data key, JSON(Manifest)).
	Sealed []byte `json:"sealed"`
}

var idPattern = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[a-z][a-z0-9-]{0,62}-[0-9a-f]{8}$`)

// ValidID reports whether id has the form of a backup id, so that an id
// from the command line can never name a path outside the backup directory.
func ValidID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("invalid backup id %q: want e.g. 20260102T150405Z-acme-0a1b2c3d (see clawhold backup list)", id)
	}
	return nil
}

// appendLP appends s with a uvarint length prefix, so distinct field lists
// never encode to the same bytes.
func appendLP(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// keyAAD binds the wrapped data key to its backup.
func keyAAD(id, tenant string) []byte {
	return appendLP(appendLP([]byte("clawhold/backup/v1/key"), id), tenant)
}

func manifestAAD(id string) []byte {
	return appendLP([]byte("clawhold/backup/v1/manifest"), id)
}

func chunkAAD(id, path string, index uint64, last bool) []byte {
	ad := appendLP(appendLP([]byte("clawhold/backup/v1/chunk"), id), path)
	ad = binary.BigEndian.AppendUint64(ad, index)
	if last {
		return append(ad, 1)
	}
	return append(ad, 0)
}

// newAEAD returns AES-256-GCM with caller-supplied 96-bit nonces. Nonces
// are random: a backup's key seals at most a few million chunks, far below
// the 2^32 bound NIST SP 800-38D sets for random nonces under one key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("backup data key has %d bytes, want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// chunkCount is how many chunks hold size plaintext bytes: at least one, so
// an empty file still has an authenticated last chunk.
func chunkCount(size int64, chunk int) int64 {
	if size <= 0 {
		return 1
	}
	return (size + int64(chunk) - 1) / int64(chunk)
}

// sealedSize is the blob size of size plaintext bytes.
func sealedSize(size int64, chunk int) int64 {
	return size + chunkCount(size, chunk)*(nonceSize+tagSize)
}
