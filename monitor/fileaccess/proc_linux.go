//go:build linux

package fileaccess

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// procInfo fills the process fields of an Access from /proc/<pid>. Missing
// pieces (the process exited, a kernel thread) are left empty; UID is -1
// when status could not be read. Nothing here opens a file outside /proc,
// so it cannot wait on a permission event of its own group.
func procInfo(pid int) Access {
	dir := "/proc/" + strconv.Itoa(pid)
	a := procIdentity(dir)
	a.Pid = pid
	procDetails(dir, &a)
	return a
}

// procIdentity reads what changes with execve: the executable and argv.
func procIdentity(dir string) Access {
	var a Access
	if exe, err := os.Readlink(dir + "/exe"); err == nil {
		a.Exe = trimDeleted(exe)
	}
	if b := readProc(dir+"/cmdline", 128<<10); len(b) > 0 {
		b = bytes.TrimSuffix(b, []byte{0})
		a.Argv = strings.Split(string(b), "\x00")
	}
	return a
}

// procDetails reads the rest: status (comm, ppid, uid), pid namespace and
// cgroup.
func procDetails(dir string, a *Access) {
	a.UID = -1
	if b := readProc(dir+"/status", 64<<10); b != nil {
		parseStatus(b, a)
	}
	if ns, err := os.Readlink(dir + "/ns/pid"); err == nil {
		a.PidNS = parseNSLink(ns)
	}
	if b := readProc(dir+"/cgroup", 64<<10); b != nil {
		a.Cgroup = pickCgroup(b)
	}
}

// readProc reads a /proc file with plain syscalls (os.File would register
// it with the poller: two more syscalls per read on the opener's path). It
// returns nil on error and at most max bytes.
func readProc(name string, max int) []byte {
	fd, err := unix.Open(name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 4096)
	for len(buf) < max {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	if len(buf) > max {
		buf = buf[:max]
	}
	return buf
}

// procCache remembers process details for a short time: a process opening
// many watched files (tar, a backup) then costs only the executable and
// argv reads per open, which also catch an execve in between.
type procCache struct {
	mu sync.Mutex
	m  map[int]cachedProc
}

type cachedProc struct {
	a  Access
	at time.Time
}

const procCacheTTL = time.Second

func (c *procCache) info(pid int) Access {
	dir := "/proc/" + strconv.Itoa(pid)
	now := time.Now()
	id := procIdentity(dir)
	c.mu.Lock()
	e, ok := c.m[pid]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < procCacheTTL && e.a.Exe == id.Exe && slices.Equal(e.a.Argv, id.Argv) {
		return e.a
	}
	a := id
	a.Pid = pid
	procDetails(dir, &a)
	if a.Exe == "" && a.Argv == nil { // gone, or a kernel thread: nothing worth caching
		return a
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]cachedProc{}
	}
	if len(c.m) >= 1024 {
		for p, e := range c.m {
			if now.Sub(e.at) >= procCacheTTL {
				delete(c.m, p)
			}
		}
		if len(c.m) >= 1024 {
			clear(c.m)
		}
	}
	c.m[pid] = cachedProc{a: a, at: now}
	return a
}

// parseStatus takes Name, PPid and the effective Uid from /proc/<pid>/status.
// The uid fields are translated into the reader's user namespace, so a
// process running as root in a user namespace shows its host uid.
func parseStatus(b []byte, a *Access) {
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(bytes.TrimRight(line, "\n"), []byte{':'})
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch string(k) {
		case "Name":
			a.Comm = string(v)
		case "PPid":
			if n, err := strconv.Atoi(string(v)); err == nil {
				a.PPid = n
			}
		case "Uid": // real, effective, saved, fs
			f := bytes.Fields(v)
			if len(f) >= 2 {
				if n, err := strconv.Atoi(string(f[1])); err == nil {
					a.UID = n
				}
			}
		}
	}
}

// parseNSLink returns the inode number in a namespace link ("pid:[4026531836]").
func parseNSLink(s string) uint64 {
	i := strings.IndexByte(s, '[')
	j := strings.LastIndexByte(s, ']')
	if i < 0 || j <= i {
		return 0
	}
	n, _ := strconv.ParseUint(s[i+1:j], 10, 64)
	return n
}

// pickCgroup chooses one path from /proc/<pid>/cgroup: the v1 pids
// hierarchy (every clawhold cell joins it on v1 hosts), else the unified
// ("0::") path, else the first non-root path.
func pickCgroup(b []byte) string {
	var unified, first string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\n")
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrl, p := parts[1], parts[2]
		for c := range strings.SplitSeq(ctrl, ",") {
			if c == "pids" {
				return p
			}
		}
		switch {
		case parts[0] == "0" && ctrl == "":
			unified = p
		case first == "" && p != "/":
			first = p
		}
	}
	if unified != "" && (unified != "/" || first == "") {
		return unified
	}
	return first
}

// openKind looks for an fd of pid that refers to the file (ino, kpath) and
// reports whether it is open for writing. ok is false when no such fd is
// found (the process exited or closed it). Only /proc is touched: fdinfo
// gives the inode and flags without asking the file's filesystem (a stat
// through /proc/<pid>/fd/N could wait on a FUSE server).
func openKind(pid int, ino uint64, kpath string) (write, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid)
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return false, false
	}
	inoLine := []byte("ino:\t" + strconv.FormatUint(ino, 10) + "\n")
	for _, e := range ents {
		info, err := os.ReadFile(dir + "/fdinfo/" + e.Name())
		if err != nil || !bytes.Contains(info, inoLine) {
			continue
		}
		if l, err := os.Readlink(dir + "/fd/" + e.Name()); err != nil || trimDeleted(l) != kpath {
			continue
		}
		flags, found := fdinfoField(info, "flags")
		if !found {
			continue
		}
		f, err := strconv.ParseUint(flags, 8, 64)
		if err != nil {
			continue
		}
		return f&uint64(os.O_WRONLY|os.O_RDWR) != 0, true
	}
	return false, false
}

func fdinfoField(b []byte, name string) (string, bool) {
	for line := range bytes.Lines(b) {
		k, v, ok := bytes.Cut(bytes.TrimRight(line, "\n"), []byte{':'})
		if ok && string(k) == name {
			return string(bytes.TrimSpace(v)), true
		}
	}
	return "", false
}

func trimDeleted(p string) string { return strings.TrimSuffix(p, " (deleted)") }
