package cellfs

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/clawhold/clawhold/keys"
)

// Options configure a mount.
type Options struct {
	Key []byte // 32-byte volume master key (a volume of one key generation)
	// Keys are the volume's key generations, oldest first, each 32 bytes
	// (instead of Key): the first names files and directories and seals
	// the contents of files created under it; new files are sealed under
	// the last. A file keeps the generation it was created under.
	Keys [][]byte
	// OnTamper is called for every authentication failure (the reader gets
	// EIO). path is the plaintext path inside the mount; block is the
	// content block index, or -1 for headers, names and symlink targets.
	OnTamper func(path string, block int64, err error)
	Logger   *slog.Logger
	// Algorithm for new files; 0 means keys.DefaultAlgorithm().
	Algorithm keys.Algorithm
}

// Server is a mounted cellfs.
type Server struct {
	srv        *fuse.Server
	mountpoint string
}

// volumeConf is cipherDir/cellfs.conf. It carries no secret: the key check
// only lets Mount refuse a wrong key up front.
type volumeConf struct {
	Version  int    `json:"version"`
	KeyCheck []byte `json:"key_check"`
}

// initVolume checks cipherDir against the key, or initialises it (root
// IV and conf) when it is empty.
func initVolume(v *Volume, cipherDir string) error {
	b, err := os.ReadFile(filepath.Join(cipherDir, confName))
	if errors.Is(err, os.ErrNotExist) {
		ents, err := os.ReadDir(cipherDir)
		if err != nil {
			return fmt.Errorf("cellfs: read %s: %w", cipherDir, err)
		}
		if len(ents) > 0 {
			return fmt.Errorf("cellfs: %s is not empty and has no %s", cipherDir, confName)
		}
		if err := writeSynced(filepath.Join(cipherDir, dirIVName), newDirIV(), 0o444); err != nil {
			return fmt.Errorf("cellfs: init %s: %w", cipherDir, err)
		}
		conf, _ := json.Marshal(volumeConf{Version: formatVersion, KeyCheck: v.KeyCheck()})
		if err := writeSynced(filepath.Join(cipherDir, confName), conf, 0o444); err != nil {
			return fmt.Errorf("cellfs: init %s: %w", cipherDir, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("cellfs: read volume config: %w", err)
	}
	var c volumeConf
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("cellfs: parse %s: %w", confName, err)
	}
	if c.Version != formatVersion {
		return fmt.Errorf("cellfs: volume format %d not supported", c.Version)
	}
	if subtle.ConstantTimeCompare(c.KeyCheck, v.KeyCheck()) != 1 {
		return errors.New("cellfs: wrong key for this volume")
	}
	return nil
}

// Mount serves the ciphertext directory cipherDir as plaintext at
// mountpoint. It mounts directly (mount(2), so it needs root and no
// fusermount), with allow_other so the cell's uid can use it and
// default_permissions so the kernel checks modes against the ownership
// passed through from the ciphertext files. Cancelling ctx unmounts.
func Mount(ctx context.Context, cipherDir, mountpoint string, o Options) (*Server, error) {
	gens := o.Keys
	if len(gens) == 0 {
		gens = [][]byte{o.Key}
	}
	v, err := newVolume(gens, o.Algorithm)
	if err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	v.OnTamper = func(path string, block int64, err error) {
		log.Warn("cellfs: tampered or torn ciphertext", "path", path, "block", block, "err", err)
		if o.OnTamper != nil {
			o.OnTamper(path, block, err)
		}
	}
	cipherDir, err = filepath.Abs(cipherDir)
	if err != nil {
		return nil, fmt.Errorf("cellfs: %w", err)
	}
	if err := initVolume(v, cipherDir); err != nil {
		return nil, err
	}
	r := &root{v: v, cipherDir: cipherDir, open: map[uint64]*openFile{}, sizes: map[uint64]sizeEntry{}}
	var st syscall.Stat_t
	if err := syscall.Stat(cipherDir, &st); err != nil {
		return nil, fmt.Errorf("cellfs: stat %s: %w", cipherDir, err)
	}
	rn := &node{r: r}
	// Every change goes through this server, which invalidates what it
	// changes, so the kernel may keep entries and attributes for long:
	// each lookup it does not send saves a round trip (OpenClaw's start
	// stats thousands of files). Negative entries too (missing config
	// files are looked up again and again).
	sec := time.Minute
	// go-fuse opens /dev/fuse without O_CLOEXEC: every process this one
	// starts afterwards would inherit the descriptor, and with it the
	// power to read this volume's plaintext requests and to answer them
	// (a cell's sandbox would hold the other cells' volumes). Holding
	// ForkLock keeps any fork out until the descriptor is marked.
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	srv, err := fs.Mount(mountpoint, rn, &fs.Options{
		EntryTimeout:    &sec,
		AttrTimeout:     &sec,
		NegativeTimeout: &sec,
		MountOptions: fuse.MountOptions{
			AllowOther:        true,
			DirectMountStrict: true, // no fallback to fusermount: it would fork under ForkLock
			FsName:            "cellfs",
			Name:              "cellfs",
			Options:           []string{"default_permissions"},
			MaxWrite:          128 << 10,
		},
		RootStableAttr: &fs.StableAttr{Ino: st.Ino, Mode: syscall.S_IFDIR},
	})
	if err != nil {
		return nil, fmt.Errorf("cellfs: mount %s on %s: %w", cipherDir, mountpoint, err)
	}
	if err := cloexecFUSE(); err != nil {
		srv.Unmount()
		return nil, fmt.Errorf("cellfs: mount %s: %w", mountpoint, err)
	}
	s := &Server{srv: srv, mountpoint: mountpoint}
	go func() {
		select {
		case <-ctx.Done():
			s.Unmount()
		case <-s.waitCh():
		}
	}()
	log.Info("cellfs: mounted", "cipher_dir", cipherDir, "mountpoint", mountpoint, "algorithm", v.alg.String())
	return s, nil
}

func (s *Server) waitCh() <-chan struct{} {
	ch := make(chan struct{})
	go func() { s.srv.Wait(); close(ch) }()
	return ch
}

// Unmount unmounts the file system; it is safe to call more than once.
// It fails (EBUSY) while files are open in the mount.
func (s *Server) Unmount() error {
	err := s.srv.Unmount()
	if err != nil {
		return fmt.Errorf("cellfs: unmount %s: %w", s.mountpoint, err)
	}
	return nil
}

// Wait blocks until the file system is unmounted.
func (s *Server) Wait() { s.srv.Wait() }

// cloexecFUSE marks every /dev/fuse descriptor of this process
// close-on-exec. The caller holds syscall.ForkLock.
func cloexecFUSE() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || target != "/dev/fuse" {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return fmt.Errorf("marking /dev/fuse descriptor %d close-on-exec: %w", fd, err)
		}
	}
	return nil
}
