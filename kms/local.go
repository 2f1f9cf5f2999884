package kms

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/clawhold/clawhold/datadir"
)

// KeySize is the length in bytes of a local root key (AES-256).
const KeySize = 32

// localVersion is the first byte of everything [Local.Wrap] returns. It is
// also authenticated, as the first byte of the AEAD's additional data.
const localVersion = 1

// fingerprintLabel domain-separates the fingerprint hash from any other use of
// SHA-256 over the key.
const fingerprintLabel = "clawhold root key fingerprint v1\x00"

// maxKeyFileSize bounds what is read from a key file, credential or token
// file; a valid one is far smaller.
const maxKeyFileSize = 4096

// Local is a root key held in this process: 32 bytes from a file, an
// environment variable or a systemd credential. It wraps with AES-256-GCM and
// a random 96-bit nonce; a wrapped key is
//
//	version (1 byte, 0x01) || nonce (12 bytes) || ciphertext || tag (16 bytes)
//
// with the version byte and the caller's aad authenticated.
type Local struct {
	id   string
	aead cipher.AEAD
}

// newLocal takes ownership of key and zeroes it before returning.
func newLocal(source string, key []byte) (*Local, error) {
	defer clear(key)
	if len(key) != KeySize {
		return nil, fmt.Errorf("%s: root key is %d bytes, want %d", source, len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return &Local{id: source + "#" + fingerprint(key), aead: aead}, nil
}

// fingerprint is a short, non-secret digest of key: the first 8 hex digits of
// SHA-256 over a fixed label and the key. It makes a wrong root key visible
// in ID without revealing anything useful about it.
func fingerprint(key []byte) string {
	h := sha256.New()
	h.Write([]byte(fingerprintLabel))
	h.Write(key)
	sum := h.Sum(nil)
	return hex.EncodeToString(sum[:4])
}

// ID returns the key's source and fingerprint, e.g.
// "file:/var/lib/clawhold/root.key#ab12cd34".
func (l *Local) ID() string { return l.id }

// Wrap seals plaintext under the root key, bound to aad.
func (l *Local) Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]byte, 1, 1+l.aead.Overhead()+len(plaintext))
	out[0] = localVersion
	return l.aead.Seal(out, nil, plaintext, localAAD(aad)), nil
}

// Unwrap opens what Wrap sealed. A wrong root key, wrong aad or any change to
// wrapped fails with the same error.
func (l *Local) Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(wrapped) < 1+l.aead.Overhead() {
		return nil, fmt.Errorf("root key %s: wrapped key is truncated (%d bytes)", l.id, len(wrapped))
	}
	if wrapped[0] != localVersion {
		return nil, fmt.Errorf("root key %s: unknown wrapped key version %d", l.id, wrapped[0])
	}
	pt, err := l.aead.Open(nil, nil, wrapped[1:], localAAD(aad))
	if err != nil {
		return nil, fmt.Errorf("root key %s: cannot unwrap: wrong root key, wrong associated data or corrupted data", l.id)
	}
	return pt, nil
}

func localAAD(aad []byte) []byte {
	return append([]byte{localVersion}, aad...)
}

// decodeKey parses base64 (standard alphabet, padded) text holding exactly
// KeySize bytes, ignoring surrounding whitespace. Errors never quote the input.
// The caller owns and must clear the result.
func decodeKey(text []byte) ([]byte, error) {
	text = bytes.TrimSpace(text)
	key := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := base64.StdEncoding.Decode(key, text)
	if err != nil {
		clear(key)
		return nil, errors.New("not valid base64")
	}
	if n != KeySize {
		clear(key)
		return nil, fmt.Errorf("decodes to %d bytes, want %d", n, KeySize)
	}
	return key[:KeySize], nil
}

// OpenFile loads the root key from path, which must hold the base64 encoding
// of 32 bytes followed by a newline, as [GenerateFile] writes it.
//
// The file must be a regular file (not a symlink), owned by the user clawhold
// runs as, with no permission bits for group or others (mode 0600 or 0400).
// Each violation is reported with the command that fixes it.
func OpenFile(path string) (*Local, error) {
	if path == "" {
		return nil, errors.New("root_key.file is empty: set it to the root key file's path")
	}
	text, err := readSecretFile("root key file", path, false)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("root key file %s does not exist: generate a new root key (clawhold init) or set root_key.file to the existing one", path)
		}
		return nil, err
	}
	defer clear(text)
	key, err := decodeKey(text)
	if err != nil {
		return nil, fmt.Errorf("root key file %s: %v: it must hold the base64 encoding of %d random bytes", path, err, KeySize)
	}
	return newLocal("file:"+path, key)
}

// readSecretFile reads a key, token or credentials file after datadir's
// private-file checks. The caller owns and must clear the result.
func readSecretFile(what, path string, followSymlinks bool) ([]byte, error) {
	return datadir.ReadPrivateFile(what, path, maxKeyFileSize, followSymlinks)
}

// GenerateFile creates a new root key file at path holding 32 random bytes,
// base64-encoded, mode 0600. It never replaces an existing file: if path
// exists the error wraps [fs.ErrExist].
//
// The key is written to a temporary file in the same directory, synced, and
// hard-linked into place (link fails rather than overwrite), then the
// directory is synced, so a crash leaves either no key file or a complete one.
// A missing parent directory is created with mode 0700.
func GenerateFile(path string) (err error) {
	if path == "" {
		return errors.New("root_key.file is empty: set it to the root key file's path")
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("root key file %s already exists: refusing to overwrite a root key: %w", path, fs.ErrExist)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create root key directory: %w", err)
	}

	key := make([]byte, KeySize)
	defer clear(key)
	rand.Read(key) // never returns an error; crashes the program on failure
	text := make([]byte, base64.StdEncoding.EncodedLen(KeySize)+1)
	defer clear(text)
	base64.StdEncoding.Encode(text, key)
	text[len(text)-1] = '\n'

	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create root key file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			f.Close()
		}
		// After a successful link the key lives on under path; tmp is only
		// a second name for it. On failure tmp is the only copy. Either way
		// it goes.
		os.Remove(tmp)
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("create root key file: %w", err)
	}
	if _, err := f.Write(text); err != nil {
		return fmt.Errorf("write root key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync root key file: %w", err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("write root key file: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("root key file %s already exists: refusing to overwrite a root key: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("install root key file: %w", err)
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("install root key file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("sync root key directory: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// DefaultEnv is the environment variable the env backend reads by default.
const DefaultEnv = "CLAWHOLD_ROOT_KEY"

// OpenEnv loads the root key from the environment variable name (base64 of
// 32 bytes) and then removes the variable from this process's environment,
// so programs clawhold starts do not inherit the key. The value is removed
// even when it is malformed. Go strings cannot be wiped, so the original
// value may stay in memory until it is overwritten.
func OpenEnv(name string) (*Local, error) {
	if name == "" {
		name = DefaultEnv
	}
	val, ok := os.LookupEnv(name)
	if !ok || val == "" {
		return nil, fmt.Errorf("environment variable %s is not set: set it to the base64 encoding of %d random bytes, or set root_key.env to the variable that holds it", name, KeySize)
	}
	if err := os.Unsetenv(name); err != nil {
		return nil, fmt.Errorf("unset %s: %w", name, err)
	}
	text := []byte(val)
	defer clear(text)
	key, err := decodeKey(text)
	if err != nil {
		return nil, fmt.Errorf("environment variable %s: %v: it must hold the base64 encoding of %d random bytes", name, err, KeySize)
	}
	return newLocal("env:"+name, key)
}

// DefaultSystemdCredential is the credential name the systemd-credential
// backend reads by default.
const DefaultSystemdCredential = "clawhold-root-key"

// OpenSystemdCredential loads the root key from $CREDENTIALS_DIRECTORY/name,
// the file systemd provides for LoadCredential=name:PATH or
// LoadCredentialEncrypted=name:PATH (systemd has already decrypted it). The
// credential holds either the 32 raw bytes or their base64 encoding.
func OpenSystemdCredential(name string) (*Local, error) {
	if name == "" {
		name = DefaultSystemdCredential
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("root_key.systemd_credential %q is not a credential name: use a plain name such as %s", name, DefaultSystemdCredential)
	}
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return nil, fmt.Errorf("CREDENTIALS_DIRECTORY is not set: clawhold is not running under systemd with LoadCredential=%[1]s:PATH or LoadCredentialEncrypted=%[1]s:PATH in its unit", name)
	}
	path := filepath.Join(dir, name)
	data, err := readCredential(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("systemd credential %s not found in %s: add LoadCredential=%[1]s:PATH or LoadCredentialEncrypted=%[1]s:PATH to the unit, or set root_key.systemd_credential", name, dir)
		}
		return nil, err
	}
	defer clear(data)
	// 32 bytes are the raw key, unless they are all base64 text: then they
	// are a mistaken encoding (of 24 bytes), not 256 random bits.
	if len(data) == KeySize && !isBase64Text(data) {
		return newLocal("systemd-credential:"+name, bytes.Clone(data))
	}
	key, err := decodeKey(data)
	if err != nil {
		return nil, fmt.Errorf("systemd credential %s: %v: it must hold %d random bytes, raw or base64-encoded", name, err, KeySize)
	}
	return newLocal("systemd-credential:"+name, key)
}

func isBase64Text(b []byte) bool {
	for _, c := range b {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=' || c == '\n') {
			return false
		}
	}
	return true
}

// readCredential reads a systemd credential. systemd owns the credentials
// directory and sets the files' owner and mode itself, so only the file type
// and size are checked here.
func readCredential(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("systemd credential: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("systemd credential: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("systemd credential %s is not a regular file", path)
	}
	buf := make([]byte, maxKeyFileSize+1)
	n, err := io.ReadFull(f, buf)
	switch {
	case err == nil:
		clear(buf)
		return nil, fmt.Errorf("systemd credential %s is larger than %d bytes: it is not a root key", path, maxKeyFileSize)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return buf[:n], nil
	default:
		clear(buf)
		return nil, fmt.Errorf("systemd credential: read %s: %w", path, err)
	}
}
