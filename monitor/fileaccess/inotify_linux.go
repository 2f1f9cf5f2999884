//go:build linux

package fileaccess

import (
	"bytes"
	"fmt"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inotify has the same open/close pair as fanotify but no pid, so
// Accesses are unattributed (Pid 0).
const inotifyMask = unix.IN_OPEN | unix.IN_CLOSE_WRITE | unix.IN_CLOSE_NOWRITE

func (w *Watcher) openInotify() error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return fmt.Errorf("inotify_init1: %w", err)
	}
	w.kfd = fd
	return nil
}

func (w *Watcher) runInotify() {
	w.readLoop("inotify", func(buf []byte, pend *pendingOpens) {
		for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			nameb := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			off += unix.SizeofInotifyEvent + int(ev.Len)
			name, _, _ := bytes.Cut(nameb, []byte{0})
			w.handleInotify(ev.Wd, ev.Mask, string(name), pend)
		}
	})
}

func (w *Watcher) handleInotify(wd int32, mask uint32, name string, pend *pendingOpens) {
	now := time.Now()
	if mask&unix.IN_Q_OVERFLOW != 0 {
		w.dropped.Add(1)
		w.log.Warn("inotify queue overflow: accesses lost")
		return
	}
	if mask&unix.IN_ISDIR != 0 || mask&inotifyMask == 0 {
		return
	}
	w.mu.Lock()
	m := w.byWD[int(wd)]
	var path, label string
	if m != nil {
		path, label = m.path, w.labelLocked(m)
		if m.dir {
			path = filepath.Join(m.path, name)
			// A file watched itself reports through its own watch too.
			if name == "" || w.marks[fileKey{path: path}] != nil {
				m = nil
			}
		}
	}
	w.mu.Unlock()
	if m == nil {
		return
	}
	key := fileKey{path: path}
	if mask&unix.IN_OPEN != 0 {
		pend.add(&openRec{a: Access{Time: now, Path: path, Label: label, UID: -1}, key: key})
	}
	for _, c := range []struct {
		bit  uint32
		kind string
	}{{unix.IN_CLOSE_WRITE, KindWrite}, {unix.IN_CLOSE_NOWRITE, KindRead}} {
		if mask&c.bit == 0 {
			continue
		}
		r := pend.take(key, 0)
		if r == nil {
			w.emit(Access{Time: now, Path: path, Label: label, Kind: c.kind, UID: -1})
			continue
		}
		if !r.emitted {
			r.a.Kind = c.kind
			w.emit(r.a)
		}
	}
}
