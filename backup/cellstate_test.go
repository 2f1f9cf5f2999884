package backup

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/cellfs"
	"github.com/clawhold/clawhold/instance"
)

// openEncrypted opens an instance whose cells keep their state in cellfs.
func openEncrypted(t *testing.T, dataDir, backupDir string, create bool) *instance.Instance {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "clawhold.yaml")
	os.WriteFile(cfg, []byte("backup:\n  dir: "+backupDir+"\ncells:\n  encrypted_state: true\n"), 0o600)
	in, err := instance.Open(context.Background(), instance.Options{DataDir: dataDir, ConfigPath: cfg, CreateRootKey: create})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close() })
	return in
}

// TestBackupEncryptedCell: a stopped cell whose state is encrypted is
// backed up through a private mount of its volume (files and databases as
// they are: nothing writes) and restored into a new encrypted volume on a
// fresh data dir, readable there, with no plaintext on disk at any point.
func TestBackupEncryptedCell(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root for FUSE and CI=true forbids skipping")
		}
		t.Skip("needs root: mounts cellfs")
	}
	// Not a tenant name other tests use: a cell of the same name running
	// anywhere on the host (cellInitPID goes by uid) would be backed up
	// live instead.
	const tenant = "stoppedbackup"
	ctx := context.Background()
	base := t.TempDir()
	dataDir, backupDir := filepath.Join(base, "data"), filepath.Join(base, "backups")
	in := openEncrypted(t, dataDir, backupDir, true)
	if err := in.EnsureTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	const canary = "CANARY-ENCRYPTED-CELL-9e1f"

	// A database made on an ordinary directory (no SQLite on a mount this
	// process serves), then put into the volume with plain file writes.
	plainDB := filepath.Join(t.TempDir(), "state.sqlite")
	db, err := sql.Open("sqlite", "file:"+plainDB)
	if err != nil {
		t.Fatal(err)
	}
	db.Exec(`CREATE TABLE t (v TEXT)`)
	for range 200 {
		db.Exec(`INSERT INTO t VALUES (?)`, canary)
	}
	db.Close()
	dbBytes, _ := os.ReadFile(plainDB)

	l := cell.NewLayout(dataDir, tenant)
	mnt, unmount, err := mountState(ctx, in, tenant, l)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(mnt, ".openclaw"), 0o700)
	os.WriteFile(filepath.Join(mnt, ".openclaw", "state.sqlite"), dbBytes, 0o600)
	os.WriteFile(filepath.Join(mnt, "notes.txt"), []byte(canary), 0o600)
	unmount()

	m, err := Create(ctx, in, tenant, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(ctx, in.Root, backupDir, m.ID); err != nil {
		t.Fatal(err)
	}
	var sawDB, sawNotes bool
	for _, e := range m.Entries {
		sawDB = sawDB || e.Path == "home/.openclaw/state.sqlite"
		sawNotes = sawNotes || e.Path == "home/notes.txt"
	}
	if !sawDB || !sawNotes {
		t.Fatalf("the backup misses the encrypted home's files: %+v", m.Entries)
	}
	noPlaintext(t, backupDir, canary)

	fresh := filepath.Join(base, "fresh")
	os.MkdirAll(fresh, 0o700)
	key, _ := os.ReadFile(filepath.Join(dataDir, "root.key"))
	os.WriteFile(filepath.Join(fresh, "root.key"), key, 0o600)
	in2 := openEncrypted(t, fresh, backupDir, false)
	if _, err := Restore(ctx, in2, m.ID, Options{}, false); err != nil {
		t.Fatal(err)
	}
	l2 := cell.NewLayout(fresh, tenant)
	noPlaintext(t, l2.CipherHome, canary)
	if ents, _ := os.ReadDir(l2.Home); len(ents) != 0 {
		t.Fatalf("the restored home is in plaintext at %s", l2.Home)
	}
	mnt2, unmount2, err := mountState(ctx, in2, tenant, l2)
	if err != nil {
		t.Fatal(err)
	}
	notes, _ := os.ReadFile(filepath.Join(mnt2, "notes.txt"))
	restoredDB, _ := os.ReadFile(filepath.Join(mnt2, ".openclaw", "state.sqlite"))
	unmount2()
	if string(notes) != canary || !bytes.Equal(restoredDB, dbBytes) {
		t.Fatalf("restored through the new volume: notes %q, database %d bytes (want %d, equal)", notes, len(restoredDB), len(dbBytes))
	}
}

// noPlaintext fails if any file under root contains s.
func noPlaintext(t *testing.T, root, s string) {
	t.Helper()
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(s)) {
			t.Errorf("plaintext %q in %s", s, p)
		}
		return nil
	})
}

// requireFUSE skips without root and /dev/fuse, unless CI=true.
func requireFUSE(t *testing.T) {
	t.Helper()
	_, err := os.Stat("/dev/fuse")
	if os.Geteuid() == 0 && err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("needs root and /dev/fuse (euid %d, %v) and CI=true forbids skipping", os.Geteuid(), err)
	}
	t.Skipf("needs root and /dev/fuse (euid %d, %v)", os.Geteuid(), err)
}

// Rows per transaction of the running cell's writer.
const liveRowsPerTx = 20

// TestRunningCellHelper is the running cell of TestBackupRunningEncryptedCell,
// in two processes. "server" runs in a mount namespace of its own and
// serves the encrypted state at the cell's home there, as clawhold up does
// for the sandbox (the test's namespace keeps an empty home), then starts
// "writer" in that namespace: named and with the uid of the cell's sandbox
// init, it commits transactions of liveRowsPerTx rows into a WAL database
// in the home until it is killed, printing "TX n" after each commit.
func TestRunningCellHelper(t *testing.T) {
	role := os.Getenv("BACKUP_CELL_ROLE")
	if role == "" {
		t.Skip("helper process for TestBackupRunningEncryptedCell")
	}
	fail := func(err error) {
		fmt.Println("ERROR", role, err)
		os.Exit(1)
	}
	home := os.Getenv("BACKUP_CELL_HOME")
	switch role {
	case "server":
		// Nothing mounted here may reach the parent's namespace.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fail(err)
		}
		key, _ := hex.DecodeString(os.Getenv("BACKUP_CELL_KEY"))
		if _, err := cellfs.Mount(context.Background(), os.Getenv("BACKUP_CELL_CIPHER"), home, cellfs.Options{Key: key}); err != nil {
			fail(err)
		}
		// go-fuse leaves a direct mount's /dev/fuse descriptor inheritable:
		// a writer holding it would keep the connection open after the
		// server is killed, and hang in it for good.
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); link == "/dev/fuse" {
				n, _ := strconv.Atoi(e.Name())
				unix.CloseOnExec(n)
			}
		}
		w := exec.Command(os.Args[0], "-test.run=^TestRunningCellHelper$")
		w.Args[0] = "clawhold-sandbox-init"
		w.Env = append(os.Environ(), "BACKUP_CELL_ROLE=writer")
		w.Stdout, w.Stderr = os.Stdout, os.Stderr
		w.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := w.Start(); err != nil {
			fail(err)
		}
		fmt.Println("READY")
		fail(fmt.Errorf("the writer exited: %v", w.Wait()))
	case "writer":
		ids := strings.Split(os.Getenv("BACKUP_CELL_IDS"), ":")
		uid, _ := strconv.Atoi(ids[0])
		gid, _ := strconv.Atoi(ids[1])
		if err := syscall.Setgroups(nil); err != nil {
			fail(err)
		}
		if err := syscall.Setgid(gid); err != nil {
			fail(err)
		}
		if err := syscall.Setuid(uid); err != nil {
			fail(err)
		}
		// Changing credentials cleared the parent-death signal.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil || os.Getppid() == 1 {
			fail(fmt.Errorf("parent-death signal: %v", err))
		}
		fmt.Println("PID", os.Getpid())
		dir := filepath.Join(home, ".openclaw")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			fail(err)
		}
		db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(dir, "state.sqlite"), url.Values{
			"_pragma": {"busy_timeout(10000)", "journal_mode(wal)", "synchronous(normal)"},
		}))
		if err != nil {
			fail(err)
		}
		db.SetMaxOpenConns(1)
		if _, err := db.Exec(`CREATE TABLE t (tx INTEGER, i INTEGER, v TEXT)`); err != nil {
			fail(err)
		}
		row := liveCanary + strings.Repeat("x", 2000)
		for n := 1; ; n++ {
			tx, err := db.Begin()
			if err != nil {
				fail(err)
			}
			for i := range liveRowsPerTx {
				if _, err := tx.Exec(`INSERT INTO t VALUES (?, ?, ?)`, n, i, row); err != nil {
					fail(err)
				}
			}
			if err := tx.Commit(); err != nil {
				fail(err)
			}
			fmt.Println("TX", n)
		}
	}
}

const liveCanary = "CANARY-LIVE-CELL-5c2d"

// TestBackupRunningEncryptedCell backs up a running cell whose state is
// encrypted, with real processes: its plaintext is mounted only in the
// cell's mount namespace, and a process there keeps committing SQLite
// transactions throughout. The backup must be taken online (the writer
// never stops), verify, and restore onto a fresh data dir a database that
// passes integrity_check and holds a prefix of whole transactions.
func TestBackupRunningEncryptedCell(t *testing.T) {
	requireFUSE(t)
	// Not a tenant name other tests use: cellInitPID goes by the uid
	// derived from it, host-wide.
	const tenant = "livebackup"
	ctx := context.Background()
	base := t.TempDir()
	dataDir, backupDir := filepath.Join(base, "data"), filepath.Join(base, "backups")
	in := openEncrypted(t, dataDir, backupDir, true)
	if err := in.EnsureTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	l := cell.NewLayout(dataDir, tenant)
	ids := cell.IDsFor(tenant)

	// The volume and its key, as clawhold up makes them; the home's mount
	// point stays empty here.
	_, unmount, err := mountState(ctx, in, tenant, l)
	if err != nil {
		t.Fatal(err)
	}
	unmount()
	gens, err := in.StateVolumeKeys(ctx, tenant)
	if err != nil || len(gens) != 1 {
		t.Fatalf("a new volume's keys: %d generations, %v", len(gens), err)
	}
	key := gens[0]
	if err := os.MkdirAll(l.Home, 0o700); err != nil {
		t.Fatal(err)
	}
	// The cell's uid reaches its home, as it does in its sandbox.
	for d := l.Dir; d != filepath.Dir(filepath.Dir(base)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}

	srv := exec.Command(os.Args[0], "-test.run=^TestRunningCellHelper$")
	srv.Env = append(os.Environ(), "BACKUP_CELL_ROLE=server", "BACKUP_CELL_CIPHER="+l.CipherHome,
		"BACKUP_CELL_HOME="+l.Home, "BACKUP_CELL_KEY="+hex.EncodeToString(key),
		fmt.Sprintf("BACKUP_CELL_IDS=%d:%d", ids.UID, ids.GID))
	clear(key)
	// The parent-death signal fires when the forking thread exits, and
	// Create's namespace walk makes the thread it ran on exit: fork from
	// a thread locked to this test instead.
	runtime.LockOSThread()
	srv.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	srv.Stderr = os.Stderr
	out, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// The writer first, while its requests are still answered; the
	// namespace and its mount end with the server.
	var writerPID atomic.Int64
	t.Cleanup(func() {
		if pid := writerPID.Load(); pid != 0 {
			syscall.Kill(int(pid), syscall.SIGKILL)
		}
		srv.Process.Kill()
		srv.Wait()
		runtime.UnlockOSThread()
	})
	var committed atomic.Int64
	problem := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, "TX "); ok {
				v, _ := strconv.ParseInt(n, 10, 64)
				committed.Store(v)
			} else if n, ok := strings.CutPrefix(line, "PID "); ok {
				v, _ := strconv.ParseInt(n, 10, 64)
				writerPID.Store(v)
			} else if strings.HasPrefix(line, "ERROR") {
				select {
				case problem <- line:
				default:
				}
			}
		}
		select {
		case problem <- "the cell's processes ended":
		default:
		}
	}()
	waitCommitted := func(n int64) {
		t.Helper()
		deadline := time.After(time.Minute)
		for committed.Load() < n {
			select {
			case p := <-problem:
				t.Fatalf("running cell: %s", p)
			case <-deadline:
				t.Fatalf("the writer committed %d transactions in a minute, waiting for %d", committed.Load(), n)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	waitCommitted(150)
	if pid := cellInitPID(ids); pid == 0 {
		t.Fatal("the simulated cell's init is not found")
	} else if pid != int(writerPID.Load()) {
		t.Fatalf("cellInitPID found process %d, not the writer %d", pid, writerPID.Load())
	}

	before := committed.Load()
	start := time.Now()
	m, err := Create(ctx, in, tenant, Options{})
	after := committed.Load()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backup took %v; the writer was at transaction %d before, %d after", time.Since(start), before, after)
	if after <= before {
		t.Fatalf("the writer committed nothing during the backup (transaction %d before and after)", before)
	}
	// Still running and committing: nothing was stopped.
	waitCommitted(after + 5)

	if _, err := Verify(ctx, in.Root, backupDir, m.ID); err != nil {
		t.Fatal(err)
	}
	var sawDB bool
	for _, e := range m.Entries {
		sawDB = sawDB || (e.Path == "home/.openclaw/state.sqlite" && e.Kind == KindSQLite)
		if strings.Contains(e.Path, scratchPrefix) || strings.HasSuffix(e.Path, "-wal") || strings.HasSuffix(e.Path, "-shm") {
			t.Errorf("the backup holds %s", e.Path)
		}
	}
	if !sawDB {
		t.Fatalf("the backup has no snapshot of the running cell's database: %+v", m.Entries)
	}
	noPlaintext(t, backupDir, liveCanary)
	noPlaintext(t, l.CipherHome, liveCanary)
	if ents, _ := os.ReadDir(l.Home); len(ents) != 0 {
		t.Fatalf("the host sees the cell's plaintext at %s", l.Home)
	}

	fresh := filepath.Join(base, "fresh")
	os.MkdirAll(fresh, 0o700)
	rootKey, _ := os.ReadFile(filepath.Join(dataDir, "root.key"))
	os.WriteFile(filepath.Join(fresh, "root.key"), rootKey, 0o600)
	in2 := openEncrypted(t, fresh, backupDir, false)
	if _, err := Restore(ctx, in2, m.ID, Options{}, false); err != nil {
		t.Fatal(err)
	}
	l2 := cell.NewLayout(fresh, tenant)
	mnt, unmount2, err := mountState(ctx, in2, tenant, l2)
	if err != nil {
		t.Fatal(err)
	}
	// SQLite runs on a copy: this process serves that mount.
	restored, err := os.ReadFile(filepath.Join(mnt, ".openclaw", "state.sqlite"))
	unmount2()
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(t.TempDir(), "state.sqlite")
	if err := os.WriteFile(copyPath, restored, 0o600); err != nil {
		t.Fatal(err)
	}
	rdb, err := sql.Open("sqlite", sqliteDSN(copyPath, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	var ok string
	if err := rdb.QueryRow(`PRAGMA integrity_check`).Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("integrity_check of the restored database: %q, %v", ok, err)
	}
	var txs, lo, hi, partial int64
	if err := rdb.QueryRow(`SELECT count(DISTINCT tx), coalesce(min(tx), 0), coalesce(max(tx), 0) FROM t`).Scan(&txs, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if err := rdb.QueryRow(`SELECT count(*) FROM (SELECT tx FROM t GROUP BY tx HAVING count(*) != ?)`, liveRowsPerTx).Scan(&partial); err != nil {
		t.Fatal(err)
	}
	t.Logf("restored transactions %d..%d (%d distinct), %d partial", lo, hi, txs, partial)
	if partial != 0 || lo != 1 || txs != hi || hi < before || hi > committed.Load() {
		t.Fatalf("the restored database is not a prefix of whole transactions between %d and %d: transactions %d..%d, %d distinct, %d partial",
			before, committed.Load(), lo, hi, txs, partial)
	}
}
