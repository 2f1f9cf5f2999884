package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// Event kinds: which limit a sandbox ran into.
const (
	// OOMKill: the kernel OOM killer killed a process in the group.
	OOMKill = "oom_kill"
	// MemoryMax: usage hit the memory limit (reclaim or OOM follows).
	MemoryMax = "memory_max"
	// PidsMax: a fork or clone failed because of the pids limit.
	PidsMax = "pids_max"
)

// eventKinds fixes the order in which simultaneous events are reported.
var eventKinds = []string{OOMKill, MemoryMax, PidsMax}

// Event reports that a group hit a limit Count more times since the
// previous event of the same kind.
type Event struct {
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"` // OOMKill, MemoryMax or PidsMax
	Count  int64     `json:"count"`
	Detail string    `json:"detail"`
}

// counter is one monotonic kernel counter and where it was read.
type counter struct {
	n      int64
	source string
}

// pollInterval bounds the delay of events that have no notification (v1
// memory.failcnt) and covers lost wakeups.
const pollInterval = 200 * time.Millisecond

// Events reports limit hits as they happen until ctx is done (after one
// last read of the counters, whose events the reader must drain) or the
// group is deleted, then closes the channel (at once if the group's counters
// cannot be read). Hits before the call are not reported. A slow reader
// delays events but loses no counts: they add up in the next event.
// Each call starts its own watcher; cancel ctx to release it.
//
// Wakeups come from an eventfd registered for memory.oom_control (v1) and
// inotify on memory.events and pids.events (the kernel notifies changes of
// both); a short poll covers counters with no notification.
func (g *Group) Events(ctx context.Context) <-chan Event {
	ch := make(chan Event, 8)
	prev, err := g.counters()
	if err != nil {
		close(ch)
		return ch
	}
	wake := make(chan struct{}, 1)
	stop := g.watch(wake)
	go func() {
		defer close(ch)
		// Closing a v1 OOM eventfd registration can take the kernel tens
		// of milliseconds (it waits for RCU); nobody needs to wait for it.
		defer func() { go stop() }()
		t := time.NewTicker(pollInterval)
		defer t.Stop()
		for {
			final := false
			select {
			case <-ctx.Done():
				// One last read: a hit just before the end (the OOM kill
				// that ended the sandbox) is still reported.
				final = true
			case <-t.C:
			case <-wake:
			}
			cur, err := g.counters()
			if err != nil {
				if final || errors.Is(err, fs.ErrNotExist) {
					return // ended, or deleted
				}
				continue
			}
			now := time.Now()
			for _, k := range eventKinds {
				c, ok := cur[k]
				if !ok {
					continue
				}
				p, seen := prev[k]
				if !seen {
					prev[k] = c // unreadable at start: count from here
					continue
				}
				if c.n <= p.n {
					continue
				}
				ev := Event{
					Time:   now,
					Kind:   k,
					Count:  c.n - p.n,
					Detail: fmt.Sprintf("%s: %d -> %d", c.source, p.n, c.n),
				}
				if final {
					ch <- ev // the reader drains until the channel closes
				} else {
					select {
					case ch <- ev:
					case <-ctx.Done():
						final = true
						ch <- ev
					}
				}
				// Counters only grow; never lowering prev keeps a torn or
				// partial read from replaying old hits.
				prev[k] = c
			}
			if final {
				return
			}
		}
	}()
	return ch
}

func (g *Group) counters() (map[string]counter, error) {
	if g.mode == V2 {
		return g.v2Counters()
	}
	return g.v1Counters()
}

// watch arms the kernel notifications that feed wake and returns a func
// that disarms them. Failures only cost latency, so they are ignored.
func (g *Group) watch(wake chan<- struct{}) (stop func()) {
	var files []*os.File
	poke := func(f *os.File) {
		buf := make([]byte, 4096)
		for {
			if _, err := f.Read(buf); err != nil {
				return // closed by stop
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}
	if g.mode == V1 {
		if d, ok := g.dirs["memory"]; ok {
			if f, ctl := oomEventFD(d); f != nil {
				files = append(files, f, ctl)
				go poke(f)
			}
		}
	}
	var watchFiles []string
	if d, ok := g.dirs[""]; ok {
		watchFiles = append(watchFiles, filepath.Join(d, "memory.events"), filepath.Join(d, "pids.events"))
	}
	if d, ok := g.dirs["pids"]; ok {
		watchFiles = append(watchFiles, filepath.Join(d, "pids.events"))
	}
	if f := inotifyFD(watchFiles); f != nil {
		files = append(files, f)
		go poke(f)
	}
	return func() {
		for _, f := range files {
			f.Close()
		}
	}
}

// oomEventFD registers an eventfd for v1 OOM notifications through
// cgroup.event_control. The kernel keeps the registration until the eventfd
// or the cgroup goes away; ctl must stay open as long.
func oomEventFD(dir string) (efd, ctl *os.File) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, nil
	}
	efd = os.NewFile(uintptr(fd), "eventfd") // non-blocking: Read is pollable, Close unblocks it
	ctl, err = os.Open(filepath.Join(dir, "memory.oom_control"))
	if err != nil {
		efd.Close()
		return nil, nil
	}
	msg := strconv.Itoa(fd) + " " + strconv.Itoa(int(ctl.Fd()))
	if err := writeFile(dir, "cgroup.event_control", msg); err != nil {
		efd.Close()
		ctl.Close()
		return nil, nil
	}
	return efd, ctl
}

// inotifyFD watches paths for modification, skipping missing ones.
func inotifyFD(paths []string) *os.File {
	if len(paths) == 0 {
		return nil
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	n := 0
	for _, p := range paths {
		if _, err := unix.InotifyAddWatch(fd, p, unix.IN_MODIFY); err == nil {
			n++
		}
	}
	if n == 0 {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), "inotify")
}
