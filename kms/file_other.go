//go:build !unix

package kms

import (
	"errors"
	"io/fs"
	"os"
)

// openNoFollow opens path for reading; a symlink at path is refused by an
// Lstat check first (racy, but these platforms have no O_NOFOLLOW).
func openNoFollow(path string, follow bool) (*os.File, error) {
	if !follow {
		if fi, err := os.Lstat(path); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, &fs.PathError{Op: "open", Path: path, Err: errors.New("is a symlink")}
		}
	}
	return os.Open(path)
}

// fileOwner is unknown on these platforms.
func fileOwner(fs.FileInfo) (int, bool) { return 0, false }
