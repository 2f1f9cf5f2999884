package keys

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Ciphertext layout (format version 1), all integers big-endian:
//
//	offset  size  field
//	0       1     format version (1)
//	1       1     algorithm (1 = AES-256-GCM, 2 = XChaCha20-Poly1305)
//	2       1     key id length n (1..255)
//	3       n     key id (the keyring, e.g. "tenant:acme")
//	3+n     4     key version
//	7+n     12|24 nonce (by algorithm)
//	...           sealed plaintext || 16-byte tag
//
// The whole header is part of the AEAD's associated data, together with the
// record context, so no header field can be changed and no ciphertext can be
// moved to another tenant, record kind or record id.
const (
	formatV1   byte = 1
	tagSize         = 16
	maxKeyID        = 255
	headerBase      = 3 + 4 // version, algorithm, id length, key version
)

// Errors callers may test for. Open never says more than "cannot open" about
// authentication failures, by design: the reason would help an attacker.
var (
	ErrMalformed = errors.New("malformed ciphertext")
	ErrOpen      = errors.New("cannot open ciphertext: wrong key, context or tampered data")
)

// Header is the parsed, self-describing prefix of a ciphertext.
type Header struct {
	Format    byte
	Algorithm Algorithm
	KeyID     string
	Version   uint32
	Nonce     []byte
}

func (h Header) size() int { return headerBase + len(h.KeyID) + len(h.Nonce) }

// appendHeader writes h to dst.
func (h Header) appendTo(dst []byte) []byte {
	dst = append(dst, h.Format, byte(h.Algorithm), byte(len(h.KeyID)))
	dst = append(dst, h.KeyID...)
	dst = binary.BigEndian.AppendUint32(dst, h.Version)
	return append(dst, h.Nonce...)
}

// ParseHeader splits a ciphertext into its header and the sealed body
// (ciphertext and tag). It checks structure only; authenticity is checked
// when the body is opened.
func ParseHeader(b []byte) (Header, []byte, error) {
	var h Header
	if len(b) < headerBase+1 {
		return h, nil, fmt.Errorf("%w: %d bytes is too short", ErrMalformed, len(b))
	}
	h.Format = b[0]
	if h.Format != formatV1 {
		return h, nil, fmt.Errorf("%w: unknown format version %d", ErrMalformed, h.Format)
	}
	h.Algorithm = Algorithm(b[1])
	if !h.Algorithm.valid() {
		return h, nil, fmt.Errorf("%w: unknown algorithm %d", ErrMalformed, b[1])
	}
	n := int(b[2])
	if n == 0 {
		return h, nil, fmt.Errorf("%w: empty key id", ErrMalformed)
	}
	ns := h.Algorithm.NonceSize()
	if len(b) < headerBase+n+ns+tagSize {
		return h, nil, fmt.Errorf("%w: truncated", ErrMalformed)
	}
	h.KeyID = string(b[3 : 3+n])
	h.Version = binary.BigEndian.Uint32(b[3+n:])
	if h.Version == 0 {
		return h, nil, fmt.Errorf("%w: key version 0", ErrMalformed)
	}
	off := headerBase + n
	h.Nonce = b[off : off+ns : off+ns]
	return h, b[off+ns:], nil
}

// Context is what a ciphertext is bound to. Tenant, Kind and ID are
// required; User and Session are set for data that belongs to one identity
// or session and select that identity's derived data key.
type Context struct {
	Tenant  string // "" is not allowed; the system keyring uses "system"
	Kind    string // record kind, e.g. "secret"
	ID      string // record id, e.g. the secret's name
	User    string // optional: the user identity the data key is derived for
	Session string // optional: the session the data key is derived for
}

func (c Context) validate() error {
	switch {
	case c.Tenant == "":
		return errors.New("encryption context has no tenant")
	case c.Kind == "":
		return errors.New("encryption context has no record kind")
	case c.ID == "":
		return errors.New("encryption context has no record id")
	case c.Session != "" && c.User == "":
		return errors.New("encryption context has a session but no user")
	}
	return nil
}

// appendLP appends length-prefixed fields so that no two distinct field
// lists encode the same bytes ("ab","c" vs "a","bc").
func appendLP(dst []byte, fields ...string) []byte {
	for _, f := range fields {
		dst = binary.AppendUvarint(dst, uint64(len(f)))
		dst = append(dst, f...)
	}
	return dst
}

// associatedData is the header followed by the encoded context.
func associatedData(header []byte, c Context) []byte {
	ad := make([]byte, 0, len(header)+64)
	ad = append(ad, header...)
	ad = append(ad, "clawhold/aad/v1"...)
	return appendLP(ad, c.Tenant, c.Kind, c.ID, c.User, c.Session)
}
