//go:build linux

package execlog

import (
	"bytes"
	"strconv"

	"golang.org/x/sys/unix"
)

// procInfo is what one read of /proc/<tid>/status gives us.
type procInfo struct {
	tgid   int // host (our pid namespace)
	ppid   int // host
	euid   int // as mapped into our user namespace
	nstgid int // innermost pid namespace, 0 if unknown
}

// procReader reads /proc files into reusable buffers. Not safe for
// concurrent use.
type procReader struct {
	path []byte
	buf  [4096]byte
	link [unix.PathMax]byte
}

// procPath returns "/proc/<pid>/<name>" built in r.path.
func (r *procReader) procPath(pid int, name string) string {
	r.path = append(r.path[:0], "/proc/"...)
	r.path = strconv.AppendInt(r.path, int64(pid), 10)
	r.path = append(r.path, '/')
	r.path = append(r.path, name...)
	return string(r.path)
}

func (r *procReader) status(tid int) (procInfo, error) {
	fd, err := unix.Open(r.procPath(tid, "status"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return procInfo{}, err
	}
	n, err := unix.Read(fd, r.buf[:])
	unix.Close(fd)
	if err != nil {
		return procInfo{}, err
	}
	return parseStatus(r.buf[:n]), nil
}

// parseStatus picks Tgid, PPid, Uid (effective) and NStgid (last field: the
// innermost namespace) out of /proc/<pid>/status.
func parseStatus(b []byte) procInfo {
	info := procInfo{tgid: -1, ppid: -1, euid: -1}
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		switch string(key) { // no allocation: compiler-optimised compare
		case "Tgid":
			info.tgid = atoi(field(val, 0))
		case "PPid":
			info.ppid = atoi(field(val, 0))
		case "Uid":
			info.euid = atoi(field(val, 1))
		case "NStgid":
			f := bytes.Fields(val)
			if len(f) > 0 {
				info.nstgid = atoi(f[len(f)-1])
			}
		}
	}
	return info
}

func field(b []byte, n int) []byte {
	for i := 0; ; i++ {
		b = bytes.TrimLeft(b, " \t")
		if len(b) == 0 {
			return nil
		}
		end := bytes.IndexAny(b, " \t")
		if end < 0 {
			end = len(b)
		}
		if i == n {
			return b[:end]
		}
		b = b[end:]
	}
}

func atoi(b []byte) int {
	n := 0
	if len(b) == 0 {
		return -1
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// cwd reads /proc/<tid>/cwd. The kernel renders the link with d_path
// relative to *our* root. For a sandboxed task that called pivot_root in
// its own mount namespace, its root is not reachable from ours, so d_path
// stops at the root of that mount tree and the link shows the path as the
// sandbox sees it (e.g. "/workspace"; checked on Linux 6.18 with unshare -m
// + pivot_root into a tmpfs: the host reads "/work"), not a host path; a
// removed directory
// gets a " (deleted)" suffix. Either way it is a label for humans, not a
// path the supervisor may open.
func (r *procReader) cwd(tid int) (string, error) {
	n, err := unix.Readlink(r.procPath(tid, "cwd"), r.link[:])
	if err != nil {
		return "", err
	}
	return string(r.link[:n]), nil
}

// fdinfoNSpid returns the innermost pid of the task behind our pidfd, from
// the NSpid line of /proc/self/fdinfo/<pidfd> (much shorter than status),
// or 0.
func (r *procReader) fdinfoNSpid(pidfd int) int {
	fd, err := unix.Open("/proc/self/fdinfo/"+strconv.Itoa(pidfd), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	n, err := unix.Read(fd, r.buf[:])
	unix.Close(fd)
	if err != nil {
		return 0
	}
	b := r.buf[:n]
	i := bytes.Index(b, []byte("\nNSpid:"))
	if i < 0 {
		return 0
	}
	line := b[i+len("\nNSpid:"):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	f := bytes.Fields(line)
	if len(f) == 0 {
		return 0
	}
	return max(atoi(f[len(f)-1]), 0)
}

// uidMapping is one line of /proc/<pid>/uid_map: inside, outside, count.
type uidMapping struct{ inside, outside, count uint64 }

func (r *procReader) uidMap(tid int) ([]uidMapping, error) {
	fd, err := unix.Open(r.procPath(tid, "uid_map"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	n, err := unix.Read(fd, r.buf[:])
	unix.Close(fd)
	if err != nil {
		return nil, err
	}
	var m []uidMapping
	for _, line := range bytes.Split(r.buf[:n], []byte{'\n'}) {
		f := bytes.Fields(line)
		if len(f) != 3 {
			continue
		}
		a, _ := strconv.ParseUint(string(f[0]), 10, 64)
		b, _ := strconv.ParseUint(string(f[1]), 10, 64)
		c, _ := strconv.ParseUint(string(f[2]), 10, 64)
		m = append(m, uidMapping{a, b, c})
	}
	return m, nil
}

// toInside maps a uid as seen by the supervisor to the uid inside the
// namespace described by m, or -1.
func toInside(m []uidMapping, uid int) int {
	if uid < 0 {
		return -1
	}
	u := uint64(uid)
	for _, e := range m {
		if u >= e.outside && u-e.outside < e.count {
			return int(e.inside + u - e.outside)
		}
	}
	return -1
}

// cwdOf reads the target of /proc/<tid>/fd/<fd>, for execveat's dirfd.
func (r *procReader) cwdOf(tid, fd int) (string, error) {
	n, err := unix.Readlink(r.procPath(tid, "fd/"+strconv.Itoa(fd)), r.link[:])
	if err != nil {
		return "", err
	}
	return string(r.link[:n]), nil
}
