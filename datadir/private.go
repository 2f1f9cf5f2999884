package datadir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ReadPrivateFile reads a small file holding a secret (a key, a token, a
// password) after checking that only the running user can reach it: a
// regular file owned by the running user with no group or other permission
// bits, in directories no other user can replace it in. The checks apply to
// the opened file itself (fstat), not to a path looked up again, so the file
// cannot be swapped between check and read. A symlink in the last element
// is refused unless follow is set, in which case its target is checked
// (for token files managed by other tools). what names the file in errors,
// e.g. "root key file". Files larger than maxSize bytes are refused. The
// caller owns the result and should clear it.
func ReadPrivateFile(what, path string, maxSize int, follow bool) ([]byte, error) {
	f, err := openNoFollow(path, follow)
	if err != nil {
		if fi, lerr := os.Lstat(path); !follow && lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			return nil, fmt.Errorf("%s %s is a symlink to %s: point clawhold at the real file", what, path, target)
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %s is not a regular file (mode %s)", what, path, fi.Mode())
	}
	if err := checkOwnerMode(what, path, fi); err != nil {
		return nil, err
	}
	if err := checkParents(what, path); err != nil {
		return nil, err
	}
	buf := make([]byte, maxSize+1)
	n, err := io.ReadFull(f, buf)
	switch {
	case err == nil:
		clear(buf)
		return nil, fmt.Errorf("%s %s is larger than %d bytes", what, path, maxSize)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return buf[:n], nil
	default:
		clear(buf)
		return nil, fmt.Errorf("%s: reading %s: %w", what, path, err)
	}
}
