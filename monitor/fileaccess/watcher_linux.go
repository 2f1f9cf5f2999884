//go:build linux

package fileaccess

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by methods of a closed Watcher.
var ErrClosed = errors.New("fileaccess: watcher closed")

// Options configure a Watcher. The zero value (plus OnAccess) is usable.
type Options struct {
	Logger *slog.Logger
	// OnAccess receives every Access, one at a time, on a goroutine of its
	// own. It may block or open watched files itself: the kernel-facing
	// reader never waits for it (see Buffer).
	OnAccess func(Access)

	// Mode forces a mode (ModeFanotifyPerm, ModeFanotify, ModeInotify);
	// "" picks the best the kernel offers. A forced mode that is
	// unavailable is an error.
	Mode string
	// MaxDepth bounds how deep below a directory given to Add
	// subdirectories are marked: 0 marks only the directory (its files are
	// covered), 1 adds its subdirectories, and so on. Default 3; -1 means 0.
	MaxDepth int
	// MaxMarks bounds the number of marked files and directories (each
	// holds an fd). Default 4096.
	MaxMarks int
	// Buffer is how many Accesses may wait for OnAccess; beyond it they are
	// dropped and counted (Dropped). Default 4096.
	Buffer int
	// ProcTimeout bounds how long an opener is held while /proc is read
	// (fanotify-perm). Default 100ms; the answer is FAN_ALLOW either way.
	ProcTimeout time.Duration
	// OpenTimeout: an open not yet closed after this long is reported with
	// the kind read from the opener's fdinfo. Default 1s.
	OpenTimeout time.Duration
	// RescanInterval, when positive, calls Rescan periodically so paths
	// created later (~/.ssh appearing, a file replaced by rename) are
	// marked.
	RescanInterval time.Duration

	// attributeSelf treats the Watcher's own opens like anyone else's
	// (reads /proc before answering); benchmarks use it to measure the
	// attribution cost with an in-process workload.
	attributeSelf bool
}

// Watcher reports opens of watched paths. Its methods are safe for
// concurrent use.
type Watcher struct {
	opts     Options
	log      *slog.Logger
	mode     string
	self     int
	selfInfo Access

	kfd  int // fanotify or inotify fd
	wake int // eventfd: wakes the reader on Close

	mu      sync.Mutex
	closed  bool
	roots   map[string]string // root path → label
	marks   map[fileKey]*mark
	byKPath map[string]*mark // directory marks by kernel path
	byWD    map[int]*mark    // inotify

	procs   procCache
	out     chan Access
	dropped atomic.Int64

	readerDone chan struct{}
	dispDone   chan struct{}
	stopRescan chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

// fileKey names a watched object: device and inode (fanotify), or the path
// (inotify, where events carry no inode).
type fileKey struct {
	dev, ino uint64
	path     string
}

// mark is one marked file or directory.
type mark struct {
	key   fileKey
	path  string // as the consumer knows it (root given to Add + relative path)
	kpath string // the kernel's name for it (readlink of /proc/self/fd/N): event fds resolve to the same form
	dir   bool
	fd    int // O_PATH fd pinning the object we marked (fanotify); -1 for inotify
	wd    int // inotify watch descriptor
	roots map[string]bool
}

// New starts a Watcher. It watches nothing until Add. Cancelling ctx closes
// it.
func New(ctx context.Context, o Options) (*Watcher, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxDepth == 0 {
		o.MaxDepth = 3
	} else if o.MaxDepth < 0 {
		o.MaxDepth = 0
	}
	if o.MaxMarks <= 0 {
		o.MaxMarks = 4096
	}
	if o.Buffer <= 0 {
		o.Buffer = 4096
	}
	if o.ProcTimeout <= 0 {
		o.ProcTimeout = 100 * time.Millisecond
	}
	if o.OpenTimeout <= 0 {
		o.OpenTimeout = time.Second
	}
	w := &Watcher{
		opts:       o,
		log:        o.Logger,
		self:       os.Getpid(),
		kfd:        -1,
		roots:      map[string]string{},
		marks:      map[fileKey]*mark{},
		byKPath:    map[string]*mark{},
		byWD:       map[int]*mark{},
		out:        make(chan Access, o.Buffer),
		readerDone: make(chan struct{}),
		dispDone:   make(chan struct{}),
		stopRescan: make(chan struct{}),
	}
	w.selfInfo = procInfo(w.self)
	w.selfInfo.Self = true

	if err := w.open(o.Mode); err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(w.kfd)
		return nil, fmt.Errorf("fileaccess: eventfd: %w", err)
	}
	w.wake = wake
	w.log.Info("file access watcher started", "mode", w.mode)

	go w.dispatch()
	if w.mode == ModeInotify {
		go w.runInotify()
	} else {
		go w.runFanotify()
	}
	go func() {
		var tick <-chan time.Time
		if o.RescanInterval > 0 {
			t := time.NewTicker(o.RescanInterval)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-ctx.Done():
				w.Close()
				return
			case <-w.stopRescan:
				return
			case <-tick:
				if err := w.Rescan(ctx); err != nil && !errors.Is(err, ErrClosed) {
					w.log.Warn("file access rescan", "err", err)
				}
			}
		}
	}()
	return w, nil
}

// open picks the kernel interface.
func (w *Watcher) open(force string) error {
	var errs []error
	try := func(mode string, f func() error) bool {
		if force != "" && force != mode {
			return false
		}
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", mode, err))
			return false
		}
		w.mode = mode
		return true
	}
	switch force {
	case "", ModeFanotifyPerm, ModeFanotify, ModeInotify:
	default:
		return fmt.Errorf("fileaccess: unknown mode %q", force)
	}
	if try(ModeFanotifyPerm, func() error { return w.openFanotify(unix.FAN_CLASS_CONTENT, unix.FAN_OPEN_PERM) }) ||
		try(ModeFanotify, func() error { return w.openFanotify(unix.FAN_CLASS_NOTIF, unix.FAN_OPEN) }) ||
		try(ModeInotify, w.openInotify) {
		if len(errs) > 0 {
			w.log.Warn("file access watcher degraded", "mode", w.mode, "err", errors.Join(errs...))
		}
		return nil
	}
	return fmt.Errorf("fileaccess: no usable kernel interface: %w", errors.Join(errs...))
}

// Mode reports the active kernel interface: ModeFanotifyPerm, ModeFanotify
// or ModeInotify.
func (w *Watcher) Mode() string { return w.mode }

// Dropped counts Accesses lost: OnAccess fell more than Buffer behind, or
// the kernel queue overflowed.
func (w *Watcher) Dropped() int64 { return w.dropped.Load() }

// Add watches path (absolute; a file or a directory, followed if a
// symlink). A directory covers the files directly in it, and its
// subdirectories down to Options.MaxDepth are marked too. Label is copied
// into each Access. A path that does not exist yet is remembered and marked
// by a later Rescan. Paths under /proc/<pid>/root/ watch the files of that
// process's mount namespace.
func (w *Watcher) Add(path, label string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("fileaccess: watching %s: path is not absolute", path)
	}
	path = filepath.Clean(path)
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.roots[path] = label
	w.mu.Unlock()
	_, err := w.scan(path)
	return err
}

// Remove stops watching a path given to Add (objects also reached from
// another root stay watched).
func (w *Watcher) Remove(path string) error {
	path = filepath.Clean(path)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	if _, ok := w.roots[path]; !ok {
		return fmt.Errorf("fileaccess: removing %s: not watched", path)
	}
	delete(w.roots, path)
	for _, m := range w.marks {
		if m.roots[path] {
			delete(m.roots, path)
			if len(m.roots) == 0 {
				w.unmarkLocked(m)
			}
		}
	}
	return nil
}

// Rescan brings the marks in line with the file system: it marks objects
// that appeared under the watched paths since the last scan and drops marks
// on objects that were deleted or replaced (an atomic rename puts a new
// inode at the path; the new one is marked instead).
func (w *Watcher) Rescan(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	roots := make([]string, 0, len(w.roots))
	for r := range w.roots {
		roots = append(roots, r)
	}
	w.mu.Unlock()

	seen := map[fileKey]map[string]bool{} // key → roots that reached it
	var errs []error
	for _, r := range roots {
		if err := ctx.Err(); err != nil {
			return err
		}
		keys, err := w.scan(r)
		if err != nil {
			errs = append(errs, err)
		}
		for _, k := range keys {
			if seen[k] == nil {
				seen[k] = map[string]bool{}
			}
			seen[k][r] = true
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, m := range w.marks {
		for r := range m.roots {
			if !seen[k][r] {
				delete(m.roots, r)
			}
		}
		if len(m.roots) == 0 {
			w.unmarkLocked(m)
		}
	}
	return errors.Join(errs...)
}

// scan walks one root and marks what is not marked yet. It returns the keys
// of every object it reached.
func (w *Watcher) scan(root string) ([]fileKey, error) {
	var keys []fileKey
	var errs []error
	var visit func(p string, depth int, follow bool)
	visit = func(p string, depth int, follow bool) {
		flags := unix.O_PATH | unix.O_CLOEXEC
		if !follow {
			flags |= unix.O_NOFOLLOW
		}
		fd, err := unix.Open(p, flags, 0)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ELOOP) {
				errs = append(errs, fmt.Errorf("fileaccess: opening %s: %w", p, err))
			}
			return
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			errs = append(errs, fmt.Errorf("fileaccess: stat %s: %w", p, err))
			return
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		if st.Mode&unix.S_IFMT == unix.S_IFLNK { // not followed below the root
			unix.Close(fd)
			return
		}
		key := fileKey{dev: st.Dev, ino: st.Ino}
		if w.mode == ModeInotify {
			key = fileKey{path: p}
		}
		keys = append(keys, key)
		if err := w.addMark(root, p, key, isDir, fd, st); err != nil {
			errs = append(errs, err)
		}
		if !isDir || depth >= w.opts.MaxDepth {
			return
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("fileaccess: listing %s: %w", p, err))
			return
		}
		for _, e := range ents {
			if e.IsDir() {
				visit(filepath.Join(p, e.Name()), depth+1, false)
			}
		}
	}
	visit(root, 0, true)
	return keys, errors.Join(errs...)
}

// addMark marks the object open as fd (an O_PATH fd it takes over) unless
// it is marked already.
func (w *Watcher) addMark(root, p string, key fileKey, isDir bool, fd int, st unix.Stat_t) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		unix.Close(fd)
		return ErrClosed
	}
	if _, ok := w.roots[root]; !ok { // removed meanwhile
		unix.Close(fd)
		return nil
	}
	roots := map[string]bool{root: true}
	if m := w.marks[key]; m != nil {
		m.roots[root] = true
		if w.mode == ModeInotify && (m.key.dev != st.Dev || m.key.ino != st.Ino) {
			// inotify keys are paths: a replaced file needs a new watch.
			roots = m.roots
			w.unmarkLocked(m)
		} else {
			unix.Close(fd)
			return nil
		}
	}
	if len(w.marks) >= w.opts.MaxMarks {
		unix.Close(fd)
		return fmt.Errorf("fileaccess: marking %s: more than %d marks", p, w.opts.MaxMarks)
	}
	kpath, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("fileaccess: resolving %s: %w", p, err)
	}
	m := &mark{key: key, path: p, kpath: kpath, dir: isDir, fd: fd, wd: -1, roots: roots}
	if w.mode == ModeInotify {
		m.key.dev, m.key.ino = st.Dev, st.Ino // remembered to notice replacement
		m.key.path = p
		wd, err := unix.InotifyAddWatch(w.kfd, "/proc/self/fd/"+strconv.Itoa(fd), inotifyMask)
		unix.Close(fd)
		m.fd = -1
		if err != nil {
			return fmt.Errorf("fileaccess: inotify watch on %s: %w", p, err)
		}
		m.wd = wd
		w.byWD[wd] = m
		key = fileKey{path: p}
	} else {
		mask := w.fanMask()
		if isDir {
			mask |= unix.FAN_EVENT_ON_CHILD
		}
		// Through the magic link: exactly the inode we stat'ed (fanotify_mark
		// does not take an O_PATH fd as dirfd with a NULL path).
		if err := unix.FanotifyMark(w.kfd, unix.FAN_MARK_ADD|unix.FAN_MARK_INODE, mask, unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd)); err != nil {
			unix.Close(fd)
			return fmt.Errorf("fileaccess: fanotify mark on %s: %w", p, err)
		}
	}
	w.marks[key] = m
	if isDir {
		w.byKPath[kpath] = m
	}
	return nil
}

func (w *Watcher) unmarkLocked(m *mark) {
	if m.wd >= 0 {
		unix.InotifyRmWatch(w.kfd, uint32(m.wd))
		delete(w.byWD, m.wd)
		delete(w.marks, fileKey{path: m.path})
	} else {
		mask := w.fanMask()
		if m.dir {
			mask |= unix.FAN_EVENT_ON_CHILD
		}
		// ENOENT: the inode went away and took its mark along.
		unix.FanotifyMark(w.kfd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_INODE, mask, unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(m.fd))
		unix.Close(m.fd)
		delete(w.marks, m.key)
	}
	if w.byKPath[m.kpath] == m {
		delete(w.byKPath, m.kpath)
	}
}

// labelLocked is the label of the most specific root reaching m.
func (w *Watcher) labelLocked(m *mark) string {
	best := ""
	for r := range m.roots {
		if len(r) > len(best) {
			best = r
		}
	}
	return w.roots[best]
}

// resolve maps an event's object (kernel path and key) to the watched path
// and label.
func (w *Watcher) resolve(key fileKey, kpath string) (string, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if m := w.marks[key]; m != nil && !m.dir {
		return m.path, w.labelLocked(m)
	}
	dir, name := filepath.Split(kpath)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "/"
	}
	if m := w.byKPath[dir]; m != nil && m.key.dev == key.dev {
		return filepath.Join(m.path, name), w.labelLocked(m)
	}
	return kpath, ""
}

// emit hands a to the dispatcher without ever waiting.
func (w *Watcher) emit(a Access) {
	select {
	case w.out <- a:
	default:
		w.dropped.Add(1)
	}
}

func (w *Watcher) dispatch() {
	defer close(w.dispDone)
	for a := range w.out {
		if w.opts.OnAccess != nil {
			w.opts.OnAccess(a)
		}
	}
}

// Close stops the watcher: opens waiting for an answer are allowed (the
// kernel allows whatever is still queued when the fd closes), marks and
// fds are released, and Accesses already queued are delivered before Close
// returns.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		close(w.stopRescan)
		var one [8]byte
		one[0] = 1
		unix.Write(w.wake, one[:])
		<-w.readerDone // the reader answers every event it has read before leaving
		w.mu.Lock()
		for _, m := range w.marks {
			if m.fd >= 0 {
				unix.Close(m.fd)
			}
		}
		w.marks, w.byKPath, w.byWD = map[fileKey]*mark{}, map[string]*mark{}, map[int]*mark{}
		w.mu.Unlock()
		if err := unix.Close(w.kfd); err != nil {
			w.closeErr = fmt.Errorf("fileaccess: closing %s fd: %w", w.mode, err)
		}
		unix.Close(w.wake)
		close(w.out)
		<-w.dispDone
	})
	return w.closeErr
}

// waitReadable polls the kernel fd and the wake eventfd. It reports false
// when the watcher is closing.
func (w *Watcher) waitReadable(timeout time.Duration) bool {
	ms := -1
	if timeout > 0 {
		ms = int(timeout / time.Millisecond)
		if ms == 0 {
			ms = 1
		}
	}
	fds := []unix.PollFd{{Fd: int32(w.kfd), Events: unix.POLLIN}, {Fd: int32(w.wake), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		return fds[1].Revents == 0
	}
}
