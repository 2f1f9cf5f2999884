//go:build linux

package fileaccess

import (
	"fmt"
	"os"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Event choice. The open event (FAN_OPEN_PERM, or FAN_OPEN without
// permission events) is where the process is attributed: with the
// permission event the opener is still inside open(2). The close events
// give the kind of the open: FAN_CLOSE_WRITE is sent for a file that was
// open for writing, FAN_CLOSE_NOWRITE otherwise, once per open file (on
// the last close), so each open becomes exactly one Access. FAN_ACCESS and
// FAN_MODIFY were rejected: they fire per read(2)/write(2) call (hundreds
// for one `tar` of a large file), miss opens that never read, and cannot
// be merged back into opens reliably.
const fanCloseMask = unix.FAN_CLOSE_WRITE | unix.FAN_CLOSE_NOWRITE

func (w *Watcher) fanMask() uint64 {
	if w.mode == ModeFanotifyPerm {
		return unix.FAN_OPEN_PERM | fanCloseMask
	}
	return unix.FAN_OPEN | fanCloseMask
}

// openFanotify creates a group of class and checks that an inode mark
// with openEvent is accepted (FAN_OPEN_PERM needs
// CONFIG_FANOTIFY_ACCESS_PERMISSIONS and CAP_SYS_ADMIN).
func (w *Watcher) openFanotify(class uint, openEvent uint64) error {
	// The event fds are only resolved (readlink, statx) and closed, never read.
	fd, err := unix.FanotifyInit(class|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fanotify_init: %w", err)
	}
	// Probe on "/" (no FAN_ONDIR and no FAN_EVENT_ON_CHILD: it reports
	// nothing), then take it away again.
	mask := openEvent | fanCloseMask
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_INODE, mask, unix.AT_FDCWD, "/"); err != nil {
		unix.Close(fd)
		return fmt.Errorf("fanotify_mark: %w", err)
	}
	unix.FanotifyMark(fd, unix.FAN_MARK_REMOVE|unix.FAN_MARK_INODE, mask, unix.AT_FDCWD, "/")
	w.kfd = fd
	return nil
}

// runFanotify is the reader. Rules that keep it deadlock-free: a
// permission event is answered before anything else that could wait (no
// watcher lock, no consumer, no file outside /proc); /proc reads for a
// foreign opener are bounded by ProcTimeout; the Watcher's own opens are
// answered at once; Accesses go to a bounded channel without waiting.
func (w *Watcher) runFanotify() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	w.readLoop("fanotify", func(buf []byte, pend *pendingOpens) {
		for off := 0; off+unix.FAN_EVENT_METADATA_LEN <= len(buf); {
			meta := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
			if meta.Event_len < unix.FAN_EVENT_METADATA_LEN || off+int(meta.Event_len) > len(buf) {
				break
			}
			off += int(meta.Event_len)
			if meta.Vers != unix.FANOTIFY_METADATA_VERSION {
				if meta.Fd >= 0 {
					w.respond(meta)
					unix.Close(int(meta.Fd))
				}
				continue
			}
			w.handleFan(meta, pend, timer)
		}
	})
}

// readLoop is the reader both kernel interfaces share: wait for events
// (waking to sweep opens still pending), read a batch, hand it to parse,
// sweep. It returns when the watcher closes.
func (w *Watcher) readLoop(name string, parse func(buf []byte, pend *pendingOpens)) {
	defer close(w.readerDone)
	buf := make([]byte, 64<<10)
	var pend pendingOpens
	lastSweep := time.Now()
	for {
		wait := time.Duration(0) // block
		if pend.n > 0 {
			wait = w.opts.OpenTimeout / 2
		}
		if !w.waitReadable(wait) {
			return
		}
		for {
			n, err := unix.Read(w.kfd, buf)
			if err == unix.EINTR {
				continue
			}
			if err != nil || n <= 0 {
				if err != nil && err != unix.EAGAIN {
					w.log.Error(name+" read", "err", err)
					time.Sleep(10 * time.Millisecond) // don't spin on a persistent error
				}
				break
			}
			parse(buf[:n], &pend)
		}
		if now := time.Now(); pend.n > 0 && now.Sub(lastSweep) >= w.opts.OpenTimeout/4 {
			lastSweep = now
			pend.sweep(now, w.opts.OpenTimeout, w.kindOf, w.emit)
		}
	}
}

func (w *Watcher) respond(meta *unix.FanotifyEventMetadata) {
	if meta.Mask&unix.FAN_ALL_PERM_EVENTS == 0 {
		return
	}
	r := unix.FanotifyResponse{Fd: meta.Fd, Response: unix.FAN_ALLOW}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))
	for {
		_, err := unix.Write(w.kfd, b)
		if err != unix.EINTR {
			if err != nil {
				w.log.Error("fanotify answer", "err", err)
			}
			return
		}
	}
}

func (w *Watcher) handleFan(meta *unix.FanotifyEventMetadata, pend *pendingOpens, timer *time.Timer) {
	now := time.Now()
	if meta.Mask&unix.FAN_Q_OVERFLOW != 0 {
		w.dropped.Add(1)
		w.log.Warn("fanotify queue overflow: accesses lost")
		return
	}
	if meta.Fd < 0 {
		return
	}
	fd := int(meta.Fd)
	pid := int(meta.Pid)
	self := pid == w.self && !w.opts.attributeSelf

	var info Access
	opened := meta.Mask&(unix.FAN_OPEN_PERM|unix.FAN_OPEN) != 0
	if opened {
		if self {
			info = w.selfInfo
		} else {
			info = w.procBounded(pid, timer)
		}
	}
	w.respond(meta) // FAN_ALLOW, whatever happened above

	var stx unix.Statx_t
	// AT_STATX_DONT_SYNC: take the cached inode; never ask a (FUSE) server.
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, unix.STATX_INO, &stx)
	key := fileKey{dev: unix.Mkdev(stx.Dev_major, stx.Dev_minor), ino: stx.Ino}
	var kpath, path, label string
	// A close whose open is pending needs no path: the open has it.
	if err == nil && (opened || len(pend.byKey[key]) == 0) {
		kpath, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		kpath = trimDeleted(kpath)
		path, label = w.resolve(key, kpath)
	}
	unix.Close(fd)
	if err != nil {
		w.log.Debug("fanotify event: cannot resolve file", "pid", pid, "err", err)
		return
	}

	if opened {
		info.Time, info.Path, info.Label, info.Self = now, path, label, pid == w.self
		pend.add(&openRec{a: info, key: key, kpath: kpath})
	}
	closes := []string{}
	if meta.Mask&unix.FAN_CLOSE_WRITE != 0 {
		closes = append(closes, KindWrite)
	}
	if meta.Mask&unix.FAN_CLOSE_NOWRITE != 0 {
		closes = append(closes, KindRead)
	}
	for _, kind := range closes {
		r := pend.take(key, pid)
		if r == nil { // opened before we watched: attribute to the closer
			a := w.selfInfo
			if pid != w.self {
				a = w.procBounded(pid, timer)
			}
			a.Time, a.Path, a.Label, a.Kind, a.Self = now, path, label, kind, pid == w.self
			w.emit(a)
			continue
		}
		if !r.emitted {
			r.a.Kind = kind
			w.emit(r.a)
		}
	}
}

// procBounded reads /proc/<pid> but gives up after ProcTimeout, so a stuck
// /proc read never holds the opener (or the reader) for long.
func (w *Watcher) procBounded(pid int, timer *time.Timer) Access {
	ch := make(chan Access, 1)
	go func() { ch <- w.procs.info(pid) }()
	timer.Reset(w.opts.ProcTimeout)
	defer timer.Stop()
	select {
	case a := <-ch:
		return a
	case <-timer.C:
		w.log.Warn("reading /proc timed out; access reported with pid only", "pid", pid)
		return Access{Pid: pid, UID: -1}
	}
}

// kindOf finds the kind of an open still held after OpenTimeout.
func (w *Watcher) kindOf(r *openRec) string {
	if r.a.Pid == 0 {
		return KindRead
	}
	if write, ok := openKind(r.a.Pid, r.key.ino, r.kpath); ok && write {
		return KindWrite
	}
	return KindRead
}
