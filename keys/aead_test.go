package keys

import (
	"bytes"
	"encoding/hex"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Known-answer vectors from the algorithms' specifications, so a broken or
// swapped primitive fails here rather than only against itself.
func TestAEADKnownAnswers(t *testing.T) {
	tests := []struct {
		name                       string
		alg                        Algorithm
		key, nonce, aad, plaintext string
		ciphertextAndTag           string
	}{
		{
			// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16
			// (AES-256, 96-bit IV, with AAD).
			name:             "aes-256-gcm/gcm-spec-tc16",
			alg:              AES256GCM,
			key:              "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
			nonce:            "cafebabefacedbaddecaf888",
			aad:              "feedfacedeadbeeffeedfacedeadbeefabaddad2",
			plaintext:        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
			ciphertextAndTag: "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662" + "76fc6ece0f4e1768cddf8853bb2d551b",
		},
		{
			// draft-irtf-cfrg-xchacha-03, appendix A.3.1.
			name:             "xchacha20-poly1305/draft-xchacha-A.3.1",
			alg:              XChaCha20Poly1305,
			key:              "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
			nonce:            "404142434445464748494a4b4c4d4e4f5051525354555657",
			aad:              "50515253c0c1c2c3c4c5c6c7",
			plaintext:        hex.EncodeToString([]byte("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.")),
			ciphertextAndTag: "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e" + "c0875924c1c7987947deafd8780acf49",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := newAEAD(tt.alg, unhex(t, tt.key))
			if err != nil {
				t.Fatal(err)
			}
			nonce, aad, pt, want := unhex(t, tt.nonce), unhex(t, tt.aad), unhex(t, tt.plaintext), unhex(t, tt.ciphertextAndTag)
			if len(nonce) != tt.alg.NonceSize() {
				t.Fatalf("nonce size %d, algorithm says %d", len(nonce), tt.alg.NonceSize())
			}
			got := a.Seal(nil, nonce, pt, aad)
			if !bytes.Equal(got, want) {
				t.Fatalf("seal mismatch:\n got %x\nwant %x", got, want)
			}
			back, err := a.Open(nil, nonce, want, aad)
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("open of the known answer failed: %v", err)
			}
			bad := bytes.Clone(want)
			bad[len(bad)-1] ^= 1
			if _, err := a.Open(nil, nonce, bad, aad); err == nil {
				t.Fatal("opened a ciphertext with a flipped tag bit")
			}
		})
	}
}

func TestParseAlgorithm(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    Algorithm
		wantErr bool
	}{
		{"aes-256-gcm", AES256GCM, false},
		{"xchacha20-poly1305", XChaCha20Poly1305, false},
		{"auto", DefaultAlgorithm(), false},
		{"", DefaultAlgorithm(), false},
		{"aes-128-gcm", 0, true},
		{"AES-256-GCM", 0, true},
	} {
		got, err := ParseAlgorithm(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseAlgorithm(%q) = %v, %v; want %v, err=%v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	if got := DefaultAlgorithm(); hasAESGCMHardware() != (got == AES256GCM) {
		t.Errorf("DefaultAlgorithm() = %s but AES-GCM hardware = %v", got, hasAESGCMHardware())
	}
}

func TestDerivedKeysAreDistinct(t *testing.T) {
	material := bytes.Repeat([]byte{7}, KeySize)
	seen := make(map[string]string)
	tenants := []string{"acme", "globex", "ac", "me"}
	users := []string{"", "alice", "bob", "alice|x"}
	sessions := []string{"", "s1", "s2"}
	for _, ver := range []uint32{1, 2} {
		for _, alg := range []Algorithm{AES256GCM, XChaCha20Poly1305} {
			for _, tn := range tenants {
				for _, u := range users {
					for _, s := range sessions {
						k, err := deriveDataKey(material, KeyringName(tn), ver, alg, tn, u, s)
						if err != nil {
							t.Fatal(err)
						}
						id := tn + "/" + u + "/" + s + "/" + alg.String() + "/" + string(rune('0'+ver))
						if prev, dup := seen[string(k)]; dup {
							t.Fatalf("%s and %s derived the same data key", prev, id)
						}
						seen[string(k)] = id
					}
				}
			}
		}
	}
}
