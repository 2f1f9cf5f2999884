package backup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/cellfs"
	"github.com/clawhold/clawhold/instance"
)

// A cell's state may be encrypted (cells.encrypted_state): on disk it is
// then cellfs ciphertext in CipherHome, and its plaintext exists only in
// the running cell's mount namespace. The backup still holds plaintext
// (sealed like everything else), read through a private cellfs mount while
// the cell is stopped: nothing writes then, so every file, databases and
// their -wal included, is copied as it is (no SQLite is opened on the
// mount: a Go process faulting on mmap'd pages of a mount it serves can
// stall its own collector).
//
// A running encrypted cell is not snapshotted in place: SQLite resolves
// /proc/<pid>/root (a symlink) back to the host's empty mount point, and a
// Go process cannot enter another mount namespace for its database/sql
// goroutines. Create returns ErrCellRunning; `clawhold backup create`
// then stops the cell through clawhold up, backs it up and lets the next
// request start it again.

// ErrCellRunning is returned for a running cell whose state is encrypted.
var ErrCellRunning = errors.New("the cell is running and its state is encrypted: stop it first (clawhold cells stop)")

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
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.HasPrefix(cmd, []byte("clawhold-sandbox-init\x00")) {
			continue
		}
		if uid, ok := procUID(pid); ok && uid == ids.UID {
			return pid
		}
	}
	return 0
}

func procUID(pid int) (int, bool) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Uid:"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				n, err := strconv.Atoi(fields[0])
				return n, err == nil
			}
		}
	}
	return 0, false
}

// homeSource returns where Create reads tenant's cell home from, whether
// files are to be copied as they are (quiescent), and a func to release it.
func homeSource(ctx context.Context, in *instance.Instance, tenant string, l cell.Layout) (dir string, raw bool, release func(), err error) {
	if !encryptedState(l) {
		return l.Home, false, func() {}, nil
	}
	if cellInitPID(cell.IDsFor(tenant)) != 0 {
		return "", false, nil, ErrCellRunning
	}
	mnt, unmount, err := mountState(ctx, in, tenant, l)
	if err != nil {
		return "", false, nil, err
	}
	return mnt, true, unmount, nil
}

// mountState mounts tenant's encrypted state privately (a 0700 directory
// inside the cell's own 0700 directory) and returns the mount point.
func mountState(ctx context.Context, in *instance.Instance, tenant string, l cell.Layout) (string, func(), error) {
	db, err := in.DB(ctx, tenant)
	if err != nil {
		return "", nil, err
	}
	kr, err := in.Keyring(ctx, tenant)
	if err != nil {
		return "", nil, err
	}
	key, err := cell.VolumeKey(ctx, db, kr, tenant, cell.StateVolume)
	if err != nil {
		return "", nil, err
	}
	defer clear(key)
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
	srv, err := cellfs.Mount(mctx, l.CipherHome, mnt, cellfs.Options{Key: key, Logger: in.Logger})
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
