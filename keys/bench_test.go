package keys

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"
)

// BenchmarkSeal and BenchmarkOpen measure clawhold's full ciphertext path
// (header, random nonce, associated data, AEAD) for each algorithm, writing
// into a reused buffer as `openssl speed` does. BenchmarkPrimitive is the
// bare cipher.AEAD on the same sizes, so the format's own cost is visible.
// bench/aead.sh runs them beside `openssl speed` on the same machine.
func BenchmarkSeal(b *testing.B)      { benchAEAD(b, "seal") }
func BenchmarkOpen(b *testing.B)      { benchAEAD(b, "open") }
func BenchmarkPrimitive(b *testing.B) { benchAEAD(b, "primitive") }

func benchAEAD(b *testing.B, mode string) {
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
				ct, err := seal(nil, a, rand.Reader, h, c, pt)
				if err != nil {
					b.Fatal(err)
				}
				ph, body, _ := ParseHeader(ct)
				hdr := ct[:len(ct)-len(body)]
				buf := make([]byte, 0, len(ct))
				nonce := make([]byte, alg.NonceSize())
				b.SetBytes(int64(size))
				b.ResetTimer()
				for b.Loop() {
					switch mode {
					case "seal":
						_, err = seal(buf[:0], a, rand.Reader, h, c, pt)
					case "open":
						_, err = open(buf[:0], a, ph, hdr, body, c)
					case "primitive":
						a.Seal(buf[:0], nonce, pt, nil)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
