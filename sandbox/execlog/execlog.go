//go:build linux

// Package execlog turns every process started inside a sandbox into an
// event: an exec event with full argv, cwd, pids and uid when it execs, and
// an exit event with its exit code or killing signal when it ends.
//
// Execs come from the seccomp user-notification fd installed by package
// sandbox/seccomp: the execing task is blocked while the supervisor reads
// its arguments, so even a process that lives a millisecond is seen. Exits
// come from the kernel's proc connector (netlink), keyed by the host tgid of
// the processes seen to exec.
//
// The log records attempts, not enforcement: Serve always lets the exec go
// ahead, and another thread of a hostile process could rewrite argv between
// our read and the kernel's. An exec that fails (ENOENT, EACCES) is logged
// too; the process then keeps its old image.
package execlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Event is one exec or exit of a process inside the sandbox.
type Event struct {
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"` // "exec" | "exit"
	PID   int       `json:"pid"`  // host pid (tgid)
	PPID  int       `json:"ppid"` // host pid of the parent at exec time
	NSPID int       `json:"nspid,omitempty"`
	// UID is the effective uid as seen from the host; NSUID the same uid
	// inside the sandbox's user namespace, -1 if unknown.
	UID       int      `json:"uid"`
	NSUID     int      `json:"nsuid"`
	Path      string   `json:"path"` // filename passed to execve, as given
	Argv      []string `json:"argv"`
	Truncated bool     `json:"truncated,omitempty"` // path or argv was cut (limits or unreadable memory)
	Cwd       string   `json:"cwd,omitempty"`

	// Exit events only. ExitCode and Signal are both empty when the status
	// is unknown (StatusUnknown, see Logger.ExitTracking).
	ExitCode      *int          `json:"exit_code,omitempty"`
	Signal        string        `json:"signal,omitempty"`
	StatusUnknown bool          `json:"status_unknown,omitempty"`
	Duration      time.Duration `json:"duration_ns,omitempty"` // since the (last) exec

	Sandbox string `json:"sandbox,omitempty"` // set by the caller's emit
}

// Logger answers exec notifications and emits events. Run one Serve at a
// time per Logger (one Logger per sandbox).
type Logger struct {
	emit func(Event)

	emitMu sync.Mutex // serialises emit, so exec is always emitted before its exit

	mu      sync.Mutex
	live    map[int]*tracked // host tgid → last exec
	exitErr error            // why exit status is unknown; nil when the connector works

	noConnector bool // tests: force the degraded path
	noPidfdInfo bool // tests: force the /proc/<tid>/status path
}

// tracked is a process seen to exec and not yet seen to exit.
type tracked struct {
	exec    Event
	emitted bool     // exec event emitted; guarded by Logger.emitMu
	pidfd   *os.File // degraded mode only: becomes readable at exit
}

// New returns a Logger calling emit for each event. emit is never called
// concurrently by one Logger. Exec events are emitted by the serving thread
// right after the task is released, so a slow emit delays the next exec in
// the sandbox: keep it quick (stream.JSONLines into a buffered writer is).
func New(emit func(Event)) *Logger {
	return &Logger{
		emit: emit,
		live: make(map[int]*tracked),
	}
}

// ExitTracking reports why exit status is unavailable: nil when exit events
// carry exit codes, else the error from setting up the proc connector (not
// root, or not in the initial user/pid/network namespaces), in which case
// exit events are still emitted, from pidfds, with StatusUnknown set.
func (l *Logger) ExitTracking() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.exitErr
}

// Serve answers notifications on notify until ctx is done, notify is
// closed, or every task using the filter has exited, calling emit for each
// exec and (through the proc connector) each exit. Every notification it
// receives is answered with CONTINUE, whatever went wrong reading the task.
//
// Serve notices ctx and a Close of notify within closeCheck (100ms). After
// it returns, the caller should close notify: pending and later execs in
// the sandbox then fail with ENOSYS rather than block.
func (l *Logger) Serve(ctx context.Context, notify *os.File) error {
	rc, err := notify.SyscallConn()
	if err != nil {
		return fmt.Errorf("execlog: %w", err)
	}
	// Serve works on its own dup of the fd and blocks in poll(2) on a
	// locked thread rather than in the runtime's netpoller: the exec path
	// is a round trip (task blocks, we wake, read, reply), and a thread
	// sleeping on the fd itself can be woken on the notifier's CPU and
	// switched to directly (notifSyncWakeUp), where the netpoller adds an
	// epoll wakeup and a goroutine hand-off to every exec. The dup also
	// means a Close of notify never waits for us; we notice it and stop,
	// and closing our dup then releases the listener.
	fd := -1
	var derr error
	if err := rc.Control(func(f uintptr) {
		fd, derr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return fmt.Errorf("execlog: %w", err)
	}
	if derr != nil {
		return fmt.Errorf("execlog: dup notify fd: %w", derr)
	}
	defer unix.Close(fd)
	notifSyncWakeUp(fd) // best effort: Linux 6.6+
	closed := func() bool { return rc.Control(func(uintptr) {}) != nil }

	var wg sync.WaitGroup
	stopExits := l.startExitTracking(&wg)
	defer func() {
		stopExits()
		wg.Wait()
	}()

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := &server{l: l, argv: newArgvReader(os.Getpagesize()), noPidfdInfo: l.noPidfdInfo}
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if closed() {
			return nil
		}
		pfd[0].Revents = 0
		n, err := unix.Poll(pfd, int(closeCheck/time.Millisecond))
		if err == unix.EINTR || n == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("execlog: poll: %w", err)
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			// POLLHUP: no task uses the filter any more. Their exits are
			// already queued on the connector; let it deliver them.
			l.drain(ctx, time.Second)
			return nil
		}
		// RECV blocks until a notification exists. poll said one does; if
		// its task is killed in between, RECV waits for the next one.
		if err := notifRecv(fd, &s.notif); err != nil {
			if err == unix.ENOENT || err == unix.EINTR {
				continue // the task died before we got to it
			}
			return fmt.Errorf("execlog: receive notification: %w", err)
		}
		s.handle(fd)
	}
}

// closeCheck bounds how long Serve takes to notice ctx or a closed notify
// while the sandbox is idle.
const closeCheck = 100 * time.Millisecond

// drain waits until every tracked process has been seen to exit.
func (l *Logger) drain(ctx context.Context, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		l.mu.Lock()
		n := len(l.live)
		l.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// server holds the per-Serve scratch state of the exec path.
type server struct {
	l     *Logger
	notif seccompNotif
	argv  *argvReader
	proc  procReader

	noPidfdInfo bool // kernel lacks PIDFD_THREAD/PIDFD_GET_INFO
	nsKnown     bool // learnNS ran
	samePidNS   bool
	uidMap      []uidMapping
}

// handle answers one notification. The task is blocked until notifContinue;
// everything before it is on the exec path of the sandboxed process.
func (s *server) handle(fd int) {
	n := &s.notif
	now := time.Now()
	tid := int(n.PID)
	var pathAddr, argvAddr uint64
	execveat := false
	switch n.Data.Nr {
	case unix.SYS_EXECVE:
		pathAddr, argvAddr = n.Data.Args[0], n.Data.Args[1]
	case unix.SYS_EXECVEAT:
		pathAddr, argvAddr = n.Data.Args[1], n.Data.Args[2]
		execveat = true
	default:
		notifContinue(fd, n.ID)
		return
	}

	// Identity through a pidfd: PIDFD_GET_INFO returns binary fields, at a
	// tenth of the cost of formatting /proc/<tid>/status, which is the
	// fallback for kernels before 6.13.
	pidfd, info, ierr := s.identify(tid)
	path, argv, truncated, rerr := s.argv.read(tid, pathAddr, argvAddr)
	// cwd must be read now: the process may chdir once it runs.
	cwd, _ := s.proc.cwd(tid)
	if execveat && !strings.HasPrefix(path, "/") {
		// Relative to a dirfd (or the fd itself, for fexecve): name it.
		if dirfd := int32(n.Data.Args[0]); dirfd != unix.AT_FDCWD {
			if dir, err := s.proc.cwdOf(tid, int(dirfd)); err == nil {
				path = strings.TrimSuffix(dir+"/"+path, "/")
			}
		}
	}

	// The reads above went through /proc/<tid>: if the task died and its
	// tid was reused meanwhile, they describe another process.
	if ierr == nil && !s.nsKnown {
		s.learnNS(tid)
	}
	if ierr == nil {
		switch {
		case s.samePidNS:
			info.nstgid = info.tgid
		case info.nstgid == 0 && pidfd >= 0:
			info.nstgid = s.proc.fdinfoNSpid(pidfd)
		}
	}
	valid := notifIDValid(fd, n.ID)
	var t *tracked
	if valid && ierr == nil && info.tgid > 0 {
		if rerr != nil {
			truncated = true
		}
		ev := Event{
			Time: now, Kind: "exec",
			PID: info.tgid, PPID: info.ppid, NSPID: info.nstgid,
			UID: info.euid, NSUID: toInside(s.uidMap, info.euid),
			Path: path, Argv: argv, Truncated: truncated, Cwd: cwd,
		}
		t = s.l.track(ev)
	}
	// Always answer, whatever failed above: a task must never stay blocked.
	notifContinue(fd, n.ID)

	if t != nil {
		s.l.emitMu.Lock()
		if !t.emitted {
			t.emitted = true
			s.l.emit(t.exec)
		}
		s.l.emitMu.Unlock()
	}
	if pidfd >= 0 {
		unix.Close(pidfd)
	}
}

// identify returns tgid, ppid and euid of task tid, as seen from our
// namespaces, and a pidfd for it (or -1). nstgid is filled only by the
// /proc fallback.
func (s *server) identify(tid int) (pidfd int, info procInfo, err error) {
	if !s.noPidfdInfo {
		pidfd, err = unix.PidfdOpen(tid, pidfdThread|unix.PIDFD_NONBLOCK)
		if err == nil {
			pi := unix.PidfdInfo{Mask: unix.PIDFD_INFO_PID | unix.PIDFD_INFO_CREDS}
			if err = unix.IoctlPidfdInfo(pidfd, &pi); err == nil {
				return pidfd, procInfo{tgid: int(pi.Tgid), ppid: int(pi.Ppid), euid: int(pi.Euid)}, nil
			}
			unix.Close(pidfd)
		}
		if err == unix.ESRCH {
			return -1, procInfo{}, err
		}
		// Older kernel (no PIDFD_THREAD or PIDFD_GET_INFO): use /proc.
		s.noPidfdInfo = true
	}
	info, err = s.proc.status(tid)
	return -1, info, err
}

// pidfdThread is PIDFD_THREAD (Linux 6.9): a pidfd for a thread that need
// not be the group leader, since any thread may call execve.
const pidfdThread = unix.O_EXCL

// learnNS records, from the first task seen, the sandbox's user namespace
// uid map and whether its pid namespace is ours. Every later task of this
// Serve shares both: the filter denies unshare, setns and CLONE_NEW* (a
// profile that Allows them gets NSUID/NSPID of the first namespace).
func (s *server) learnNS(tid int) {
	s.nsKnown = true
	if m, err := s.proc.uidMap(tid); err == nil {
		s.uidMap = m
	}
	var self, task unix.Stat_t
	if unix.Stat("/proc/self/ns/pid", &self) == nil && unix.Stat(s.proc.procPath(tid, "ns/pid"), &task) == nil {
		s.samePidNS = self.Ino == task.Ino && self.Dev == task.Dev
	}
}

// track records ev as the latest exec of its process and returns the record
// to emit. It runs before the task is released, so the process cannot exit
// before it is tracked.
func (l *Logger) track(ev Event) *tracked {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.live[ev.PID]
	t := &tracked{exec: ev}
	if old != nil {
		t.pidfd = old.pidfd
	} else if l.exitErr != nil {
		t.pidfd = l.watchPidfd(ev.PID)
	}
	l.live[ev.PID] = t
	return t
}

// exited emits the exit of tgid if we saw it exec. status is a wait(2)
// status, or nil when unknown.
func (l *Logger) exited(tgid int, status *uint32, now time.Time) {
	l.mu.Lock()
	t := l.live[tgid]
	delete(l.live, tgid)
	var pidfd *os.File
	if t != nil {
		pidfd, t.pidfd = t.pidfd, nil
	}
	l.mu.Unlock()
	if t == nil {
		return
	}
	if pidfd != nil {
		pidfd.Close()
	}
	l.emitMu.Lock()
	defer l.emitMu.Unlock()
	if !t.emitted {
		t.emitted = true
		l.emit(t.exec)
	}
	ev := t.exec
	ev.Kind = "exit"
	ev.Time = now
	ev.Duration = now.Sub(t.exec.Time)
	if status == nil {
		ev.StatusUnknown = true
	} else {
		ws := unix.WaitStatus(*status)
		switch {
		case ws.Signaled():
			ev.Signal = unix.SignalName(ws.Signal())
		default:
			code := ws.ExitStatus()
			ev.ExitCode = &code
		}
	}
	l.emit(ev)
}

// startExitTracking starts the proc connector reader, or records why it
// cannot run. It returns a function that stops it.
func (l *Logger) startExitTracking(wg *sync.WaitGroup) (stop func()) {
	var c *connector
	err := errors.New("proc connector disabled")
	if !l.noConnector {
		c, err = dialConnector()
	}
	l.mu.Lock()
	l.exitErr = err
	l.mu.Unlock()
	if err != nil {
		return l.stopPidfds
	}
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 64<<10)
		var exits []exitMsg
		for {
			// Block for the first event, take what else is queued, then
			// pause: the socket sees every exit on the host, and waking
			// once per exit would steal CPU from the sandbox; exit events
			// can wait exitBatch.
			wait := true
			for {
				var err error
				exits, err = c.read(buf, exits[:0], wait)
				wait = false
				now := time.Now()
				for _, e := range exits {
					l.exited(e.tgid, &e.status, now)
				}
				if errors.Is(err, errOverrun) {
					l.sweep(now)
					continue
				}
				if errors.Is(err, errEmpty) {
					break
				}
				if err != nil {
					return
				}
			}
			select {
			case <-done:
				// Serve is stopping: deliver what is left, then end.
				for {
					var err error
					exits, err = c.read(buf, exits[:0], false)
					now := time.Now()
					for _, e := range exits {
						l.exited(e.tgid, &e.status, now)
					}
					if err != nil && !errors.Is(err, errOverrun) {
						return
					}
				}
			case <-time.After(exitBatch):
			}
		}
	}()
	return func() {
		close(done)
		c.setDeadline(time.Unix(1, 0))
		wg.Wait()
		c.close()
	}
}

// exitBatch is how long the exit reader pauses between batches.
const exitBatch = 10 * time.Millisecond

// sweep emits exits with unknown status for tracked processes that are
// gone, after the connector lost events.
func (l *Logger) sweep(now time.Time) {
	l.mu.Lock()
	var gone []int
	for tgid := range l.live {
		if unix.Kill(tgid, 0) == unix.ESRCH {
			gone = append(gone, tgid)
		}
	}
	l.mu.Unlock()
	for _, tgid := range gone {
		l.exited(tgid, nil, now)
	}
}

// watchPidfd is the degraded exit source: a pidfd becomes readable when the
// process exits, but only the parent can collect the status. Called with
// l.mu held.
func (l *Logger) watchPidfd(tgid int) *os.File {
	fd, err := unix.PidfdOpen(tgid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	go func() {
		first := true
		err := rc.Read(func(fd uintptr) bool {
			if first {
				// Check once without waiting: it may already be dead.
				first = false
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				n, _ := unix.Poll(pfd, 0)
				return n > 0
			}
			return true
		})
		if err == nil {
			l.exited(tgid, nil, time.Now())
		}
	}()
	return f
}

// stopPidfds ends the degraded watchers of processes still alive.
func (l *Logger) stopPidfds() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t := range l.live {
		if t.pidfd != nil {
			t.pidfd.Close()
			t.pidfd = nil
		}
	}
}
