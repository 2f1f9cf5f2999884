package datadir

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileAtomic writes data to path so that readers, and path after a
// crash, see either the old contents or the new, never a mix. It writes a
// temporary file in the same directory with mode perm (normally 0600), syncs
// it, renames it over path and syncs the directory. On error the temporary
// file is removed; path is untouched unless only the final directory sync
// failed. A symlink at path is replaced, not followed.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	return WriteFileAtomicFunc(path, data, perm, nil)
}

// WriteFileAtomicFunc is WriteFileAtomic with prepare, when not nil,
// called on the temporary file before any data is written (to chown it,
// for one).
func WriteFileAtomicFunc(path string, data []byte, perm os.FileMode, prepare func(*os.File) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// CreateTemp makes the file 0600, so data is never readable by others,
	// even for a moment.
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	// Chmod, unlike the mode given at creation, is not subject to the umask.
	if err := f.Chmod(perm.Perm()); err != nil {
		return err
	}
	if prepare != nil {
		if err := prepare(f); err != nil {
			return err
		}
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
