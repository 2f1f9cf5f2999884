package cellfs

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/clawhold/clawhold/keys"
)

type tamperLog struct {
	mu  sync.Mutex
	got []int64
}

func (l *tamperLog) fn(path string, block int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, block)
}

func (l *tamperLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.got)
}

func testVolume(t testing.TB, alg keys.Algorithm) (*Volume, *tamperLog) {
	t.Helper()
	key := bytes.Repeat([]byte{7}, KeySize)
	v, err := newVolume([][]byte{key}, alg)
	if err != nil {
		t.Fatal(err)
	}
	l := &tamperLog{}
	v.OnTamper = l.fn
	return v, l
}

func newTestFile(t testing.TB, v *Volume, dir, name string) *File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := v.CreateFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

func reopen(t testing.TB, v *Volume, path string) (*File, error) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	return v.OpenFile(f)
}

// TestRoundTrip writes random data at many offsets and sizes, mirroring it
// in memory, and compares after every step and after reopening.
func TestRoundTrip(t *testing.T) {
	for _, alg := range []keys.Algorithm{keys.AES256GCM, keys.XChaCha20Poly1305} {
		t.Run(alg.String(), func(t *testing.T) {
			v, tl := testVolume(t, alg)
			dir := t.TempDir()
			fl := newTestFile(t, v, dir, "f")
			rng := rand.New(rand.NewPCG(1, 2))
			var ref []byte
			cases := []struct{ off, n int }{
				{0, 0}, {0, 1}, {1, 10}, {4095, 2}, {4096, 4096}, {100, 9000},
				{20000, 5}, {8191, 1}, {0, 3 * 4096}, {50000, 70000}, {12288, 4096},
			}
			for i := 0; i < 60; i++ {
				cases = append(cases, struct{ off, n int }{rng.IntN(40000), rng.IntN(10000)})
			}
			for _, c := range cases {
				p := make([]byte, c.n)
				for i := range p {
					p[i] = byte(rng.IntN(255) + 1)
				}
				if _, err := fl.WriteAt(p, int64(c.off)); err != nil {
					t.Fatalf("write %d@%d: %v", c.n, c.off, err)
				}
				if end := c.off + c.n; end > len(ref) && c.n > 0 {
					ref = append(ref, make([]byte, end-len(ref))...)
				}
				copy(ref[c.off:], p)
				checkContent(t, fl, ref)
				// Truncations, shrinking and growing.
				if rng.IntN(4) == 0 {
					n := rng.IntN(len(ref) + 9000)
					if err := fl.Truncate(int64(n)); err != nil {
						t.Fatal(err)
					}
					if n < len(ref) {
						ref = ref[:n]
					} else {
						ref = append(ref, make([]byte, n-len(ref))...)
					}
					checkContent(t, fl, ref)
				}
			}
			fl.Close()
			fl2, err := reopen(t, v, filepath.Join(dir, "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer fl2.Close()
			checkContent(t, fl2, ref)
			st, _ := os.Stat(filepath.Join(dir, "f"))
			if want := fl2.cipherOff(lastIdx(int64(len(ref))) + 1); st.Size() != want {
				t.Errorf("cipher size %d, want %d (padded to whole blocks)", st.Size(), want)
			}
			if tl.count() != 0 {
				t.Errorf("spurious tamper reports: %v", tl.got)
			}
		})
	}
}

func checkContent(t *testing.T, fl *File, ref []byte) {
	t.Helper()
	if fl.Size() != int64(len(ref)) {
		t.Fatalf("size %d, want %d", fl.Size(), len(ref))
	}
	got := make([]byte, len(ref)+100)
	n, err := fl.ReadAt(got, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got[:n], ref) {
		t.Fatalf("content mismatch (len %d vs %d)", n, len(ref))
	}
	// A few unaligned reads.
	for _, o := range []int{1, 4095, 4097, len(ref) / 2} {
		if o >= len(ref) {
			continue
		}
		b := make([]byte, 5000)
		n, _ := fl.ReadAt(b, int64(o))
		if !bytes.Equal(b[:n], ref[o:min(o+5000, len(ref))]) {
			t.Fatalf("read at %d mismatch", o)
		}
	}
}

// TestTamper checks that every kind of manipulation of the ciphertext
// fails authentication and is reported.
func TestTamper(t *testing.T) {
	v, _ := testVolume(t, 0)
	content := make([]byte, 5*BlockSize+123)
	for i := range content {
		content[i] = byte(i * 7)
	}
	mk := func(t *testing.T, dir, name string, data []byte) string {
		fl := newTestFile(t, v, dir, name)
		if _, err := fl.WriteAt(data, 0); err != nil {
			t.Fatal(err)
		}
		fl.Close()
		return filepath.Join(dir, name)
	}
	cbs := int64(12 + innerLen + BlockSize + 16)
	if v.alg == keys.XChaCha20Poly1305 {
		cbs = 24 + innerLen + BlockSize + 16
	}
	off := func(i int64) int64 { return headerLen + i*cbs }
	swap := func(b []byte, i, j int64) {
		tmp := append([]byte(nil), b[off(i):off(i+1)]...)
		copy(b[off(i):off(i+1)], b[off(j):off(j+1)])
		copy(b[off(j):off(j+1)], tmp)
	}
	cases := []struct {
		name   string
		mutate func(t *testing.T, dir, p string)
	}{
		{"flip byte", func(t *testing.T, dir, p string) {
			b, _ := os.ReadFile(p)
			b[off(2)+100] ^= 1
			os.WriteFile(p, b, 0o600)
		}},
		{"flip nonce", func(t *testing.T, dir, p string) {
			b, _ := os.ReadFile(p)
			b[off(1)] ^= 0x80
			os.WriteFile(p, b, 0o600)
		}},
		{"swap blocks in file", func(t *testing.T, dir, p string) {
			b, _ := os.ReadFile(p)
			swap(b, 1, 3)
			os.WriteFile(p, b, 0o600)
		}},
		{"swap block between files", func(t *testing.T, dir, p string) {
			other := mk(t, dir, "other", content)
			b, _ := os.ReadFile(p)
			o, _ := os.ReadFile(other)
			copy(b[off(2):off(3)], o[off(2):off(3)])
			os.WriteFile(p, b, 0o600)
		}},
		{"truncate at block boundary", func(t *testing.T, dir, p string) {
			os.Truncate(p, off(4))
		}},
		{"truncate to header", func(t *testing.T, dir, p string) {
			os.Truncate(p, off(0))
		}},
		{"truncate mid-block", func(t *testing.T, dir, p string) {
			os.Truncate(p, off(4)+77)
		}},
		{"truncate to zero", func(t *testing.T, dir, p string) {
			os.Truncate(p, 0)
		}},
		{"replace header", func(t *testing.T, dir, p string) {
			other := mk(t, dir, "other", content)
			b, _ := os.ReadFile(p)
			o, _ := os.ReadFile(other)
			copy(b[:headerLen], o[:headerLen])
			os.WriteFile(p, b, 0o600)
		}},
		{"flip header version", func(t *testing.T, dir, p string) {
			b, _ := os.ReadFile(p)
			b[1] ^= 2
			os.WriteFile(p, b, 0o600)
		}},
		{"append block from other file", func(t *testing.T, dir, p string) {
			other := mk(t, dir, "other", append(content, content...))
			b, _ := os.ReadFile(p)
			o, _ := os.ReadFile(other)
			os.WriteFile(p, append(b, o[off(6):off(7)]...), 0o600)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tl tamperLog
			v.OnTamper = tl.fn
			defer func() { v.OnTamper = nil }()
			dir := t.TempDir()
			p := mk(t, dir, "f", content)
			c.mutate(t, dir, p)
			fl, err := reopen(t, v, p)
			if err == nil {
				got := make([]byte, len(content))
				_, err = fl.ReadAt(got, 0)
				fl.Close()
			}
			if err == nil || !errors.Is(err, ErrTampered) {
				t.Fatalf("want ErrTampered, got %v", err)
			}
			if tl.count() == 0 {
				t.Fatal("OnTamper not called")
			}
		})
	}
}

// TestTruncateThenRegrow checks the crash-window tolerance: a non-final
// block carrying the final flag (left by a crash between reseal and cut)
// still reads, while a real final block without the flag does not.
func TestMidFileFinalFlagTolerated(t *testing.T) {
	v, tl := testVolume(t, 0)
	dir := t.TempDir()
	fl := newTestFile(t, v, dir, "f")
	data := bytes.Repeat([]byte("x"), 3*BlockSize)
	fl.WriteAt(data, 0)
	// Simulate the first half of Truncate(BlockSize+10): reseal block 1
	// as final without cutting the file.
	blk := make([]byte, BlockSize)
	copy(blk, data[:10])
	ct := fl.seal(nil, 1, blk, 10, true)
	if _, err := fl.f.WriteAt(ct, fl.cipherOff(1)); err != nil {
		t.Fatal(err)
	}
	fl.Close()
	fl, err := reopen(t, v, filepath.Join(dir, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	if fl.Size() != 3*BlockSize {
		t.Fatalf("size %d", fl.Size())
	}
	got := make([]byte, 3*BlockSize)
	if _, err := fl.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if tl.count() != 0 {
		t.Fatal("tamper reported for the benign crash state")
	}
}

func TestNames(t *testing.T) {
	v, _ := testVolume(t, 0)
	iv1, iv2 := newDirIV(), newDirIV()
	for _, name := range []string{"a", "state.db", "state.db-wal", string(bytes.Repeat([]byte("n"), 15)),
		string(bytes.Repeat([]byte("n"), 16)), "ünïcödé 名前", string(bytes.Repeat([]byte("L"), 255))} {
		e1, err := v.EncryptName(iv1, name)
		if err != nil {
			t.Fatal(err)
		}
		e1b, _ := v.EncryptName(iv1, name)
		e2, _ := v.EncryptName(iv2, name)
		if e1 != e1b {
			t.Error("not deterministic within a directory")
		}
		if e1 == e2 {
			t.Error("equal across directories")
		}
		d, err := v.DecryptName(iv1, e1)
		if err != nil || d != name {
			t.Fatalf("round trip %q: %q %v", name, d, err)
		}
		if _, err := v.DecryptName(iv2, e1); !errors.Is(err, ErrTampered) {
			t.Error("name moved to another directory decrypts")
		}
		raw, _ := b64.DecodeString(e1)
		raw[len(raw)-1] ^= 1
		if _, err := v.DecryptName(iv1, b64.EncodeToString(raw)); !errors.Is(err, ErrTampered) {
			t.Error("modified name decrypts")
		}
		if ln, long := lowerName(e1); long != (len(e1) > 255) || len(ln) > 255 {
			t.Errorf("lowerName(%d chars) = %d chars long=%v", len(e1), len(ln), long)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00"} {
		if _, err := v.EncryptName(iv1, bad); err == nil {
			t.Errorf("EncryptName(%q) accepted", bad)
		}
	}
}

func TestConcurrentWriters(t *testing.T) {
	v, _ := testVolume(t, 0)
	dir := t.TempDir()
	fl := newTestFile(t, v, dir, "f")
	defer fl.Close()
	var wg sync.WaitGroup
	// Each writer owns every 8th 100-byte record: records share blocks,
	// so lost updates would show without the per-file lock.
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := bytes.Repeat([]byte{byte('a' + w)}, 100)
			for i := w; i < 800; i += 8 {
				if _, err := fl.WriteAt(rec, int64(i*100)); err != nil {
					t.Error(err)
					return
				}
				b := make([]byte, 100)
				fl.ReadAt(b, int64(i*100))
			}
		}()
	}
	wg.Wait()
	got := make([]byte, 80000)
	if _, err := fl.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 800; i++ {
		if got[i*100] != byte('a'+i%8) || got[i*100+99] != byte('a'+i%8) {
			t.Fatalf("record %d lost", i)
		}
	}
}

// TestParallelReadTamper checks that reads long enough to be decrypted by
// two goroutines still authenticate every block of both halves: a bad
// block anywhere fails the read with ErrTampered, is reported once with its
// index, and only the plaintext before it is returned.
func TestParallelReadTamper(t *testing.T) {
	const pb = parallelBlocks
	content := make([]byte, 3*pb*BlockSize+123)
	for i := range content {
		content[i] = byte(i*7 + i/BlockSize)
	}
	last := int64(len(content)-1) / BlockSize
	flip := func(k int64) func(*File) error {
		return func(fl *File) error {
			b := []byte{0}
			if _, err := fl.f.ReadAt(b, fl.cipherOff(k)+100); err != nil {
				return err
			}
			b[0] ^= 1
			_, err := fl.f.WriteAt(b, fl.cipherOff(k)+100)
			return err
		}
	}
	swap := func(i, j int64) func(*File) error {
		return func(fl *File) error {
			bi, bj := make([]byte, fl.cbs), make([]byte, fl.cbs)
			if _, err := fl.f.ReadAt(bi, fl.cipherOff(i)); err != nil {
				return err
			}
			if _, err := fl.f.ReadAt(bj, fl.cipherOff(j)); err != nil {
				return err
			}
			if _, err := fl.f.WriteAt(bj, fl.cipherOff(i)); err != nil {
				return err
			}
			_, err := fl.f.WriteAt(bi, fl.cipherOff(j))
			return err
		}
	}
	cases := []struct {
		name   string
		off, n int64
		bad    int64 // tampered block, -1 for none
		mutate func(*File) error
	}{
		{name: "intact aligned", off: 0, n: 2 * pb * BlockSize, bad: -1},
		{name: "intact unaligned", off: 1000, n: 2*pb*BlockSize + 77, bad: -1},
		{name: "intact to EOF", off: pb*BlockSize + 5, n: 4 * pb * BlockSize, bad: -1},
		{name: "first block", off: 0, n: 2 * pb * BlockSize, bad: 0},
		{name: "inside first half", off: 0, n: 2 * pb * BlockSize, bad: 3},
		{name: "end of first half", off: 0, n: 2 * pb * BlockSize, bad: pb - 1},
		{name: "start of second half", off: 0, n: 2 * pb * BlockSize, bad: pb},
		{name: "end of second half", off: 0, n: 2 * pb * BlockSize, bad: 2*pb - 1},
		{name: "unaligned, second half", off: 1000, n: 2 * pb * BlockSize, bad: 2 * pb},
		{name: "swap across halves", off: 0, n: 2 * pb * BlockSize, bad: 2, mutate: swap(2, pb+3)},
		{name: "swap within second half", off: 0, n: 2 * pb * BlockSize, bad: pb + 1, mutate: swap(pb+1, pb+3)},
		{name: "final block", off: pb * BlockSize, n: 4 * pb * BlockSize, bad: last},
		{name: "final block without final flag", off: pb * BlockSize, n: 4 * pb * BlockSize, bad: last,
			mutate: func(fl *File) error {
				data := make([]byte, BlockSize)
				n := copy(data, content[last*BlockSize:])
				_, err := fl.f.WriteAt(fl.seal(nil, last, data, n, false), fl.cipherOff(last))
				return err
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, tl := testVolume(t, 0)
			fl := newTestFile(t, v, t.TempDir(), "f")
			defer fl.Close()
			if _, err := fl.WriteAt(content, 0); err != nil {
				t.Fatal(err)
			}
			end := min(c.off+c.n, int64(len(content)))
			if nb := (end-1)/BlockSize - c.off/BlockSize + 1; nb < parallelBlocks {
				t.Fatalf("read spans %d blocks, too few for the parallel path (%d)", nb, parallelBlocks)
			}
			mutate := c.mutate
			if mutate == nil && c.bad >= 0 {
				mutate = flip(c.bad)
			}
			if mutate != nil {
				if err := mutate(fl); err != nil {
					t.Fatal(err)
				}
			}
			p := make([]byte, c.n)
			n, err := fl.ReadAt(p, c.off)
			want := end - c.off
			if c.bad >= 0 {
				want = max(c.bad*BlockSize-c.off, 0)
				if !errors.Is(err, ErrTampered) {
					t.Fatalf("want ErrTampered, got %v", err)
				}
				if len(tl.got) != 1 || tl.got[0] != c.bad {
					t.Fatalf("OnTamper got blocks %v, want [%d]", tl.got, c.bad)
				}
			} else if err != nil && !(errors.Is(err, io.EOF) && end < c.off+c.n) {
				t.Fatalf("read: %v", err)
			}
			if int64(n) != want {
				t.Fatalf("read %d bytes, want %d", n, want)
			}
			if !bytes.Equal(p[:n], content[c.off:c.off+int64(n)]) {
				t.Fatal("content mismatch")
			}
		})
	}
}
