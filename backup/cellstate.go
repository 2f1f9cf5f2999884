package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/cellfs"
	"github.com/clawhold/clawhold/instance"
)

// A cell's state may be encrypted (cells.encrypted_state): on disk it is
// then cellfs ciphertext in CipherHome, and while the cell runs its
// plaintext is mounted (served by clawhold up) only in the cell's mount
// namespace, at the same path, Layout.Home, that is empty on the host. The
// backup still holds plaintext, sealed like everything else.
//
// A running cell is backed up online, as a plaintext one is: one goroutine
// locks its OS thread, gives it a root and working directory of its own
// (unshare CLONE_FS) and moves it into the mount namespace of the cell's
// sandbox init (setns), where Layout.Home is the plaintext view. Mount
// namespaces are per thread, so every path that goroutine opens resolves
// there, and only there; it does the whole walk, every file read and every
// SQLite snapshot (one connection, opened and used on it; no temporary
// files, no sorter threads), so databases are snapshotted with VACUUM INTO
// under their live writers, consistent like any other. The snapshot goes
// into a root-owned 0700 directory at the top of the home (scratchPrefix):
// on the encrypted volume, never in plaintext on the host's disk, and
// unreadable to the cell. It is read back through the descriptor that
// created it, sealed into blobs created relative to the staging directory's
// descriptor (its path does not resolve in the cell's namespace), and
// removed. The thread is never unlocked, so it ends with the goroutine
// instead of running anything else in the cell's namespace; threads the
// runtime starts meanwhile are cloned from a clean template thread, not
// from a locked one. (The thread's exit fires the parent-death signal of
// any child an unlocked goroutine once forked from it: a process calling
// Create must not rely on Pdeathsig from unlocked goroutines.) This needs
// root; without it Create fails with an error saying so, and nothing is
// stopped.
//
// SQLite is never run by the process that serves the mount (a Go process
// faulting on mmap'd pages of a mount it serves can stall its own
// collector): clawhold up serves the running cells' state, so its
// scheduled backups of encrypted cells run in a child `clawhold backup
// create` (Options.Spawn).
//
// A stopped cell is read through a private cellfs mount: nothing writes
// then, so every file, databases and their -wal included, is copied as it
// is (no SQLite on that mount, which this process serves).

// scratchPrefix names the directories, at the top of a running encrypted
// cell's home, that its database snapshots are written into.
const scratchPrefix = ".clawhold-backup-"

// isScratch reports whether info, a directory at the top of a cell's home,
// is a backup's scratch directory: root's, which the cell's uid cannot
// make, so never the cell's own data.
func isScratch(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0 && strings.HasPrefix(info.Name(), scratchPrefix)
}

// encryptedState reports whether tenant's cell keeps its state in cellfs.
func encryptedState(l cell.Layout) bool {
	_, err := os.Stat(filepath.Join(l.CipherHome, "cellfs.conf"))
	return err == nil
}

// cellInitPID returns the pid of the running cell's sandbox init (the
// clawhold-sandbox-init process running as the cell's uid), or 0.
func cellInitPID(ids cell.IDs) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir, err := os.Open("/proc/" + e.Name())
		if err != nil {
			continue
		}
		ok := isCellInit(dir, ids)
		dir.Close()
		if ok {
			return pid
		}
	}
	return 0
}

// isCellInit reports whether the process whose /proc directory is dir is
// the sandbox init of the cell running as ids.
func isCellInit(dir *os.File, ids cell.IDs) bool {
	cmd, err := readAt(dir, "cmdline")
	if err != nil || !bytes.HasPrefix(cmd, []byte("clawhold-sandbox-init\x00")) {
		return false
	}
	status, err := readAt(dir, "status")
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				return false
			}
			uid, err := strconv.Atoi(fields[0])
			return err == nil && uid == ids.UID
		}
	}
	return false
}

func readAt(dir *os.File, name string) ([]byte, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(f)
}

// cellMountNS opens the mount namespace of the running cell of ids, or
// returns nil if the cell is not running.
func cellMountNS(ids cell.IDs) (*os.File, error) {
	pid := cellInitPID(ids)
	if pid == 0 {
		return nil, nil
	}
	// Checked again through the process's /proc directory, which stays
	// that process's once open: had the init exited and its pid been
	// reused, the check fails rather than hand over another namespace.
	dir, err := os.Open("/proc/" + strconv.Itoa(pid))
	if err != nil {
		return nil, nil // exited: the cell stopped
	}
	defer dir.Close()
	if !isCellInit(dir, ids) {
		return nil, nil
	}
	fd, err := unix.Openat(int(dir.Fd()), "ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the mount namespace of the running cell (pid %d; needs root): %w", pid, err)
	}
	return os.NewFile(uintptr(fd), "mnt"), nil
}

// addHome adds tenant's cell home as home/...: as it is on the host, read
// in a running encrypted cell's mount namespace, or through a private
// mount of a stopped one's encrypted state.
func (w *writer) addHome(ctx context.Context, in *instance.Instance, tenant string, l cell.Layout) error {
	if !encryptedState(l) {
		return w.addTree(l.Home, "home")
	}
	ns, err := cellMountNS(cell.IDsFor(tenant))
	if err != nil {
		return fmt.Errorf("backup %s: %w", w.id, err)
	}
	if ns != nil {
		defer ns.Close()
		return w.addLiveHome(ns, l.Home)
	}
	mnt, unmount, err := mountState(ctx, in, tenant, l)
	if err != nil {
		return fmt.Errorf("backup %s: %w", w.id, err)
	}
	defer unmount()
	w.raw = true
	defer func() { w.raw = false }()
	return w.addTree(mnt, "home")
}

// addLiveHome adds home, the plaintext view of a running encrypted cell's
// state in the cell's mount namespace ns (see the comment at the top).
func (w *writer) addLiveHome(ns *os.File, home string) error {
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread leaves the host's mount namespace,
		// so it must end with this goroutine rather than run others.
		runtime.LockOSThread()
		done <- w.addHomeInNamespace(ns, home)
	}()
	return <-done
}

// addHomeInNamespace runs on a locked thread of its own.
func (w *writer) addHomeInNamespace(ns *os.File, home string) error {
	// setns refuses a thread that shares its root and working directory
	// with others, as Go's threads do.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("backup %s: entering the running cell's mount namespace (needs root): %w", w.id, err)
	}
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("backup %s: entering the running cell's mount namespace (needs root): %w", w.id, err)
	}
	// An empty directory here would make an empty backup of the home.
	var st unix.Statfs_t
	if err := unix.Statfs(home, &st); err != nil {
		return fmt.Errorf("backup %s: the running cell's home: %w", w.id, err)
	}
	if st.Type != unix.FUSE_SUPER_MAGIC {
		return fmt.Errorf("backup %s: %s is not the encrypted state's mount in the running cell", w.id, home)
	}
	w.removeStaleScratch(home)
	scratch, err := os.MkdirTemp(home, scratchPrefix)
	if err != nil {
		return fmt.Errorf("backup %s: %w", w.id, err)
	}
	defer os.RemoveAll(scratch)
	saved := w.scratch
	w.scratch = scratch
	defer func() { w.scratch = saved }()
	return w.addTree(home, "home")
}

// removeStaleScratch removes scratch directories left in home by backups
// that crashed; one younger than a day may be a backup still running.
func (w *writer) removeStaleScratch(home string) {
	ents, _ := os.ReadDir(home)
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.IsDir() || !isScratch(info) || w.o.Now().Sub(info.ModTime()) < 24*time.Hour {
			continue
		}
		if err := os.RemoveAll(filepath.Join(home, e.Name())); err != nil {
			w.o.Logger.Warn("backup: removing a stale scratch directory", "dir", e.Name(), "err", err)
		}
	}
}

// mountState mounts tenant's encrypted state privately (a 0700 directory
// inside the cell's own 0700 directory) and returns the mount point.
func mountState(ctx context.Context, in *instance.Instance, tenant string, l cell.Layout) (string, func(), error) {
	gens, err := in.StateVolumeKeys(ctx, tenant)
	if err != nil {
		return "", nil, err
	}
	defer func() {
		for _, k := range gens {
			clear(k)
		}
	}()
	if err := os.MkdirAll(l.CipherHome, 0o700); err != nil {
		return "", nil, err
	}
	if os.Geteuid() == 0 {
		ids := cell.IDsFor(tenant)
		os.Lchown(l.CipherHome, ids.UID, ids.GID)
	}
	mnt, err := os.MkdirTemp(l.Dir, ".backup-mnt-")
	if err != nil {
		return "", nil, err
	}
	mctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	srv, err := cellfs.Mount(mctx, l.CipherHome, mnt, cellfs.Options{Keys: gens, Logger: in.Logger})
	if err != nil {
		cancel()
		os.Remove(mnt)
		return "", nil, fmt.Errorf("mounting the encrypted state of %s: %w", tenant, err)
	}
	return mnt, func() {
		srv.Unmount()
		cancel()
		os.Remove(mnt)
	}, nil
}

// copyCellTree copies the staged tree src into dst (an encrypted cell's
// mount), keeping modes, symlinks and the cell's ownership.
func copyCellTree(src, dst string, ids cell.IDs) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			if err := os.MkdirAll(target, info.Mode().Perm()); err != nil {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil && !errors.Is(err, fs.ErrExist) {
				return err
			}
		case info.Mode().IsRegular():
			if err := copyFile(p, target, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil
		}
		if os.Geteuid() == 0 {
			if err := os.Lchown(target, ids.UID, ids.GID); err != nil {
				return err
			}
		}
		return nil
	})
}

func copyFile(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// restoreEncryptedHome writes the staged home into tenant's encrypted
// volume, replacing it when force is set.
func restoreEncryptedHome(ctx context.Context, in *instance.Instance, tenant string, l cell.Layout, staged string, force bool) error {
	if _, err := os.Lstat(staged); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if ents, _ := os.ReadDir(l.CipherHome); len(ents) > 0 {
		if !force {
			return fmt.Errorf("%s is not empty: pass --force to replace it", l.CipherHome)
		}
		if err := os.RemoveAll(l.CipherHome); err != nil {
			return err
		}
	}
	mnt, unmount, err := mountState(ctx, in, tenant, l)
	if err != nil {
		return err
	}
	defer unmount()
	return copyCellTree(staged, mnt, cell.IDsFor(tenant))
}
