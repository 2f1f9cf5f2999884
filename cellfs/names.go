package cellfs

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
)

// Name encryption.
//
// Names must be deterministic per directory (a lookup encrypts the name
// and asks the lower file system) and must not be equal across
// directories. No vetted wide-block (EME) or SIV library is in the module
// graph, so names use the SIV construction of RFC 5297 with HMAC-SHA256 as
// the PRF in place of S2V/CMAC (the "HMAC-SIV" pattern, also the shape of
// AES-GCM-SIV and of Rogaway–Shrimpton's DAE):
//
//	siv = HMAC-SHA256(K_mac, dirIV | padded)[:16]
//	enc = base64url(siv | AES-256-CTR(K_ctr, iv=siv, padded))
//
// with independent HKDF-derived keys. It is a deterministic authenticated
// encryption: equal (dirIV, name) give equal output and nothing else
// repeats (the IV is a PRF of the full input); decryption recomputes the
// HMAC and rejects any change. Only standard primitives are used, no block
// cipher mode is invented. Names are PKCS#7-padded to 16 bytes first, so
// only the length class leaks (as with gocryptfs's EME).
const (
	dirIVLen       = 16
	sivLen         = 16
	dirIVName      = "cellfs.diriv"
	confName       = "cellfs.conf"
	longNamePrefix = "cellfs.longname."
	longNameSuffix = ".name"
	// maxEncName is the longest encoded name stored as is; longer ones are
	// stored under a hash with the full encoded name in a side file.
	maxEncName = 255
)

var b64 = base64.RawURLEncoding

func (v *Volume) siv(dirIV, padded []byte) []byte {
	m := hmac.New(sha256.New, v.nameMAC)
	m.Write(dirIV)
	m.Write(padded)
	return m.Sum(nil)[:sivLen]
}

// EncryptName encrypts one path component for the directory whose IV is
// dirIV. The result may be longer than 255 bytes; see lowerName.
func (v *Volume) EncryptName(dirIV []byte, name string) (string, error) {
	if len(dirIV) != dirIVLen {
		return "", fmt.Errorf("cellfs: directory IV must be %d bytes", dirIVLen)
	}
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("cellfs: invalid name %q", name)
	}
	pad := 16 - len(name)%16
	padded := make([]byte, len(name)+pad)
	copy(padded, name)
	for i := len(name); i < len(padded); i++ {
		padded[i] = byte(pad)
	}
	iv := v.siv(dirIV, padded)
	out := make([]byte, sivLen+len(padded))
	copy(out, iv)
	cipher.NewCTR(v.nameCTR, iv).XORKeyStream(out[sivLen:], padded)
	return b64.EncodeToString(out), nil
}

// DecryptName reverses EncryptName, authenticating the result.
func (v *Volume) DecryptName(dirIV []byte, enc string) (string, error) {
	if len(dirIV) != dirIVLen {
		return "", fmt.Errorf("cellfs: directory IV must be %d bytes", dirIVLen)
	}
	raw, err := b64.DecodeString(enc)
	if err != nil || len(raw) < sivLen+16 || (len(raw)-sivLen)%16 != 0 {
		return "", fmt.Errorf("%w: malformed encrypted name %q", ErrTampered, enc)
	}
	iv := raw[:sivLen]
	padded := make([]byte, len(raw)-sivLen)
	cipher.NewCTR(v.nameCTR, iv).XORKeyStream(padded, raw[sivLen:])
	if subtle.ConstantTimeCompare(v.siv(dirIV, padded), iv) != 1 {
		return "", fmt.Errorf("%w: encrypted name %q does not authenticate", ErrTampered, enc)
	}
	pad := int(padded[len(padded)-1])
	if pad < 1 || pad > 16 || pad > len(padded) {
		return "", fmt.Errorf("%w: bad name padding", ErrTampered)
	}
	return string(padded[:len(padded)-pad]), nil
}

// lowerName maps an encoded name to the name stored on disk: itself, or,
// above maxEncName, "cellfs.longname.<base64url(sha256(enc))>" whose full
// encoded name lives in a side file of the same name plus ".name" (the
// gocryptfs "longnames" scheme). The bool reports a long name.
func lowerName(enc string) (string, bool) {
	if len(enc) <= maxEncName {
		return enc, false
	}
	h := sha256.Sum256([]byte(enc))
	return longNamePrefix + b64.EncodeToString(h[:]), true
}

// isInternal reports names the FUSE layer never shows.
func isInternal(name string) bool {
	return name == dirIVName || name == confName ||
		(strings.HasPrefix(name, longNamePrefix) && strings.HasSuffix(name, longNameSuffix))
}

func newDirIV() []byte {
	iv := make([]byte, dirIVLen)
	rand.Read(iv)
	return iv
}

// encryptSymlink encrypts a symlink target (random nonce: targets need no
// lookups, so they need not be deterministic).
func (v *Volume) encryptSymlink(target string) string {
	nonce := make([]byte, v.symlink.NonceSize())
	rand.Read(nonce)
	return b64.EncodeToString(v.symlink.Seal(nonce, nonce, []byte(target), []byte("symlink")))
}

func (v *Volume) decryptSymlink(enc string) (string, error) {
	raw, err := b64.DecodeString(enc)
	ns := v.symlink.NonceSize()
	if err != nil || len(raw) < ns {
		return "", fmt.Errorf("%w: malformed symlink target", ErrTampered)
	}
	pt, err := v.symlink.Open(nil, raw[:ns], raw[ns:], []byte("symlink"))
	if err != nil {
		return "", fmt.Errorf("%w: symlink target does not authenticate", ErrTampered)
	}
	return string(pt), nil
}
