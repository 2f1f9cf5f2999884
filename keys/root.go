package keys

import "context"

// Root is the key-encryption key (KEK) at the top of the hierarchy. It never
// leaves its backend in the KMS cases; clawhold only asks it to wrap and unwrap
// the versioned keyring material (the DEKs) that in turn seal data.
//
// Implementations live in package kms: a local 32-byte key (file, environment
// variable, systemd credential) or a remote service (Vault transit, AWS KMS,
// GCP KMS).
type Root interface {
	// ID names the root key, e.g. "file:/var/lib/clawhold/root.key" or
	// "aws-kms:arn:aws:kms:...". It is recorded beside every wrapped key so an
	// operator can see which root sealed what. It never contains key material.
	ID() string
	// Wrap seals plaintext (key material) bound to aad.
	Wrap(ctx context.Context, plaintext, aad []byte) ([]byte, error)
	// Unwrap opens what Wrap sealed; a wrong aad or any modification fails.
	Unwrap(ctx context.Context, wrapped, aad []byte) ([]byte, error)
}
