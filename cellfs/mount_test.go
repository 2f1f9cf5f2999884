package cellfs

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestMountDescriptorNotInherited: a process started after a mount does
// not inherit the mount's /dev/fuse descriptor (with it, a cell could read
// and answer another cell's file system requests).
func TestMountDescriptorNotInherited(t *testing.T) {
	mountT(t, t.TempDir(), testKey)
	out, err := exec.Command("/bin/sh", "-c", "ls -l /proc/self/fd/").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Fatalf("a child process holds /dev/fuse:\n%s", out)
	}
}

// TestTamperNamesThePlaintextPath: whatever the damage (a cut found by
// stat, a bad header found on open, a bad block found on read), the
// report names the file by its path in the volume, not by its ciphertext
// name, which an operator cannot act on.
func TestTamperNamesThePlaintextPath(t *testing.T) {
	m := mountT(t, t.TempDir(), testKey)
	os.Mkdir(m.p("d"), 0o700)
	os.WriteFile(m.p("d/victim"), bytes.Repeat([]byte("v"), 3*BlockSize), 0o600)
	m.unmount(t)
	v, _ := NewVolume(testKey)
	cp, _ := v.CipherPath(m.cipher, "d/victim")
	orig, _ := os.ReadFile(cp)
	off, n, _ := v.Block(cp, 0)
	for name, damage := range map[string]func([]byte) []byte{
		"cut":    func(b []byte) []byte { return b[:off+2*n] },
		"header": func(b []byte) []byte { b[5] ^= 1; return b },
		"block":  func(b []byte) []byte { b[off+n+7] ^= 1; return b },
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(cp, damage(bytes.Clone(orig)), 0o600)
			var mu sync.Mutex
			var paths []string
			srv, err := Mount(context.Background(), m.cipher, t.TempDir(), Options{Key: testKey, OnTamper: func(p string, _ int64, _ error) {
				mu.Lock()
				paths = append(paths, p)
				mu.Unlock()
			}})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Unmount()
			os.ReadFile(filepath.Join(srv.mountpoint, "d/victim"))
			mu.Lock()
			defer mu.Unlock()
			if len(paths) == 0 {
				t.Fatal("no tamper report")
			}
			for _, p := range paths {
				if p != "/d/victim" {
					t.Errorf("tamper report names %q, want /d/victim", p)
				}
			}
		})
	}
}
