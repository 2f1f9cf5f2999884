package cellfs

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestCrashChild is the server half of TestFUSECrash: it only serves the
// mount, until it is killed.
func TestCrashChild(t *testing.T) {
	cipher, mnt := os.Getenv("CELLFS_CRASH_CIPHER"), os.Getenv("CELLFS_CRASH_MNT")
	if cipher == "" {
		t.Skip("helper process for TestFUSECrash")
	}
	key, _ := hex.DecodeString(os.Getenv("CELLFS_CRASH_KEY"))
	tamper := func(path string, block int64, err error) { fmt.Println("TAMPER", path, block, err) }
	if _, err := Mount(context.Background(), cipher, mnt, Options{Key: key, OnTamper: tamper}); err != nil {
		t.Fatal(err)
	}
	fmt.Println("READY")
	select {}
}

// TestFUSECrash serves the mount from a child process and kills it with
// SIGKILL while this process writes SQLite transactions through it; after
// a remount the database must pass integrity_check and hold every
// transaction whose COMMIT returned.
//
// The server always runs in a child process: a Go process must not use
// SQLite's mmap'd -shm on a FUSE mount it serves itself (a page fault on
// that mapping blocks its thread outside a system call, which can stall
// the garbage collector and with it the server: a self-deadlock that a
// real cell, whose gateway is another process, cannot hit).
func TestFUSECrash(t *testing.T) {
	requireRoot(t)
	cipher := t.TempDir()
	const rounds = 3
	for round := 0; round < rounds; round++ {
		mnt := t.TempDir()
		cmd, _ := startServerChild(t, cipher, mnt)
		db := openDB(t, mnt+"/state.db")
		if _, err := db.Exec("CREATE TABLE IF NOT EXISTS kv (tx INTEGER, v TEXT)"); err != nil {
			t.Fatal(err)
		}
		var start int
		db.QueryRow("SELECT coalesce(max(tx),0) FROM kv").Scan(&start)
		var last atomic.Int64
		last.Store(int64(start))
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := start + 1; ; i++ {
				tx, err := db.Begin()
				if err != nil {
					return
				}
				for j := 0; j < 20; j++ {
					if _, err := tx.Exec("INSERT INTO kv VALUES (?, ?)", i, strings.Repeat("w", 300+j)); err != nil {
						tx.Rollback()
						return
					}
				}
				if err := tx.Commit(); err != nil {
					return
				}
				last.Store(int64(i))
			}
		}()
		time.Sleep(time.Duration(300+round*170) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		<-done
		db.Close()
		syscall.Unmount(mnt, syscall.MNT_DETACH)
		committed := int(last.Load())
		if committed == start {
			t.Fatalf("round %d: nothing committed before the kill", round)
		}

		mnt = t.TempDir()
		check, tampers := startServerChild(t, cipher, mnt)
		db = openDB(t, mnt+"/state.db")
		var ok string
		if err := db.QueryRow("PRAGMA integrity_check").Scan(&ok); err != nil || ok != "ok" {
			t.Fatalf("round %d: integrity_check %q %v", round, ok, err)
		}
		var maxTx, n int
		db.QueryRow("SELECT coalesce(max(tx),0), count(*) FROM kv WHERE tx <= ?", committed).Scan(&maxTx, &n)
		db.Close()
		syscall.Unmount(mnt, 0)
		check.Process.Kill()
		check.Wait()
		t.Logf("round %d: killed after tx %d, found %d rows", round, committed, n)
		if maxTx != committed || n != 20*committed {
			t.Fatalf("round %d: committed up to %d, found max %d with %d rows", round, committed, maxTx, n)
		}
		if c := tampers.Load(); c != 0 {
			t.Errorf("round %d: %d tamper reports after crash", round, c)
		}
	}
}

// startServerChild serves cipher at mnt from a child process and returns
// once it is mounted, with a count of the tamper reports it prints.
func startServerChild(t *testing.T, cipher, mnt string) (*exec.Cmd, *atomic.Int64) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), "CELLFS_CRASH_CIPHER="+cipher, "CELLFS_CRASH_MNT="+mnt,
		"CELLFS_CRASH_KEY="+hex.EncodeToString(testKey))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); syscall.Unmount(mnt, syscall.MNT_DETACH) })
	sc := bufio.NewScanner(out)
	for sc.Scan() && sc.Text() != "READY" {
	}
	var tampers atomic.Int64
	go func() {
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "TAMPER") {
				tampers.Add(1)
			}
		}
	}()
	return cmd, &tampers
}
