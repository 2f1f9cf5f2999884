//go:build linux

package execlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Limits on what one exec event records. Beyond them the event is marked
// Truncated; the exec itself is never affected.
const (
	maxArgLen  = 4 << 10  // bytes per argument (and for the path)
	maxArgs    = 256      // arguments
	maxArgvLen = 64 << 10 // bytes over all arguments

	// firstChunk is how much of each argument the batched read takes.
	firstChunk = 256
)

// argvReader reads the filename and argv of a task blocked in execve from
// its memory with process_vm_readv. It batches: one call for the filename
// and the argv pointer array, one for all the strings; only strings that
// cross a page or exceed their first chunk need more calls.
//
// Each remote iovec stays within one page: process_vm_readv stops at the
// first fault, and a chunk that ran past the end of a string into an
// unmapped page would otherwise cut short every later iovec.
//
// The reader is not safe for concurrent use; Serve owns one.
type argvReader struct {
	page   uint64
	ptrs   [(maxArgs + 1) * 8]byte
	path   [maxArgLen]byte
	strs   []byte // first chunks, then the tail for long arguments
	local  []unix.Iovec
	remote []unix.RemoteIovec
}

func newArgvReader(pageSize int) *argvReader {
	return &argvReader{
		page:   uint64(pageSize),
		strs:   make([]byte, maxArgs*firstChunk+maxArgvLen),
		local:  make([]unix.Iovec, 0, maxArgs),
		remote: make([]unix.RemoteIovec, 0, maxArgs),
	}
}

// chunk returns how many bytes to read at addr: up to the end of its page,
// at most max.
func (r *argvReader) chunk(addr uint64, max int) int {
	n := int(r.page - addr%r.page)
	return min(n, max)
}

func (r *argvReader) add(dst []byte, addr uint64) {
	r.local = append(r.local, unix.Iovec{Base: &dst[0], Len: uint64(len(dst))})
	r.remote = append(r.remote, unix.RemoteIovec{Base: uintptr(addr), Len: len(dst)})
}

// readv runs the batched read and returns how many bytes each iovec got.
func (r *argvReader) readv(pid int, got []int) error {
	n, err := unix.ProcessVMReadv(pid, r.local, r.remote, 0)
	for i := range r.local {
		l := int(r.local[i].Len)
		got[i] = min(max(n, 0), l)
		n -= got[i]
	}
	r.local, r.remote = r.local[:0], r.remote[:0]
	return err
}

// finish completes a read that stopped before its terminator: it continues
// page by page until stop reports done or dst is full. It returns the new
// length of valid data.
func (r *argvReader) finish(pid int, addr uint64, dst []byte, have int, stop func([]byte) bool) (int, error) {
	for have < len(dst) && !stop(dst[:have]) {
		c := r.chunk(addr+uint64(have), len(dst)-have)
		n, err := unix.ProcessVMReadv(pid,
			[]unix.Iovec{{Base: &dst[have], Len: uint64(c)}},
			[]unix.RemoteIovec{{Base: uintptr(addr) + uintptr(have), Len: c}}, 0)
		if n > 0 {
			have += n
		}
		if err != nil || n <= 0 {
			if err == nil {
				err = unix.EFAULT
			}
			return have, err
		}
	}
	return have, nil
}

func hasNUL(b []byte) bool { return bytes.IndexByte(b, 0) >= 0 }

// hasNullPtr reports whether the pointer array in b is terminated.
func hasNullPtr(b []byte) bool {
	for i := 0; i+8 <= len(b); i += 8 {
		if binary.NativeEndian.Uint64(b[i:]) == 0 {
			return true
		}
	}
	return false
}

// read returns the path and argv of the execve blocked in task pid. On a
// read error it returns what it got, truncated, and the error.
func (r *argvReader) read(pid int, pathAddr, argvAddr uint64) (path string, argv []string, truncated bool, err error) {
	var got [2]int
	var errs []error
	if pathAddr != 0 {
		r.add(r.path[:r.chunk(pathAddr, maxArgLen)], pathAddr)
	}
	if argvAddr != 0 {
		r.add(r.ptrs[:r.chunk(argvAddr, len(r.ptrs))], argvAddr)
	}
	if len(r.local) > 0 {
		// A fault on the path chunk leaves the argv chunk unread; finish
		// below retries each piece on its own.
		r.readv(pid, got[:len(r.local)])
	}
	if argvAddr != 0 && pathAddr == 0 {
		got[1], got[0] = got[0], 0
	}
	if pathAddr != 0 {
		n, err := r.finish(pid, pathAddr, r.path[:], got[0], hasNUL)
		if err != nil {
			errs = append(errs, err)
		}
		p := r.path[:n]
		if i := bytes.IndexByte(p, 0); i >= 0 {
			p = p[:i]
		} else {
			truncated = true
		}
		path = string(p)
	}
	if argvAddr == 0 {
		return path, nil, truncated, errors.Join(errs...)
	}
	np, perr := r.finish(pid, argvAddr, r.ptrs[:], got[1], hasNullPtr)
	if perr != nil {
		errs = append(errs, perr)
	}

	// Collect the string pointers and read all strings in one call.
	var addrs [maxArgs]uint64
	argc := 0
	terminated := false
	for i := 0; i+8 <= np; i += 8 {
		a := binary.NativeEndian.Uint64(r.ptrs[i:])
		if a == 0 {
			terminated = true
			break
		}
		if argc == maxArgs {
			break
		}
		addrs[argc] = a
		argc++
	}
	if !terminated {
		truncated = true
	}
	// First pass: a short page-bounded chunk per argument, all in one
	// call. Most arguments fit; the rest are finished one by one.
	off := 0
	var starts, lens [maxArgs]int
	for i := range argc {
		c := r.chunk(addrs[i], firstChunk)
		starts[i] = off
		r.add(r.strs[off:off+c], addrs[i])
		off += c
	}
	if argc > 0 {
		r.readv(pid, lens[:argc])
	}
	// Long arguments are finished in the tail of the scratch buffer, whose
	// size is the argv budget, so their bytes stay contiguous.
	tail := off
	total, kept := 0, 0
	for i := range argc {
		s := r.strs[starts[i] : starts[i]+lens[i]]
		l := bytes.IndexByte(s, 0)
		if l < 0 {
			room := min(maxArgLen, len(r.strs)-tail)
			if room <= 0 {
				truncated = true
				break
			}
			dst := r.strs[tail : tail+room]
			m := copy(dst, s)
			m, err := r.finish(pid, addrs[i], dst, m, hasNUL)
			if err != nil {
				errs = append(errs, err)
			}
			starts[i] = tail
			if l = bytes.IndexByte(dst[:m], 0); l < 0 {
				l = m
				truncated = true
			}
			tail += l
		}
		if total+l > maxArgvLen {
			l = maxArgvLen - total
			truncated = true
		}
		lens[i] = l
		total += l
		kept = i + 1
		if total == maxArgvLen && i+1 < argc {
			truncated = true
			break
		}
	}
	argc = kept

	// One allocation for all argument bytes, one for the slice.
	all := make([]byte, 0, total)
	for i := range argc {
		all = append(all, r.strs[starts[i]:starts[i]+lens[i]]...)
	}
	str := unsafe.String(unsafe.SliceData(all), len(all))
	argv = make([]string, argc)
	pos := 0
	for i := range argc {
		argv[i] = str[pos : pos+lens[i]]
		pos += lens[i]
	}
	return path, argv, truncated, errors.Join(errs...)
}
