//go:build unix

package datadir

import (
	"io/fs"
	"os"
	"syscall"
)

// fileUID returns the owner of the file fi describes.
func fileUID(fi fs.FileInfo) (uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// openNoFollow opens path for reading. Unless follow is set, a symlink in
// the last path element makes it fail. O_NONBLOCK keeps a FIFO planted at
// path from blocking the open; the caller then rejects anything not regular.
func openNoFollow(path string, follow bool) (*os.File, error) {
	flag := os.O_RDONLY | syscall.O_NONBLOCK
	if !follow {
		flag |= syscall.O_NOFOLLOW
	}
	return os.OpenFile(path, flag, 0)
}
