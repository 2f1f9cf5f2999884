// Package keystest provides a root key for other packages' tests: a local
// AES-256-GCM key held in memory, like package kms's file backend without
// the file.
package keystest

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/clawhold/clawhold/keys"
)

// Root is an in-memory keys.Root.
type Root struct{ aead cipher.AEAD }

var _ keys.Root = (*Root)(nil)

// NewRoot returns a root with a fresh random key.
func NewRoot(t testing.TB) *Root {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &Root{a}
}

func (r *Root) ID() string { return "test-root" }

func (r *Root) Wrap(_ context.Context, pt, aad []byte) ([]byte, error) {
	nonce := make([]byte, r.aead.NonceSize())
	rand.Read(nonce)
	return r.aead.Seal(nonce, nonce, pt, aad), nil
}

func (r *Root) Unwrap(_ context.Context, w, aad []byte) ([]byte, error) {
	if len(w) < r.aead.NonceSize() {
		return nil, errors.New("keystest: wrapped key too short")
	}
	return r.aead.Open(nil, w[:r.aead.NonceSize()], w[r.aead.NonceSize():], aad)
}
