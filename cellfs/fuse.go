package cellfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// tmpPrefix names directories under construction (mkdir writes the IV file
// before the directory appears under its real name).
const tmpPrefix = "cellfs.tmp."

// root is the state shared by all nodes of one mount.
type root struct {
	v         *Volume
	cipherDir string

	mu sync.Mutex
	// open holds one File per lower inode with open handles, shared by all
	// handles and hard links, so that they share one lock and one size.
	open map[uint64]*openFile
	// sizes caches the plaintext size of closed files, keyed by lower
	// inode and valid while the lower size, mtime and ctime are unchanged.
	sizes map[uint64]sizeEntry
}

type openFile struct {
	fl   *File
	refs int
}

type sizeEntry struct {
	csize        int64
	mtime, ctime syscall.Timespec
	size         int64
}

// node is a file, directory or symlink of the plaintext view.
type node struct {
	fs.Inode
	r *root

	ivMu sync.Mutex
	iv   []byte // directory IV, loaded on first use
}

var (
	_ fs.NodeLookuper   = (*node)(nil)
	_ fs.NodeGetattrer  = (*node)(nil)
	_ fs.NodeSetattrer  = (*node)(nil)
	_ fs.NodeOpener     = (*node)(nil)
	_ fs.NodeCreater    = (*node)(nil)
	_ fs.NodeMkdirer    = (*node)(nil)
	_ fs.NodeMknoder    = (*node)(nil)
	_ fs.NodeRmdirer    = (*node)(nil)
	_ fs.NodeUnlinker   = (*node)(nil)
	_ fs.NodeRenamer    = (*node)(nil)
	_ fs.NodeLinker     = (*node)(nil)
	_ fs.NodeSymlinker  = (*node)(nil)
	_ fs.NodeReadlinker = (*node)(nil)
	_ fs.NodeReaddirer  = (*node)(nil)
	_ fs.NodeStatfser   = (*node)(nil)
	_ fs.NodeFsyncer    = (*node)(nil)
)

// errno maps an error to what the caller sees: authentication failures
// are EIO, system errors keep their errno.
func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	if errors.Is(err, ErrTampered) {
		return syscall.EIO
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

func (n *node) newChild() *node { return &node{r: n.r} }

// lowerPath is the ciphertext path of n, built by encrypting each
// component under its parent's IV (names change on rename, so it is not
// stored).
func (n *node) lowerPath() (string, error) {
	var comps []string
	cur := &n.Inode
	rootIno := n.Root()
	for cur != rootIno {
		name, parent := cur.Parent()
		if parent == nil {
			return "", syscall.ENOENT
		}
		ln, _, _, err := parent.Operations().(*node).childLower(name)
		if err != nil {
			return "", err
		}
		comps = append(comps, ln)
		cur = parent
	}
	slices.Reverse(comps)
	return filepath.Join(append([]string{n.r.cipherDir}, comps...)...), nil
}

// plainPath is the path inside the mount, for tamper reports and logs.
func (n *node) plainPath() string { return "/" + n.Path(n.Root()) }

// childPlain is the path inside the mount of n's child name.
func (n *node) childPlain(name string) string { return path.Join(n.plainPath(), name) }

func (n *node) dirIV() ([]byte, error) {
	n.ivMu.Lock()
	defer n.ivMu.Unlock()
	if n.iv != nil {
		return n.iv, nil
	}
	p, err := n.lowerPath()
	if err != nil {
		return nil, err
	}
	iv, err := os.ReadFile(filepath.Join(p, dirIVName))
	if err != nil {
		return nil, fmt.Errorf("cellfs: directory IV of %s: %w", n.plainPath(), err)
	}
	if len(iv) != dirIVLen {
		err := fmt.Errorf("%w: directory IV of %s has %d bytes", ErrTampered, n.plainPath(), len(iv))
		n.r.v.tamper(n.plainPath(), -1, err)
		return nil, err
	}
	n.iv = iv
	return iv, nil
}

// childLower returns the on-disk name of child name, its full encoded
// name and whether it is a long name.
func (n *node) childLower(name string) (lower, enc string, long bool, err error) {
	iv, err := n.dirIV()
	if err != nil {
		return "", "", false, err
	}
	enc, err = n.r.v.EncryptName(iv, name)
	if err != nil {
		return "", "", false, syscall.EINVAL
	}
	lower, long = lowerName(enc)
	return lower, enc, long, nil
}

// childPath resolves name in directory n to its lower path, writing the
// long-name side file first when create is set.
func (n *node) childPath(name string, create bool) (dir, lower string, long bool, err error) {
	dir, err = n.lowerPath()
	if err != nil {
		return "", "", false, err
	}
	ln, enc, long, err := n.childLower(name)
	if err != nil {
		return "", "", false, err
	}
	if long && create {
		if err := os.WriteFile(filepath.Join(dir, ln+longNameSuffix), []byte(enc), 0o444); err != nil {
			return "", "", false, fmt.Errorf("cellfs: long name side file: %w", err)
		}
	}
	return dir, filepath.Join(dir, ln), long, nil
}

func removeSide(p string, long bool) {
	if long {
		os.Remove(p + longNameSuffix)
	}
}

// fillAttr copies st into out, replacing the size of regular files and
// symlinks with the plaintext size.
// plain is the file's path in the volume, for tamper reports (a child
// being looked up is not in the tree yet, so its node cannot say).
func (n *node) fillAttr(p, plain string, st *syscall.Stat_t, out *fuse.Attr) {
	out.FromStat(st)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		out.Size = uint64(n.r.plainSize(p, st, plain))
	case syscall.S_IFLNK:
		if t, err := n.readlink(p); err == nil {
			out.Size = uint64(len(t))
		}
	}
}

func (r *root) plainSize(p string, st *syscall.Stat_t, plain string) int64 {
	r.mu.Lock()
	if of, ok := r.open[st.Ino]; ok {
		r.mu.Unlock()
		return of.fl.Size()
	}
	if e, ok := r.sizes[st.Ino]; ok && e.csize == st.Size && e.mtime == st.Mtim && e.ctime == st.Ctim {
		r.mu.Unlock()
		return e.size
	}
	r.mu.Unlock()
	size, err := r.v.plainSize(p, plain)
	if err != nil {
		// Estimate so that the file can still be listed and removed;
		// reading it fails with EIO.
		return max(st.Size-headerLen, 0)
	}
	r.mu.Lock()
	if len(r.sizes) > 4096 {
		clear(r.sizes)
	}
	r.sizes[st.Ino] = sizeEntry{csize: st.Size, mtime: st.Mtim, ctime: st.Ctim, size: size}
	r.mu.Unlock()
	return size
}

// acquire returns the shared File of the lower file p, opening it on first
// use. Every acquire is paired with release.
func (r *root) acquire(p, plain string) (*File, uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return nil, 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if of, ok := r.open[st.Ino]; ok {
		of.refs++
		return of.fl, st.Ino, nil
	}
	// Always read-write: a write-only open still needs to read blocks for
	// read-modify-write. The kernel has already checked the caller's
	// permissions (default_permissions).
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		if f, err = os.OpenFile(p, os.O_RDONLY, 0); err != nil {
			return nil, 0, err
		}
	}
	fl, err := r.v.openFileAs(f, plain)
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	r.open[st.Ino] = &openFile{fl: fl, refs: 1}
	return fl, st.Ino, nil
}

func (r *root) register(ino uint64, fl *File) *File {
	r.mu.Lock()
	defer r.mu.Unlock()
	if of, ok := r.open[ino]; ok {
		// Cannot happen for a fresh inode; keep the existing one.
		of.refs++
		fl.Close()
		return of.fl
	}
	r.open[ino] = &openFile{fl: fl, refs: 1}
	return fl
}

func (r *root) release(ino uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	of, ok := r.open[ino]
	if !ok {
		return nil
	}
	if of.refs--; of.refs > 0 {
		return nil
	}
	delete(r.open, ino)
	delete(r.sizes, ino)
	return of.fl.Close()
}

func (n *node) stableAttr(st *syscall.Stat_t) fs.StableAttr {
	return fs.StableAttr{Mode: st.Mode, Ino: st.Ino, Gen: 1}
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	_, p, _, err := n.childPath(name, false)
	if err != nil {
		return nil, errno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, errno(err)
	}
	ch := n.NewInode(ctx, n.newChild(), n.stableAttr(&st))
	ch.Operations().(*node).fillAttr(p, n.childPlain(name), &st, &out.Attr)
	return ch, 0
}

func (n *node) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	p, err := n.lowerPath()
	if err != nil {
		return errno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return errno(err)
	}
	n.fillAttr(p, n.plainPath(), &st, &out.Attr)
	return 0
}

func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	p, err := n.lowerPath()
	if err != nil {
		return errno(err)
	}
	if m, ok := in.GetMode(); ok {
		if err := syscall.Chmod(p, m&07777); err != nil {
			return errno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		su, sg := -1, -1
		if uok {
			su = int(uid)
		}
		if gok {
			sg = int(gid)
		}
		if err := unix.Fchownat(unix.AT_FDCWD, p, su, sg, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return errno(err)
		}
	}
	if sz, ok := in.GetSize(); ok {
		fl, ino, err := n.r.acquire(p, n.plainPath())
		if err != nil {
			return errno(err)
		}
		err = fl.Truncate(int64(sz))
		n.r.release(ino)
		if err != nil {
			return errno(err)
		}
	}
	mt, mok := in.GetMTime()
	at, aok := in.GetATime()
	if mok || aok {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if aok {
			ts[0] = unix.NsecToTimespec(at.UnixNano())
		}
		if mok {
			ts[1] = unix.NsecToTimespec(mt.UnixNano())
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return errno(err)
		}
	}
	return n.Getattr(ctx, f, out)
}

// openFlags are the open(2) flags the lower file must not see: O_TRUNC
// would destroy the header, O_APPEND would make pwrite ignore offsets (the
// kernel already turns appends into writes at EOF).
const openFlagsMask = syscall.O_TRUNC | syscall.O_APPEND | syscall.O_CREAT | syscall.O_EXCL

func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	p, err := n.lowerPath()
	if err != nil {
		return nil, 0, errno(err)
	}
	fl, ino, err := n.r.acquire(p, n.plainPath())
	if err != nil {
		return nil, 0, errno(err)
	}
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		if err := fl.Truncate(0); err != nil {
			n.r.release(ino)
			return nil, 0, errno(err)
		}
	}
	// KEEP_CACHE: every change goes through this mount, so the kernel page
	// cache stays valid across opens; shared mmap (SQLite's -shm) needs the
	// page cache, so direct_io is never used.
	return &handle{r: n.r, fl: fl, ino: ino}, fuse.FOPEN_KEEP_CACHE, 0
}

func callerOwner(ctx context.Context) (int, int, bool) {
	if c, ok := fuse.FromContext(ctx); ok && os.Getuid() == 0 {
		return int(c.Uid), int(c.Gid), true
	}
	return 0, 0, false
}

// createFile makes a new encrypted file at p. It writes the header into an
// unnamed O_TMPFILE and links it into place, so the name never exists
// without a header (a crash cannot leave a 0-byte file that reads as
// tampered). It returns os.ErrExist if p exists.
func (n *node) createFile(ctx context.Context, dir, p string, mode uint32) (*File, *syscall.Stat_t, error) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, mode&07777)
	tmp := err == nil
	if !tmp {
		// No O_TMPFILE on this file system: create in place.
		fd, err = unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, mode&07777)
		if err != nil {
			return nil, nil, err
		}
	}
	f := os.NewFile(uintptr(fd), p)
	fail := func(err error) (*File, *syscall.Stat_t, error) {
		f.Close()
		if !tmp {
			os.Remove(p)
		}
		return nil, nil, err
	}
	// The umask was applied by the kernel for the caller already.
	if err := unix.Fchmod(fd, mode&07777); err != nil {
		return fail(err)
	}
	if uid, gid, ok := callerOwner(ctx); ok {
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fail(err)
		}
	}
	fl, err := n.r.v.CreateFile(f)
	if err != nil {
		return fail(err)
	}
	if tmp {
		err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, p, unix.AT_SYMLINK_FOLLOW)
		if err != nil {
			f.Close()
			if errors.Is(err, unix.EEXIST) {
				return nil, nil, os.ErrExist
			}
			return nil, nil, err
		}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fail(err)
	}
	return fl, &st, nil
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	dir, p, long, err := n.childPath(name, true)
	if err != nil {
		return nil, nil, 0, errno(err)
	}
	fl, st, err := n.createFile(ctx, dir, p, mode)
	if errors.Is(err, os.ErrExist) || errors.Is(err, syscall.EEXIST) {
		if flags&syscall.O_EXCL != 0 {
			return nil, nil, 0, syscall.EEXIST
		}
		// Lost a race with another creator: open the existing file.
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return nil, nil, 0, errno(err)
		}
		ch := n.NewInode(ctx, n.newChild(), n.stableAttr(&st))
		h, fuseFlags, e := ch.Operations().(*node).Open(ctx, flags)
		if e != 0 {
			return nil, nil, 0, e
		}
		ch.Operations().(*node).fillAttr(p, n.childPlain(name), &st, &out.Attr)
		return ch, h, fuseFlags, 0
	}
	if err != nil {
		removeSide(p, long)
		return nil, nil, 0, errno(err)
	}
	ch := n.NewInode(ctx, n.newChild(), n.stableAttr(st))
	fl.path = ch.Operations().(*node).plainPath()
	fl = n.r.register(st.Ino, fl)
	out.FromStat(st)
	out.Size = 0
	return ch, &handle{r: n.r, fl: fl, ino: st.Ino}, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *node) Mknod(ctx context.Context, name string, mode, rdev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	dir, p, long, err := n.childPath(name, true)
	if err != nil {
		return nil, errno(err)
	}
	var st syscall.Stat_t
	if mode&syscall.S_IFMT == syscall.S_IFREG || mode&syscall.S_IFMT == 0 {
		fl, stp, err := n.createFile(ctx, dir, p, mode)
		if err != nil {
			if !errors.Is(err, os.ErrExist) {
				removeSide(p, long)
			}
			return nil, errno(err)
		}
		fl.Close()
		st = *stp
	} else {
		if err := syscall.Mknod(p, mode, int(rdev)); err != nil {
			removeSide(p, long)
			return nil, errno(err)
		}
		if uid, gid, ok := callerOwner(ctx); ok {
			os.Lchown(p, uid, gid)
		}
		if err := syscall.Lstat(p, &st); err != nil {
			return nil, errno(err)
		}
	}
	ch := n.NewInode(ctx, n.newChild(), n.stableAttr(&st))
	ch.Operations().(*node).fillAttr(p, n.childPlain(name), &st, &out.Attr)
	return ch, 0
}

// Mkdir builds the directory with its IV file under a temporary name and
// renames it into place, so a directory never exists without its IV.
func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	dir, p, long, err := n.childPath(name, true)
	if err != nil {
		return nil, errno(err)
	}
	tmp := filepath.Join(dir, tmpPrefix+b64.EncodeToString(newDirIV()))
	fail := func(err error) (*fs.Inode, syscall.Errno) {
		os.RemoveAll(tmp)
		removeSide(p, long)
		return nil, errno(err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fail(err)
	}
	iv := newDirIV()
	if err := writeSynced(filepath.Join(tmp, dirIVName), iv, 0o444); err != nil {
		return fail(err)
	}
	if err := os.Chmod(tmp, os.FileMode(mode&0o777)|unixModeBits(mode)); err != nil {
		return fail(err)
	}
	if uid, gid, ok := callerOwner(ctx); ok {
		if err := os.Lchown(tmp, uid, gid); err != nil {
			return fail(err)
		}
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, p, unix.RENAME_NOREPLACE); err != nil {
		os.RemoveAll(tmp)
		if !errors.Is(err, unix.EEXIST) {
			removeSide(p, long)
		}
		return nil, errno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, errno(err)
	}
	cn := n.newChild()
	cn.iv = iv
	ch := n.NewInode(ctx, cn, n.stableAttr(&st))
	out.FromStat(&st)
	return ch, 0
}

func unixModeBits(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&syscall.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&syscall.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&syscall.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

func writeSynced(p string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	_, p, long, err := n.childPath(name, false)
	if err != nil {
		return errno(err)
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return errno(err)
	}
	for _, e := range ents {
		if e.Name() != dirIVName {
			return syscall.ENOTEMPTY
		}
	}
	ivPath := filepath.Join(p, dirIVName)
	iv, err := os.ReadFile(ivPath)
	if err != nil {
		return errno(err)
	}
	if err := os.Remove(ivPath); err != nil {
		return errno(err)
	}
	if err := syscall.Rmdir(p); err != nil {
		// Something appeared meanwhile: put the IV back.
		writeSynced(ivPath, iv, 0o444)
		return errno(err)
	}
	removeSide(p, long)
	return 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	_, p, long, err := n.childPath(name, false)
	if err != nil {
		return errno(err)
	}
	if err := syscall.Unlink(p); err != nil {
		return errno(err)
	}
	removeSide(p, long)
	return 0
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	_, p1, long1, err := n.childPath(name, false)
	if err != nil {
		return errno(err)
	}
	_, p2, long2, err := np.childPath(newName, true)
	if err != nil {
		return errno(err)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, p1, unix.AT_FDCWD, p2, uint(flags)); err != nil {
		return errno(err)
	}
	// Side files describe names, not files: after an exchange both names
	// still exist and both side files stay right.
	if flags&unix.RENAME_EXCHANGE == 0 && p1 != p2 {
		removeSide(p1, long1)
	}
	_ = long2
	return 0
}

func (n *node) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	tn, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	tp, err := tn.lowerPath()
	if err != nil {
		return nil, errno(err)
	}
	_, p, long, err := n.childPath(name, true)
	if err != nil {
		return nil, errno(err)
	}
	if err := syscall.Link(tp, p); err != nil {
		if !errors.Is(err, syscall.EEXIST) {
			removeSide(p, long)
		}
		return nil, errno(err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, errno(err)
	}
	ch := n.NewInode(ctx, n.newChild(), n.stableAttr(&st))
	ch.Operations().(*node).fillAttr(p, n.childPlain(name), &st, &out.Attr)
	return ch, 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	_, p, long, err := n.childPath(name, true)
	if err != nil {
		return nil, errno(err)
	}
	if err := syscall.Symlink(n.r.v.encryptSymlink(target), p); err != nil {
		if !errors.Is(err, syscall.EEXIST) {
			removeSide(p, long)
		}
		return nil, errno(err)
	}
	if uid, gid, ok := callerOwner(ctx); ok {
		os.Lchown(p, uid, gid)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return nil, errno(err)
	}
	ch := n.NewInode(ctx, n.newChild(), n.stableAttr(&st))
	out.FromStat(&st)
	out.Size = uint64(len(target))
	return ch, 0
}

func (n *node) readlink(p string) (string, error) {
	enc, err := os.Readlink(p)
	if err != nil {
		return "", err
	}
	t, err := n.r.v.decryptSymlink(enc)
	if err != nil {
		n.r.v.tamper(n.plainPath(), -1, err)
		return "", err
	}
	return t, nil
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	p, err := n.lowerPath()
	if err != nil {
		return nil, errno(err)
	}
	t, err := n.readlink(p)
	if err != nil {
		return nil, errno(err)
	}
	return []byte(t), 0
}

func (n *node) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	p, err := n.lowerPath()
	if err != nil {
		return nil, errno(err)
	}
	iv, err := n.dirIV()
	if err != nil {
		return nil, errno(err)
	}
	ds, e := fs.NewLoopbackDirStream(p)
	if e != 0 {
		return nil, e
	}
	defer ds.Close()
	var list []fuse.DirEntry
	for ds.HasNext() {
		de, e := ds.Next()
		if e != 0 {
			return nil, e
		}
		if de.Name == "." || de.Name == ".." || isInternal(de.Name) || len(de.Name) > len(tmpPrefix) && de.Name[:len(tmpPrefix)] == tmpPrefix {
			continue
		}
		enc := de.Name
		if len(enc) > len(longNamePrefix) && enc[:len(longNamePrefix)] == longNamePrefix {
			b, err := os.ReadFile(filepath.Join(p, de.Name+longNameSuffix))
			if err != nil {
				n.r.v.tamper(filepath.Join(n.plainPath(), de.Name), -1, fmt.Errorf("%w: long name side file: %v", ErrTampered, err))
				continue
			}
			enc = string(b)
			if ln, _ := lowerName(enc); ln != de.Name {
				n.r.v.tamper(filepath.Join(n.plainPath(), de.Name), -1, fmt.Errorf("%w: long name side file does not match", ErrTampered))
				continue
			}
		}
		name, err := n.r.v.DecryptName(iv, enc)
		if err != nil {
			// Names that do not authenticate are hidden, not shown as garbage.
			n.r.v.tamper(filepath.Join(n.plainPath(), de.Name), -1, err)
			continue
		}
		de.Name = name
		list = append(list, de)
	}
	return fs.NewListDirStream(list), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var s syscall.Statfs_t
	if err := syscall.Statfs(n.r.cipherDir, &s); err != nil {
		return errno(err)
	}
	out.FromStatfsT(&s)
	return 0
}

// Fsync flushes a file through to the lower file's fsync, or, for a
// directory (SQLite fsyncs the directory after creating a journal), the
// lower directory.
func (n *node) Fsync(ctx context.Context, f fs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := f.(*handle); ok {
		return errno(h.fl.Sync())
	}
	p, err := n.lowerPath()
	if err != nil {
		return errno(err)
	}
	d, err := os.Open(p)
	if err != nil {
		return errno(err)
	}
	defer d.Close()
	return errno(d.Sync())
}

// handle is one open of a regular file; all handles of one lower inode
// share one File.
type handle struct {
	r   *root
	fl  *File
	ino uint64

	once sync.Once
}

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileFlusher   = (*handle)(nil)
	_ fs.FileFsyncer   = (*handle)(nil)
	_ fs.FileReleaser  = (*handle)(nil)
	_ fs.FileAllocater = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.fl.ReadAt(dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, errno(err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.fl.WriteAt(data, off)
	if err != nil {
		return 0, errno(err)
	}
	return uint32(n), 0
}

func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	return errno(h.fl.Sync())
}

func (h *handle) Release(ctx context.Context) syscall.Errno {
	var err error
	h.once.Do(func() { err = h.r.release(h.ino) })
	return errno(err)
}

// Allocate supports plain fallocate (mode 0) by growing the file with
// encrypted zeros; punching holes or keeping the size is not supported.
func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	if mode != 0 {
		return syscall.EOPNOTSUPP
	}
	return errno(h.fl.extend(int64(off + size)))
}
