//go:build !unix

package datadir

import (
	"errors"
	"io/fs"
	"os"
)

// fileUID reports that ownership is unknown: clawhold's checks need Unix
// file ownership, so every check fails closed here.
func fileUID(fs.FileInfo) (uid int, ok bool) {
	return 0, false
}

// openNoFollow refuses a symlink at path by an Lstat first (racy, but these
// platforms have no O_NOFOLLOW); the ownership check fails closed anyway.
func openNoFollow(path string, follow bool) (*os.File, error) {
	if !follow {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, &fs.PathError{Op: "open", Path: path, Err: errors.New("is a symlink")}
		}
	}
	return os.Open(path)
}
