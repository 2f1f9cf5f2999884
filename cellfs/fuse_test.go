package cellfs

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	_ "modernc.org/sqlite"
)

// requireRoot skips FUSE tests when not root (mount(2) needs it), except
// under CI, where skipping would hide a broken setup.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		if _, err := os.Stat("/dev/fuse"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("no /dev/fuse (%v) and CI=true: refusing to skip", err)
			}
			t.Skipf("no /dev/fuse: %v", err)
		}
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("FUSE tests need root (DirectMount) and CI=true: refusing to skip")
	}
	t.Skip("FUSE tests need root: they mount with mount(2) directly (no fusermount)")
}

type testMount struct {
	cipher, mnt string
	srv         *Server
	tl          *tamperLog
	key         []byte
}

func mountT(t testing.TB, cipher string, key []byte) *testMount {
	t.Helper()
	requireRoot(t)
	m := &testMount{cipher: cipher, mnt: t.TempDir(), tl: &tamperLog{}, key: key}
	srv, err := Mount(context.Background(), cipher, m.mnt, Options{Key: key, OnTamper: m.tl.fn})
	if err != nil {
		t.Fatal(err)
	}
	m.srv = srv
	t.Cleanup(func() { m.unmount(t) })
	return m
}

func (m *testMount) unmount(t testing.TB) {
	if m.srv == nil {
		return
	}
	if err := m.srv.Unmount(); err != nil {
		t.Errorf("unmount: %v", err)
	}
	m.srv.Wait()
	m.srv = nil
}

func (m *testMount) p(name string) string { return filepath.Join(m.mnt, name) }

var testKey = bytes.Repeat([]byte{0x42}, 32)

func TestFUSEBasics(t *testing.T) {
	m := mountT(t, t.TempDir(), testKey)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	canary := "CANARY-CONTENT-" + strings.Repeat("q", 50)
	must(os.WriteFile(m.p("hello.txt"), []byte(canary), 0o640))
	b, err := os.ReadFile(m.p("hello.txt"))
	must(err)
	if string(b) != canary {
		t.Fatalf("read back %q", b)
	}
	st, err := os.Stat(m.p("hello.txt"))
	must(err)
	if st.Size() != int64(len(canary)) || st.Mode().Perm() != 0o640 {
		t.Fatalf("stat: size %d mode %v", st.Size(), st.Mode())
	}
	// Append.
	f, err := os.OpenFile(m.p("hello.txt"), os.O_WRONLY|os.O_APPEND, 0)
	must(err)
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(f, "line %d\n", i)
	}
	must(f.Close())
	b, _ = os.ReadFile(m.p("hello.txt"))
	if !strings.HasPrefix(string(b), canary) || !strings.HasSuffix(string(b), "line 999\n") {
		t.Fatalf("append: %d bytes, tail %q", len(b), b[len(b)-20:])
	}
	// Directories, long names, rename across directories, hard links.
	must(os.MkdirAll(m.p("dirCANARY/sub"), 0o755))
	long := "LONGCANARY" + strings.Repeat("x", 240)
	must(os.WriteFile(m.p("dirCANARY/sub/"+long), []byte("long"), 0o600))
	must(os.Rename(m.p("hello.txt"), m.p("dirCANARY/renamed.txt")))
	must(os.Link(m.p("dirCANARY/renamed.txt"), m.p("dirCANARY/sub/hardlink.txt")))
	must(os.Link(m.p("dirCANARY/sub/"+long), m.p("link-of-long")))
	must(os.Symlink("dirCANARY/renamed.txt", m.p("symCANARY")))
	tg, err := os.Readlink(m.p("symCANARY"))
	must(err)
	if tg != "dirCANARY/renamed.txt" {
		t.Fatalf("readlink %q", tg)
	}
	b2, err := os.ReadFile(m.p("symCANARY"))
	must(err)
	if !bytes.Equal(b, b2) {
		t.Fatal("read through symlink differs")
	}
	// Writes through one hard link are seen through the other.
	must(os.WriteFile(m.p("dirCANARY/sub/hardlink.txt"), []byte("via link"), 0o640))
	b, _ = os.ReadFile(m.p("dirCANARY/renamed.txt"))
	if string(b) != "via link" {
		t.Fatalf("hard link content %q", b)
	}
	var names []string
	filepath.WalkDir(m.mnt, func(p string, d fs.DirEntry, err error) error {
		names = append(names, strings.TrimPrefix(p, m.mnt))
		return err
	})
	want := []string{"", "/dirCANARY", "/dirCANARY/renamed.txt", "/dirCANARY/sub", "/dirCANARY/sub/" + long,
		"/dirCANARY/sub/hardlink.txt", "/link-of-long", "/symCANARY"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("walk:\n got %q\nwant %q", names, want)
	}
	// Truncate shrink and grow.
	must(os.Truncate(m.p("dirCANARY/renamed.txt"), 3))
	must(os.Truncate(m.p("dirCANARY/renamed.txt"), 10000))
	b, _ = os.ReadFile(m.p("dirCANARY/renamed.txt"))
	if len(b) != 10000 || string(b[:3]) != "via" || !bytes.Equal(b[3:], make([]byte, 9997)) {
		t.Fatalf("truncate: len %d", len(b))
	}
	// O_TRUNC and rmdir.
	must(os.WriteFile(m.p("dirCANARY/renamed.txt"), []byte("x"), 0o640))
	if st, _ := os.Stat(m.p("dirCANARY/sub/hardlink.txt")); st.Size() != 1 {
		t.Fatalf("size after O_TRUNC via other link: %d", st.Size())
	}
	must(os.Mkdir(m.p("empty"), 0o700))
	must(os.Remove(m.p("empty")))
	if err := os.Remove(m.p("dirCANARY/sub")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Fatalf("rmdir non-empty: %v", err)
	}
	must(os.Remove(m.p("dirCANARY/sub/" + long)))
	if _, err := os.Stat(m.p("link-of-long")); err != nil {
		t.Fatal("hard link lost with its sibling")
	}
	// Persistence across remount.
	m.unmount(t)
	m2 := mountT(t, m.cipher, testKey)
	b, err = os.ReadFile(m2.p("dirCANARY/sub/hardlink.txt"))
	if err != nil || string(b) != "x" {
		t.Fatalf("after remount: %q %v", b, err)
	}
	m2.unmount(t)
	if _, err := Mount(context.Background(), m.cipher, t.TempDir(), Options{Key: bytes.Repeat([]byte{1}, 32)}); err == nil {
		t.Fatal("mounted with the wrong key")
	}
	scanForCanaries(t, m.cipher, "CANARY", "via link", "line 999")
	if m.tl.count()+m2.tl.count() != 0 {
		t.Errorf("spurious tamper reports")
	}
}

// scanForCanaries fails if any plaintext appears in any file name, file
// content or symlink target below dir.
func scanForCanaries(t *testing.T, dir string, canaries ...string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		var data []byte
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			tg, _ := os.Readlink(p)
			data = []byte(tg)
		case d.Type().IsRegular():
			data, _ = os.ReadFile(p)
		}
		for _, c := range canaries {
			if strings.Contains(d.Name(), c) || bytes.Contains(data, []byte(c)) {
				t.Errorf("plaintext %q found in ciphertext %s", c, p)
			}
		}
		return nil
	})
}

func TestFUSETamperEIO(t *testing.T) {
	m := mountT(t, t.TempDir(), testKey)
	data := bytes.Repeat([]byte("secret-data "), 3000)
	if err := os.WriteFile(m.p("victim"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	m.unmount(t)
	// Flip one byte in the second block of the only regular content file.
	var victim string
	filepath.WalkDir(m.cipher, func(p string, d fs.DirEntry, err error) error {
		if d.Type().IsRegular() && !isInternal(d.Name()) {
			victim = p
		}
		return nil
	})
	b, _ := os.ReadFile(victim)
	b[headerLen+4128+500] ^= 0x10
	os.WriteFile(victim, b, 0o600)

	m2 := mountT(t, m.cipher, testKey)
	f, err := os.Open(m2.p("victim"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 100)
	if _, err := f.ReadAt(buf, 10); err != nil {
		t.Fatalf("intact block 0: %v", err)
	}
	_, err = f.ReadAt(buf, BlockSize+10)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("tampered block: want EIO, got %v", err)
	}
	if m2.tl.count() == 0 {
		t.Fatal("OnTamper not called")
	}
}

// TestFUSEParallelReadTamper checks that a bad block anywhere in a 128 KiB
// read (which the server decrypts in two halves concurrently) makes the
// read fail with EIO and is reported with its index.
func TestFUSEParallelReadTamper(t *testing.T) {
	const cbs = 12 + innerLen + BlockSize + tagLen // AES-256-GCM
	data := make([]byte, 40*BlockSize)
	for i := range data {
		data[i] = byte(i*13 + i/BlockSize)
	}
	for _, bad := range []int64{3, parallelBlocks - 1, parallelBlocks, 31} {
		t.Run(fmt.Sprint("block ", bad), func(t *testing.T) {
			m := mountT(t, t.TempDir(), testKey)
			if err := os.WriteFile(m.p("victim"), data, 0o600); err != nil {
				t.Fatal(err)
			}
			m.unmount(t)
			var victim string
			filepath.WalkDir(m.cipher, func(p string, d fs.DirEntry, err error) error {
				if d.Type().IsRegular() && !isInternal(d.Name()) {
					victim = p
				}
				return nil
			})
			b, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			b[headerLen+bad*cbs+500] ^= 0x10
			if err := os.WriteFile(victim, b, 0o600); err != nil {
				t.Fatal(err)
			}

			m2 := mountT(t, m.cipher, testKey)
			f, err := os.Open(m2.p("victim"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.ReadAt(make([]byte, 128<<10), 0); !errors.Is(err, syscall.EIO) {
				t.Fatalf("want EIO, got %v", err)
			}
			m2.tl.mu.Lock()
			defer m2.tl.mu.Unlock()
			if len(m2.tl.got) == 0 {
				t.Fatal("OnTamper not called")
			}
			for _, g := range m2.tl.got {
				if g != bad {
					t.Fatalf("OnTamper got blocks %v, want only %d", m2.tl.got, bad)
				}
			}
		})
	}
}

// childMount serves cipher from a child process (see TestFUSECrash on why
// mmap users must not be their own FUSE server) and returns the mount
// point, a func that unmounts and ends the child, and its tamper count.
func childMount(t *testing.T, cipher string) (string, func(), *atomic.Int64) {
	t.Helper()
	mnt := t.TempDir()
	cmd, tampers := startServerChild(t, cipher, mnt)
	return mnt, func() {
		if err := syscall.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount: %v", err)
		}
		cmd.Process.Kill()
		cmd.Wait()
	}, tampers
}

func TestFUSEMmapShared(t *testing.T) {
	requireRoot(t)
	cipher := t.TempDir()
	mnt, unmount, _ := childMount(t, cipher)
	p := func(name string) string { return filepath.Join(mnt, name) }
	f, err := os.OpenFile(p("shm"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(32768); err != nil {
		t.Fatal(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 32768, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		t.Fatalf("shared mmap: %v", err)
	}
	copy(mem[5000:], "mmap-written")
	// A second mapping of another descriptor sees it at once (page cache).
	g, _ := os.OpenFile(p("shm"), os.O_RDWR, 0)
	mem2, err := syscall.Mmap(int(g.Fd()), 0, 32768, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	if string(mem2[5000:5012]) != "mmap-written" {
		t.Fatal("second mapping does not see the write")
	}
	if err := unixMsync(mem); err != nil {
		t.Fatal(err)
	}
	syscall.Munmap(mem)
	syscall.Munmap(mem2)
	f.Close()
	g.Close()
	unmount()
	m2 := mountT(t, cipher, testKey)
	b, _ := os.ReadFile(m2.p("shm"))
	if len(b) != 32768 || string(b[5000:5012]) != "mmap-written" {
		t.Fatalf("mmap write not persisted (len %d)", len(b))
	}
}

func unixMsync(b []byte) error {
	_, _, e := syscall.Syscall(syscall.SYS_MSYNC, uintptr(unsafePointer(b)), uintptr(len(b)), syscall.MS_SYNC)
	if e != 0 {
		return e
	}
	return nil
}

func openDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(FULL)")
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func TestFUSESQLiteWAL(t *testing.T) {
	requireRoot(t)
	cipher := t.TempDir()
	mnt, unmount, tampers := childMount(t, cipher)
	db := openDB(t, filepath.Join(mnt, "state.db"))
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q %v", mode, err)
	}
	if _, err := db.Exec("CREATE TABLE kv (id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var readErr error
	var mu sync.Mutex
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				var n int
				if err := db.QueryRow("SELECT count(*) FROM kv").Scan(&n); err != nil {
					mu.Lock()
					readErr = err
					mu.Unlock()
					return
				}
			}
		}()
	}
	const txs, per = 60, 50
	for i := 0; i < txs; i++ {
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < per; j++ {
			if _, err := tx.Exec("INSERT INTO kv (v) VALUES (?)", fmt.Sprintf("SQLCANARY-%d-%d-%s", i, j, strings.Repeat("z", 200))); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	if readErr != nil {
		t.Fatalf("concurrent reader: %v", readErr)
	}
	db.Close()
	unmount()

	mnt2, unmount2, tampers2 := childMount(t, cipher)
	db = openDB(t, filepath.Join(mnt2, "state.db"))
	var ok string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check %q %v", ok, err)
	}
	var n int
	db.QueryRow("SELECT count(*) FROM kv").Scan(&n)
	if n != txs*per {
		t.Fatalf("rows %d, want %d", n, txs*per)
	}
	db.Close()
	unmount2()
	scanForCanaries(t, cipher, "SQLCANARY", "state.db", "SQLite format")
	if c := tampers.Load() + tampers2.Load(); c != 0 {
		t.Errorf("%d tamper reports", c)
	}
}

func benchMount(b *testing.B) *testMount {
	return mountT(b, b.TempDir(), testKey)
}

const benchSize = 64 << 20

func BenchmarkSeqWrite(b *testing.B) {
	m := benchMount(b)
	buf := make([]byte, 1<<20)
	b.SetBytes(benchSize)
	for i := 0; b.Loop(); i++ {
		f, err := os.Create(m.p("big"))
		if err != nil {
			b.Fatal(err)
		}
		for w := 0; w < benchSize; w += len(buf) {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}

func BenchmarkSeqRead(b *testing.B) {
	m := benchMount(b)
	buf := make([]byte, 1<<20)
	f, _ := os.Create(m.p("big"))
	for w := 0; w < benchSize; w += len(buf) {
		f.Write(buf)
	}
	f.Close()
	b.SetBytes(benchSize)
	for b.Loop() {
		// Drop the page cache so every pass decrypts.
		os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
		f, err := os.Open(m.p("big"))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, f, buf); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
