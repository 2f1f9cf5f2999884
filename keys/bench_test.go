package keys

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
)

// BenchmarkSeal and BenchmarkOpen measure clawhold's full ciphertext path
// (header, random nonce, associated data, AEAD) for each algorithm. bench/aead.sh
// runs them beside `openssl speed` on the same machine.
func BenchmarkSeal(b *testing.B) { benchAEAD(b, true) }
func BenchmarkOpen(b *testing.B) { benchAEAD(b, false) }

func benchAEAD(b *testing.B, sealing bool) {
	c := Context{Tenant: "acme", Kind: "secret", ID: "bench"}
	for _, alg := range []Algorithm{AES256GCM, XChaCha20Poly1305} {
		for _, size := range []int{1 << 10, 64 << 10, 1 << 20} {
			b.Run(fmt.Sprintf("%s/%dKiB", alg, size>>10), func(b *testing.B) {
				a, err := newAEAD(alg, bytes.Repeat([]byte{1}, KeySize))
				if err != nil {
					b.Fatal(err)
				}
				pt := make([]byte, size)
				h := Header{Format: formatV1, Algorithm: alg, KeyID: "tenant:acme", Version: 1}
				ct, err := seal(a, rand.Reader, h, c, pt)
				if err != nil {
					b.Fatal(err)
				}
				ph, body, _ := ParseHeader(ct)
				hdr := ct[:len(ct)-len(body)]
				b.SetBytes(int64(size))
				b.ResetTimer()
				for b.Loop() {
					if sealing {
						_, err = seal(a, rand.Reader, h, c, pt)
					} else {
						_, err = open(a, ph, hdr, body, c)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
