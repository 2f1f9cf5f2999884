//go:build linux

package fileaccess

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

const benchFiles = 1000

// benchTree writes benchFiles small files in 10 subdirectories of dir and
// returns their paths.
func benchTree(b *testing.B, dir string) []string {
	b.Helper()
	var files []string
	for i := range benchFiles {
		p := filepath.Join(dir, fmt.Sprintf("d%d", i%10), fmt.Sprintf("f%04d.json", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(`{"token":"0123456789abcdef"}`), 0o600); err != nil {
			b.Fatal(err)
		}
		files = append(files, p)
	}
	return files
}

// benchCompare runs work on an unwatched tree and on a watched copy in the
// same iteration (interleaved, so drift hits both) and reports both times
// and the overhead per opened file.
func benchCompare(b *testing.B, o Options, work func(b *testing.B, dir string, files []string)) {
	requireRoot(b)
	var seen atomic.Int64
	o.OnAccess = func(Access) { seen.Add(1) }
	w, err := New(b.Context(), o)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	base := b.TempDir()
	off, on := filepath.Join(base, "off"), filepath.Join(base, "on")
	offFiles, onFiles := benchTree(b, off), benchTree(b, on)
	if err := w.Add(on, "bench"); err != nil {
		b.Fatal(err)
	}
	work(b, off, offFiles) // warm caches
	work(b, on, onFiles)
	for deadline := time.Now().Add(10 * time.Second); seen.Load() < benchFiles && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	seen.Store(0)

	var tOff, tOn time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		work(b, off, offFiles)
		t1 := time.Now()
		work(b, on, onFiles)
		tOn += time.Since(t1)
		tOff += t1.Sub(t0)
	}
	b.StopTimer()
	// Let the reader catch up before counting (closes are already queued).
	for deadline := time.Now().Add(10 * time.Second); seen.Load()+w.Dropped() < int64(b.N*benchFiles) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	n := float64(b.N)
	b.ReportMetric(float64(tOff.Microseconds())/n, "off-µs/op")
	b.ReportMetric(float64(tOn.Microseconds())/n, "on-µs/op")
	b.ReportMetric(100*(float64(tOn)-float64(tOff))/float64(tOff), "overhead-%")
	b.ReportMetric(float64(tOn-tOff)/n/benchFiles, "overhead-ns/file")
	b.ReportMetric(float64(seen.Load())/n, "accesses/op")
	b.ReportMetric(float64(w.Dropped()), "dropped")
	b.ReportMetric(0, "ns/op") // the sum of both runs says nothing
}

func readAll(b *testing.B, _ string, files []string) {
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		var buf [256]byte
		fh.Read(buf[:])
		fh.Close()
	}
}

func tarTree(b *testing.B, dir string, _ []string) {
	// -f - : GNU tar skips reading file contents when the archive is /dev/null.
	cmd := exec.Command("tar", "-C", dir, "-cf", "-", ".")
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOpenReadClose: this process opens, reads and closes 1,000
// small files. The watcher's own opens take the fast path (answered at
// once, attributed from a cached self description).
func BenchmarkOpenReadClose(b *testing.B) { benchCompare(b, Options{}, readAll) }

// BenchmarkOpenReadCloseAttributed is the same workload with the /proc
// attribution every foreign opener gets (the opener waits for it).
func BenchmarkOpenReadCloseAttributed(b *testing.B) {
	benchCompare(b, Options{attributeSelf: true}, readAll)
}

// BenchmarkTar: `tar -cf - .` of the 1,000-file tree in a subprocess.
func BenchmarkTar(b *testing.B) { benchCompare(b, Options{}, tarTree) }

// BenchmarkTarNotify is BenchmarkTar with notification-only fanotify
// (the opener is never held).
func BenchmarkTarNotify(b *testing.B) { benchCompare(b, Options{Mode: ModeFanotify}, tarTree) }

// BenchmarkTarInotify is BenchmarkTar with the inotify fallback.
func BenchmarkTarInotify(b *testing.B) { benchCompare(b, Options{Mode: ModeInotify}, tarTree) }
