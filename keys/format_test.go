package keys

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// zeroReader makes nonces deterministic for the golden test.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestFormatGolden freezes the on-disk format: a change to the header or the
// associated-data encoding would make stored data unreadable, so it must be
// a deliberate new format version, not an accident.
func TestFormatGolden(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, KeySize)
	c := Context{Tenant: "acme", Kind: "secret", ID: "gateway/auth/token"}
	for _, tt := range []struct {
		alg  Algorithm
		want string
	}{
		{AES256GCM, "010109" + hex.EncodeToString([]byte("tenant:ac")) + "00000007" + "000000000000000000000000"},
		{XChaCha20Poly1305, "010209" + hex.EncodeToString([]byte("tenant:ac")) + "00000007" + "000000000000000000000000000000000000000000000000"},
	} {
		a, err := newAEAD(tt.alg, key)
		if err != nil {
			t.Fatal(err)
		}
		ct, err := seal(nil, a, zeroReader{}, Header{Format: formatV1, Algorithm: tt.alg, KeyID: "tenant:ac", Version: 7}, c, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		gotHdr := hex.EncodeToString(ct[:len(tt.want)/2])
		if gotHdr != tt.want {
			t.Fatalf("%s header = %s, want %s", tt.alg, gotHdr, tt.want)
		}
		if len(ct) != len(tt.want)/2+5+tagSize {
			t.Fatalf("%s length %d", tt.alg, len(ct))
		}
		h, body, err := ParseHeader(ct)
		if err != nil {
			t.Fatal(err)
		}
		pt, err := open(nil, a, h, ct[:len(ct)-len(body)], body, c)
		if err != nil || string(pt) != "hello" {
			t.Fatalf("open: %v", err)
		}
	}
}

func TestParseHeaderRejects(t *testing.T) {
	valid, _ := hex.DecodeString("010109" + hex.EncodeToString([]byte("tenant:ac")) + "00000007" + "000000000000000000000000" + "00000000000000000000000000000000")
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(valid)) }
	for name, b := range map[string][]byte{
		"empty":           nil,
		"format 2":        mut(func(b []byte) []byte { b[0] = 2; return b }),
		"algorithm 0":     mut(func(b []byte) []byte { b[1] = 0; return b }),
		"algorithm 9":     mut(func(b []byte) []byte { b[1] = 9; return b }),
		"empty key id":    mut(func(b []byte) []byte { b[2] = 0; return b }),
		"key id too long": mut(func(b []byte) []byte { b[2] = 200; return b }),
		"version 0":       mut(func(b []byte) []byte { copy(b[12:16], []byte{0, 0, 0, 0}); return b }),
		"no tag":          valid[:len(valid)-1],
	} {
		if _, _, err := ParseHeader(b); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, _, err := ParseHeader(valid); err != nil {
		t.Fatalf("valid header rejected: %v", err)
	}
}

// FuzzParseHeader: the parser never panics, and what it accepts re-encodes
// to exactly the input, so no two byte strings parse to one header.
func FuzzParseHeader(f *testing.F) {
	valid, _ := hex.DecodeString("010109" + hex.EncodeToString([]byte("tenant:ac")) + "00000007" + "000000000000000000000000" + "00000000000000000000000000000000")
	f.Add(valid)
	f.Add([]byte{1, 2, 1, 'x', 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, body, err := ParseHeader(b)
		if err != nil {
			return
		}
		re := append(h.appendTo(nil), body...)
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, re)
		}
		if len(body) < tagSize || len(h.Nonce) != h.Algorithm.NonceSize() {
			t.Fatalf("accepted body %d bytes, nonce %d bytes", len(body), len(h.Nonce))
		}
	})
}
