// Command storage is the workload half of bench/storage.sh: filesystem
// workloads timed on a directory (plain, gocryptfs, or clawhold's cellfs).
//
//	storage seq-write DIR MiB     write DIR/seq (1 MiB writes), fsync; prints MB/s
//	storage seq-read DIR          read DIR/seq back (drop caches first); prints MB/s
//	storage rand-fsync DIR N      N random 4 KiB writes into a 64 MiB file, fsync after each; prints ops/s
//	storage sqlite DIR N          N inserts in transactions of 100 into a WAL database; prints rows/s
//	storage mount-cellfs CIPHER MNT  serve clawhold's cellfs (random key) until killed
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/clawhold/clawhold/cellfs"
	_ "modernc.org/sqlite"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: storage seq-write|seq-read|rand-fsync|sqlite DIR [N]")
		os.Exit(2)
	}
	if os.Args[1] == "mount-cellfs" && os.Args[2] == "--probe" {
		return // this build has cellfs
	}
	dir := os.Args[2]
	n := 0
	if len(os.Args) > 3 {
		n, _ = strconv.Atoi(os.Args[3])
	}
	var err error
	switch os.Args[1] {
	case "seq-write":
		err = seqWrite(dir, n)
	case "seq-read":
		err = seqRead(dir)
	case "rand-fsync":
		err = randFsync(dir, n)
	case "sqlite":
		err = sqliteInserts(dir, n)
	case "mount-cellfs":
		err = mountCellfs(dir, os.Args[3])
	default:
		err = fmt.Errorf("unknown workload %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "storage:", err)
		os.Exit(1)
	}
}

func mountCellfs(cipher, mnt string) error {
	key := make([]byte, 32)
	rand.Read(key)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := cellfs.Mount(ctx, cipher, mnt, cellfs.Options{Key: key})
	if err != nil {
		return err
	}
	srv.Wait()
	return nil
}

func seqWrite(dir string, mib int) error {
	f, err := os.Create(filepath.Join(dir, "seq"))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	rand.Read(buf)
	start := time.Now()
	for i := 0; i < mib; i++ {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	fmt.Printf("%.0f\n", float64(mib)*1.048576/time.Since(start).Seconds())
	return nil
}

func seqRead(dir string) error {
	f, err := os.Open(filepath.Join(dir, "seq"))
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	n, err := io.CopyBuffer(io.Discard, f, make([]byte, 1<<20))
	if err != nil {
		return err
	}
	fmt.Printf("%.0f\n", float64(n)/1e6/time.Since(start).Seconds())
	return nil
}

func randFsync(dir string, ops int) error {
	const size = 64 << 20
	path := filepath.Join(dir, "rand")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	rand.Read(buf)
	start := time.Now()
	for i := 0; i < ops; i++ {
		b, _ := rand.Int(rand.Reader, big.NewInt(size/4096))
		if _, err := f.WriteAt(buf, b.Int64()*4096); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	fmt.Printf("%.0f\n", float64(ops)/time.Since(start).Seconds())
	return nil
}

func sqliteInserts(dir string, rows int) error {
	path := filepath.Join(dir, "bench.sqlite")
	os.Remove(path)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)`); err != nil {
		return err
	}
	body := make([]byte, 200)
	rand.Read(body)
	start := time.Now()
	for i := 0; i < rows; i += 100 {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		for j := 0; j < 100 && i+j < rows; j++ {
			if _, err := tx.Exec(`INSERT INTO t (body) VALUES (?)`, fmt.Sprintf("%x", body)); err != nil {
				tx.Rollback()
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
	}
	fmt.Printf("%.0f\n", float64(rows)/time.Since(start).Seconds())
	return nil
}
