package keys

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
)

// deriveDataKey derives the data key for one tenant, user and session from
// a keyring version's material with HKDF-SHA256 (RFC 5869).
//
// The info string binds the keyring, its version, the algorithm and the
// identity, each length-prefixed, so two tenants or two sessions can never
// derive the same key, and a key derived for one algorithm is never reused by
// another. Tenant keyrings also hold independent random material, so tenants
// differ even before derivation.
func deriveDataKey(material []byte, keyring string, version uint32, alg Algorithm, tenant, user, session string) ([]byte, error) {
	info := []byte("clawhold/dek/v1")
	info = appendLP(info, keyring)
	info = binary.BigEndian.AppendUint32(info, version)
	info = append(info, byte(alg))
	info = appendLP(info, tenant, user, session)
	return hkdf.Key(sha256.New, material, nil, string(info), KeySize)
}
