package cellfs

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/clawhold/clawhold/keys"
)

// KeySize is the size of the volume master key.
const KeySize = 32

// ErrTampered is wrapped by every error caused by ciphertext that fails
// authentication or is structurally impossible (bad header, wrong length).
// The FUSE layer maps it to EIO. A torn write after a crash looks exactly
// like tampering; the two cannot be told apart from the ciphertext alone.
var ErrTampered = errors.New("cellfs: ciphertext failed authentication")

// HKDF info labels. Every key has its own label so that no key is ever used
// for two purposes.
const (
	infoFile     = "clawhold/cellfs/v1/file-content"
	infoNameMAC  = "clawhold/cellfs/v1/name-siv-mac"
	infoNameEnc  = "clawhold/cellfs/v1/name-siv-ctr"
	infoSymlink  = "clawhold/cellfs/v1/symlink"
	infoKeyCheck = "clawhold/cellfs/v1/key-check"
)

// Volume holds the keys derived from one volume master key. It is safe for
// concurrent use.
type Volume struct {
	master []byte
	// contents are the content master keys by generation: contents[0] is
	// master; each later one was added when the tenant's keyring moved to
	// a newer version. New files use the last; a file's header names its
	// generation. Names, directory IVs and symlinks stay under master:
	// rotating them would mean renaming every entry.
	contents [][]byte
	alg      keys.Algorithm
	nameMAC  []byte
	nameCTR  cipher.Block
	symlink  cipher.AEAD
	keyCheck []byte

	// readBufs holds ciphertext buffers for reads (*[]byte), so that a
	// stream of 128 KiB FUSE reads does not allocate and zero one each.
	readBufs sync.Pool

	// OnTamper, if set, is called for every authentication failure found
	// while reading (path is the File's path, block the content block
	// index or -1 for the header/name/symlink). Set it before use.
	OnTamper func(path string, block int64, err error)
}

// NewVolume derives the volume's keys from a 32-byte master key. New files
// use keys.DefaultAlgorithm(); existing files use whatever their header
// names, so a volume may mix both.
func NewVolume(key []byte) (*Volume, error) {
	return newVolume([][]byte{key}, 0)
}

// NewVolumeGenerations is NewVolume for a volume whose key has several
// generations, oldest first (see Options.Keys).
func NewVolumeGenerations(keys [][]byte) (*Volume, error) {
	return newVolume(keys, 0)
}

// maxGenerations is how many key generations a header can name (one byte).
const maxGenerations = 256

func newVolume(gens [][]byte, alg keys.Algorithm) (*Volume, error) {
	if len(gens) == 0 || len(gens) > maxGenerations {
		return nil, fmt.Errorf("cellfs: %d key generations: want 1 to %d", len(gens), maxGenerations)
	}
	for i, k := range gens {
		if len(k) != KeySize {
			return nil, fmt.Errorf("cellfs: key generation %d must be %d bytes, got %d", i, KeySize, len(k))
		}
	}
	key := gens[0]
	if alg == 0 {
		alg = keys.DefaultAlgorithm()
	}
	if alg != keys.AES256GCM && alg != keys.XChaCha20Poly1305 {
		return nil, fmt.Errorf("cellfs: unsupported algorithm %s", alg)
	}
	v := &Volume{master: append([]byte(nil), key...), alg: alg}
	for _, k := range gens {
		v.contents = append(v.contents, append([]byte(nil), k...))
	}
	var err error
	if v.nameMAC, err = v.derive(infoNameMAC, nil); err != nil {
		return nil, err
	}
	ctrKey, err := v.derive(infoNameEnc, nil)
	if err != nil {
		return nil, err
	}
	if v.nameCTR, err = aes.NewCipher(ctrKey); err != nil {
		return nil, fmt.Errorf("cellfs: name cipher: %w", err)
	}
	symKey, err := v.derive(infoSymlink, nil)
	if err != nil {
		return nil, err
	}
	// Symlink targets are short and rare: XChaCha20-Poly1305 with random
	// 192-bit nonces needs no per-target key and has no nonce-reuse worry.
	if v.symlink, err = chacha20poly1305.NewX(symKey); err != nil {
		return nil, fmt.Errorf("cellfs: symlink cipher: %w", err)
	}
	if v.keyCheck, err = v.derive(infoKeyCheck, nil); err != nil {
		return nil, err
	}
	return v, nil
}

// derive is HKDF-SHA256(master, salt, info) -> 32 bytes.
func (v *Volume) derive(info string, salt []byte) ([]byte, error) {
	return deriveFrom(v.master, info, salt)
}

func deriveFrom(master []byte, info string, salt []byte) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, master, salt, info, KeySize)
	if err != nil {
		return nil, fmt.Errorf("cellfs: hkdf %s: %w", info, err)
	}
	return k, nil
}

// fileAEAD builds the content AEAD of one file. The key is
// HKDF(master, salt=fileID, info=content label): a per-file key rather
// than one volume content key with the file ID only in the AD, because
// AES-GCM with random 96-bit nonces is limited to about 2^32 encryptions
// per key (NIST SP 800-38D); a long-lived SQLite database rewrites the
// same blocks constantly, and per-file keys make that budget per file.
// The derivation costs two HMAC-SHA256 and one key schedule per open.
//
// gen is the key generation the file's header names.
func (v *Volume) fileAEAD(alg keys.Algorithm, gen int, fileID []byte) (cipher.AEAD, error) {
	if gen >= len(v.contents) {
		return nil, fmt.Errorf("%w: file sealed under key generation %d, this volume has %d", ErrTampered, gen, len(v.contents))
	}
	k, err := deriveFrom(v.contents[gen], infoFile, fileID)
	if err != nil {
		return nil, err
	}
	defer clear(k)
	switch alg {
	case keys.AES256GCM:
		b, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("cellfs: aes: %w", err)
		}
		return cipher.NewGCM(b)
	case keys.XChaCha20Poly1305:
		return chacha20poly1305.NewX(k)
	}
	return nil, fmt.Errorf("%w: unknown algorithm %d in file header", ErrTampered, alg)
}

// KeyCheck returns a value that identifies the master key without
// revealing it; Mount stores it so a wrong key fails at mount time instead
// of as EIO on every file.
func (v *Volume) KeyCheck() []byte {
	m := hmac.New(sha256.New, v.keyCheck)
	m.Write([]byte("cellfs key check"))
	return m.Sum(nil)
}

func (v *Volume) tamper(path string, block int64, err error) {
	if v.OnTamper != nil {
		v.OnTamper(path, block, err)
	}
}
