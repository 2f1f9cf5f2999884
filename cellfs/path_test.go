package cellfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestCipherPath: the ciphertext file CipherPath names is the one that
// holds the file (damaging it breaks exactly that file), also through a
// long name.
func TestCipherPath(t *testing.T) {
	m := mountT(t, t.TempDir(), testKey)
	long := strings.Repeat("n", 200) // its encoded name is over 255 bytes
	files := []string{"a/b/target.txt", "a/b/other.txt", "a/" + long + "/x"}
	for _, f := range files {
		os.MkdirAll(filepath.Dir(m.p(f)), 0o700)
		if err := os.WriteFile(m.p(f), bytes.Repeat([]byte(f), 100), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m.unmount(t)
	v, err := NewVolume(testKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{files[0], files[2]} {
		cp, err := v.CipherPath(m.cipher, target)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(cp)
		if err != nil {
			t.Fatalf("%s → %s: %v", target, cp, err)
		}
		b[len(b)-20] ^= 1
		os.WriteFile(cp, b, 0o600)

		m2 := mountT(t, m.cipher, testKey)
		for _, f := range files {
			_, err := os.ReadFile(m2.p(f))
			if damaged := f == target; damaged != errors.Is(err, syscall.EIO) {
				t.Errorf("after damaging CipherPath(%q): reading %s: %v", target, f, err)
			}
		}
		m2.unmount(t)
		b[len(b)-20] ^= 1
		os.WriteFile(cp, b, 0o600)
	}
	if _, err := v.CipherPath(m.cipher, "a/missing/x"); err == nil {
		t.Error("CipherPath through a missing directory succeeded")
	}
}

// TestBlock: Block names the bytes of one block: damaging them breaks
// that block and no other.
func TestBlock(t *testing.T) {
	m := mountT(t, t.TempDir(), testKey)
	data := bytes.Repeat([]byte("0123456789abcdef"), 3*BlockSize/16)
	os.WriteFile(m.p("f"), data, 0o600)
	m.unmount(t)
	v, _ := NewVolume(testKey)
	cp, _ := v.CipherPath(m.cipher, "f")
	off, n, err := v.Block(cp, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(cp)
	if int64(len(b)) < off+n || off+2*n != int64(len(b)) {
		t.Fatalf("block 1 at %d+%d in a %d-byte file of 3 blocks", off, n, len(b))
	}
	b[off+n-1] ^= 1 // the last byte of block 1 (its tag)
	os.WriteFile(cp, b, 0o600)
	m2 := mountT(t, m.cipher, testKey)
	f, _ := os.Open(m2.p("f"))
	defer f.Close()
	buf := make([]byte, BlockSize)
	for i, want := range []bool{true, false, true} {
		_, err := f.ReadAt(buf, int64(i)*BlockSize)
		if (err == nil) != want {
			t.Errorf("block %d: %v", i, err)
		}
	}
}
