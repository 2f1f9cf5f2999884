package cellfs

import (
	"bytes"
	"context"
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

// TestKeyGenerations: after a key generation is added, new files are
// sealed under it and old ones keep theirs; both read back; without the
// new generation the new file fails (EIO), its header naming a
// generation the volume lacks; names stay under the first.
func TestKeyGenerations(t *testing.T) {
	k0, k1 := bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize)
	cipherDir := t.TempDir()
	mount := func(gens ...[]byte) (*Server, string, *tamperLog) {
		t.Helper()
		requireRoot(t)
		var tl tamperLog
		mnt := t.TempDir()
		srv, err := Mount(context.Background(), cipherDir, mnt, Options{Keys: gens, OnTamper: tl.fn})
		if err != nil {
			t.Fatal(err)
		}
		return srv, mnt, &tl
	}
	srv, mnt, _ := mount(k0)
	os.WriteFile(filepath.Join(mnt, "old"), []byte("written under generation 0"), 0o600)
	srv.Unmount()

	srv, mnt, _ = mount(k0, k1)
	os.WriteFile(filepath.Join(mnt, "new"), []byte("written under generation 1"), 0o600)
	for name, want := range map[string]string{"old": "written under generation 0", "new": "written under generation 1"} {
		if b, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || string(b) != want {
			t.Errorf("%s with both generations: %q, %v", name, b, err)
		}
	}
	srv.Unmount()

	v, _ := NewVolume(k0)
	for name, gen := range map[string]byte{"old": 0, "new": 1} {
		cp, err := v.CipherPath(cipherDir, name)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(cp)
		if b[3] != gen {
			t.Errorf("%s's header names generation %d, want %d", name, b[3], gen)
		}
	}

	srv, mnt, tl := mount(k0)
	defer srv.Unmount()
	if b, err := os.ReadFile(filepath.Join(mnt, "old")); err != nil || string(b) != "written under generation 0" {
		t.Errorf("old with generation 0 only: %q, %v", b, err)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "new")); !errors.Is(err, syscall.EIO) {
		t.Errorf("new without its generation: %v, want EIO", err)
	}
	if tl.count() == 0 {
		t.Error("no tamper report for a file of an unknown generation")
	}
}
