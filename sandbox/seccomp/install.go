//go:build linux

package seccomp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Install sets no_new_privs and applies f to every thread of the calling
// process. When f.Notify is set it returns the user-notification fd
// (close-on-exec); the caller must hand it to the supervisor (SendFD) and
// close its own copy before the first execve, or that execve blocks until
// the fd is answered or closed.
//
// Install is meant for the re-exec'd stage-2 helper: the filter cannot be
// removed, and it applies to the whole process.
func Install(f Filter) (notify *os.File, err error) {
	insns, err := f.assemble()
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(insns)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}

	// no_new_privs is per thread; TSYNC copies it to the other threads, but
	// only from the thread that installs the filter, so stay on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("seccomp: set no_new_privs: %w", err)
	}

	// Go processes are multi-threaded, so the filter must reach every
	// thread (TSYNC). On failure TSYNC returns the id of the thread that
	// could not be synchronised, which collides with NEW_LISTENER's fd
	// return value; TSYNC_ESRCH (Linux 5.7) makes it return ESRCH instead,
	// and is required to combine the two.
	flags := uintptr(unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH)
	if f.Notify {
		flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
	}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return nil, fmt.Errorf("seccomp: install filter (flags %#x): %w", flags, errno)
	}
	if !f.Notify {
		return nil, nil
	}
	fd := int(r)
	// The kernel already sets O_CLOEXEC on the listener; make it explicit
	// so a kernel change cannot leak the fd into the payload.
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "seccomp-notify"), nil
}

// SendFD sends f over c as SCM_RIGHTS, with one byte of payload.
func SendFD(c *net.UnixConn, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("seccomp: send fd: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		_, _, serr = c.WriteMsgUnix([]byte{'F'}, unix.UnixRights(int(fd)), nil)
	}); err != nil {
		return fmt.Errorf("seccomp: send fd: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("seccomp: send fd: %w", serr)
	}
	return nil
}

// RecvFD receives one fd sent by SendFD, close-on-exec. The file is put in
// non-blocking mode so that its Close never waits on a blocked reader.
func RecvFD(c *net.UnixConn) (*os.File, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("seccomp: receive fd: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("seccomp: receive fd: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		got, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, got...)
	}
	if n == 0 || len(fds) == 0 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, errors.New("seccomp: receive fd: no fd in message")
	}
	// Only one fd is expected; close any extra rather than leak it.
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	fd := fds[0]
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("seccomp: receive fd: %w", err)
	}
	return os.NewFile(uintptr(fd), "seccomp-notify"), nil
}
