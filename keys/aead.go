// Package keys implements clawhold's envelope encryption: versioned keyrings
// whose key material (the DEKs) is sealed by a root key (the KEK, see Root),
// per-tenant and per-session data keys derived with HKDF-SHA256, and an AEAD
// ciphertext format that names its own algorithm, key and version and binds
// the record it belongs to.
//
// Key versions follow NIST SP 800-57's states: the newest version is active
// (encrypts and decrypts); older versions, and any version past the hard
// maximum age, are deactivated (decrypt and rewrap only); a retired version
// is destroyed (its material is gone and nothing can use it).
package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/sys/cpu"
)

// Algorithm identifies an AEAD. Its numeric value is written into every
// ciphertext, so values are never reused or renumbered.
type Algorithm byte

const (
	AES256GCM         Algorithm = 1
	XChaCha20Poly1305 Algorithm = 2
)

// KeySize is the size of every key clawhold uses: 256 bits.
const KeySize = 32

func (a Algorithm) String() string {
	switch a {
	case AES256GCM:
		return "aes-256-gcm"
	case XChaCha20Poly1305:
		return "xchacha20-poly1305"
	}
	return fmt.Sprintf("unknown-algorithm(%d)", byte(a))
}

// NonceSize is the nonce length the algorithm's ciphertexts carry.
func (a Algorithm) NonceSize() int {
	switch a {
	case AES256GCM:
		return 12
	case XChaCha20Poly1305:
		return chacha20poly1305.NonceSizeX
	}
	return 0
}

func (a Algorithm) valid() bool { return a == AES256GCM || a == XChaCha20Poly1305 }

// ParseAlgorithm maps a config value to an Algorithm. "auto" (or "") picks
// by CPU support, see DefaultAlgorithm.
func ParseAlgorithm(s string) (Algorithm, error) {
	switch s {
	case "", "auto":
		return DefaultAlgorithm(), nil
	case "aes-256-gcm":
		return AES256GCM, nil
	case "xchacha20-poly1305":
		return XChaCha20Poly1305, nil
	}
	return 0, fmt.Errorf("unknown algorithm %q: use auto, aes-256-gcm or xchacha20-poly1305", s)
}

// DefaultAlgorithm is AES-256-GCM where the CPU has AES and carry-less
// multiply instructions (constant-time and fast), XChaCha20-Poly1305
// elsewhere: software AES is slow and, in table-based implementations, leaks
// timing.
func DefaultAlgorithm() Algorithm {
	if hasAESGCMHardware() {
		return AES256GCM
	}
	return XChaCha20Poly1305
}

func hasAESGCMHardware() bool {
	return (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) ||
		(cpu.ARM64.HasAES && cpu.ARM64.HasPMULL) ||
		(cpu.S390X.HasAES && cpu.S390X.HasAESGCM)
}

// newAEAD builds the primitive. The caller owns key and may zero it after
// this returns: both implementations keep their own expanded copy.
func newAEAD(alg Algorithm, key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%s needs a %d-byte key, got %d bytes", alg, KeySize, len(key))
	}
	switch alg {
	case AES256GCM:
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(block)
	case XChaCha20Poly1305:
		return chacha20poly1305.NewX(key)
	}
	return nil, fmt.Errorf("unsupported algorithm %s", alg)
}

// zero overwrites b. Go cannot promise no other copy exists (the GC may have
// moved it), but this removes the copies we hold.
func zero(b []byte) {
	clear(b)
}
