//go:build linux

package execlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Proc connector ABI (include/uapi/linux/cn_proc.h, connector.h).
const (
	cnIdxProc         = 0x1
	cnValProc         = 0x1
	procCnMcastListen = 1
	procEventExit     = 0x80000000

	nlmsgHdrLen = 16
	cnMsgLen    = 20 // struct cn_msg: id{idx,val}, seq, ack, len u16, flags u16
	// struct proc_event: what, cpu, timestamp_ns (8-aligned), then the union.
	procEventDataOff = nlmsgHdrLen + cnMsgLen + 16
)

// exitMsg is a PROC_EVENT_EXIT for a thread-group leader.
type exitMsg struct {
	tgid   int
	status uint32 // wait(2) status: exit code << 8 | terminating signal
}

// connector is a NETLINK_CONNECTOR socket subscribed to process exits.
//
// The kernel delivers proc events only to listeners in the initial user and
// pid namespaces holding CAP_NET_ADMIN, on a socket in the initial network
// namespace; everywhere else dial fails (or, on some kernels, succeeds and
// stays silent), and Logger degrades to exits without status.
type connector struct {
	f *os.File
}

func dialConnector() (*connector, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("proc connector: socket: %w", err)
	}
	// Events for the whole host arrive here; a large buffer rides out
	// bursts while Serve is busy. FORCE needs CAP_NET_ADMIN, which we
	// need anyway; fall back to the capped size.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc, Pid: 0}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("proc connector: bind: %w", err)
	}
	if err := unix.Sendto(fd, listenMsg(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("proc connector: listen: %w", err)
	}
	return &connector{f: os.NewFile(uintptr(fd), "proc-connector")}, nil
}

// listenMsg builds PROC_CN_MCAST_LISTEN. Since Linux 6.6 the payload can be
// struct proc_input {op; event_type}, which makes the kernel drop every
// event but exits before queueing it: without it we would wake for every
// fork and exec on the host. Older kernels only accept the bare op.
func listenMsg() []byte {
	payload := 4
	if kernelAtLeast(6, 6) {
		payload = 8
	}
	b := make([]byte, nlmsgHdrLen+cnMsgLen+payload)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], unix.NLMSG_DONE)
	ne.PutUint32(b[12:], uint32(os.Getpid()))
	ne.PutUint32(b[16:], cnIdxProc)
	ne.PutUint32(b[20:], cnValProc)
	ne.PutUint16(b[32:], uint16(payload))
	ne.PutUint32(b[36:], procCnMcastListen)
	if payload == 8 {
		ne.PutUint32(b[40:], procEventExit)
	}
	return b
}

func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	maj, rest, _ := strings.Cut(rel, ".")
	mn, _, _ := strings.Cut(rest, ".")
	a, err1 := strconv.Atoi(maj)
	b, err2 := strconv.Atoi(strings.TrimRightFunc(mn, func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return a > major || a == major && b >= minor
}

// errEmpty reports that a non-waiting read found nothing queued.
var errEmpty = errors.New("proc connector: no event queued")

// errOverrun reports that the socket buffer overflowed and exits were lost.
var errOverrun = errors.New("proc connector: receive buffer overrun, events lost")

// read appends to out the exits in the next datagram. If wait is false and
// nothing is queued it returns errEmpty instead of blocking.
func (c *connector) read(buf []byte, out []exitMsg, wait bool) ([]exitMsg, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return out, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return rerr != unix.EAGAIN || !wait
	})
	if err != nil {
		return out, err
	}
	switch {
	case rerr == unix.EAGAIN:
		return out, errEmpty
	case rerr == unix.ENOBUFS:
		return out, errOverrun
	case rerr != nil:
		return out, fmt.Errorf("proc connector: recv: %w", rerr)
	}
	ne := binary.NativeEndian
	for b := buf[:n]; len(b) >= nlmsgHdrLen; {
		l := int(ne.Uint32(b))
		if l < nlmsgHdrLen || l > len(b) {
			break
		}
		m := b[:l]
		b = b[min((l+3)&^3, len(b)):]
		if len(m) < procEventDataOff+16 || ne.Uint32(m[16:]) != cnIdxProc {
			continue
		}
		if ne.Uint32(m[nlmsgHdrLen+cnMsgLen:]) != procEventExit {
			continue
		}
		pid := ne.Uint32(m[procEventDataOff:])
		tgid := ne.Uint32(m[procEventDataOff+4:])
		// One event per thread; the process is done when its leader is.
		if pid != tgid {
			continue
		}
		out = append(out, exitMsg{tgid: int(tgid), status: ne.Uint32(m[procEventDataOff+8:])})
	}
	return out, nil
}

func (c *connector) close() error { return c.f.Close() }

// setDeadline unblocks read.
func (c *connector) setDeadline(t time.Time) { c.f.SetReadDeadline(t) }
