// Package datadir finds, creates and checks clawhold's data directory, and
// checks and writes the secret files kept in and around it.
//
// The data directory holds the stores and, by default, the root key, so it
// must be private to the user clawhold runs as: clawhold refuses to use one
// that other users can read, write or replace.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"github.com/clawhold/clawhold/config"
)

// Resolve returns the data directory to use: flagValue (--data-dir) if set,
// else $CLAWHOLD_DATA_DIR, else cfg.DataDir (cfg may be nil), else the
// default: /var/lib/clawhold for root, otherwise $XDG_DATA_HOME/clawhold
// (~/.local/share/clawhold). It returns "" only when none is set and no home
// directory can be found; Ensure and Check reject "".
func Resolve(flagValue string, cfg *config.Config) string {
	return resolve(flagValue, cfg, os.Getenv, os.Getuid())
}

func resolve(flagValue string, cfg *config.Config, getenv func(string) string, uid int) string {
	switch {
	case flagValue != "":
		return filepath.Clean(flagValue)
	case getenv("CLAWHOLD_DATA_DIR") != "":
		return filepath.Clean(getenv("CLAWHOLD_DATA_DIR"))
	case cfg != nil && cfg.DataDir != "":
		return filepath.Clean(cfg.DataDir)
	case uid == 0:
		return "/var/lib/clawhold"
	}
	// The XDG base directory spec says relative values are to be ignored.
	if x := getenv("XDG_DATA_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "clawhold")
	}
	home := getenv("HOME")
	if home == "" {
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			home = u.HomeDir
		}
	}
	if home == "" {
		return ""
	}
	return filepath.Join(home, ".local", "share", "clawhold")
}

// Ensure creates the data directory at path if it does not exist, with mode
// 0700 whatever the umask, and then checks it with Check.
func Ensure(path string) error {
	if path == "" {
		return errEmpty
	}
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		// Missing parents are created 0700 too (less the umask).
		if err := os.MkdirAll(path, 0o700); err != nil {
			return fmt.Errorf("creating data dir: %w", err)
		}
		// The umask may have taken bits away (or, with a default ACL,
		// the directory may have more); say exactly what we mean.
		if err := os.Chmod(path, 0o700); err != nil {
			return fmt.Errorf("creating data dir: %w", err)
		}
	}
	return Check(path)
}

var errEmpty = errors.New("data dir is not set and there is no home directory to default to; pass --data-dir or set CLAWHOLD_DATA_DIR")

// Check returns an error unless path is a directory, not a symlink, owned by
// the running user, that no other user can read, write or enter, and whose
// parent directories no other user can use to rename or replace it. Each
// error says how to fix the problem.
func Check(path string) error {
	if path == "" {
		return errEmpty
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("checking data dir: %w", err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			return fmt.Errorf("data dir %s is a symlink: use a real directory", path)
		}
		return fmt.Errorf("data dir %s is a symlink to %s: use the real path, e.g. --data-dir %s", path, target, target)
	}
	if !fi.IsDir() {
		return fmt.Errorf("data dir %s is not a directory (mode %s): remove it or choose another --data-dir", path, fi.Mode())
	}
	if err := checkOwnerMode("data dir", path, fi); err != nil {
		return err
	}
	return checkParents("data dir", path)
}

// checkOwnerMode checks that fi, the Lstat of path, is owned by the running
// user and has no group or other permission bits.
func checkOwnerMode(what, path string, fi fs.FileInfo) error {
	me := os.Getuid()
	if uid, ok := fileUID(fi); !ok {
		return fmt.Errorf("%s %s: cannot determine its owner on this system", what, path)
	} else if uid != me {
		return fmt.Errorf("%s %s is owned by uid %d, not %d (you); run: chown %d %s or %s",
			what, path, uid, me, me, path, chooseAnother(what))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		fix, access := "600", "run"
		if fi.IsDir() {
			fix, access = "700", "enter"
		}
		switch {
		case perm&0o022 != 0:
			access = "write to"
		case perm&0o044 != 0:
			access = "read"
		}
		return fmt.Errorf("%s %s is mode %04o: other users can %s it; run: chmod %s %s",
			what, path, perm, access, fix, path)
	}
	return nil
}

func chooseAnother(what string) string {
	if what == "data dir" {
		return "choose another --data-dir"
	}
	return "use another file"
}

// checkParents checks every directory above path, both as written and with
// symlinks resolved: if another user can write to one without the sticky bit,
// or owns it, they can rename path away and put their own in its place.
func checkParents(what, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("checking %s: %w", what, err)
	}
	parent := filepath.Dir(abs)
	dirs := ancestors(parent)
	if real, err := filepath.EvalSymlinks(parent); err == nil && real != parent {
		dirs = append(dirs, ancestors(real)...)
	}
	me := os.Getuid()
	for _, dir := range dirs {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("checking %s %s: %w", what, path, err)
		}
		if uid, ok := fileUID(fi); ok && uid != 0 && uid != me {
			return fmt.Errorf("%s %s: parent directory %s is owned by uid %d, who could replace the %s; %s in a directory owned by root or by you (uid %d)",
				what, path, dir, uid, what, chooseAnother(what), me)
		}
		mode := fi.Mode()
		if mode.Perm()&0o022 != 0 && mode&fs.ModeSticky == 0 {
			return fmt.Errorf("%s %s: parent directory %s is mode %04o: other users can write to it and replace the %s; run: chmod go-w %s or %s",
				what, path, dir, mode.Perm(), what, dir, chooseAnother(what))
		}
	}
	return nil
}

// ancestors returns dir and every directory above it, up to the root.
func ancestors(dir string) []string {
	var dirs []string
	for {
		dirs = append(dirs, dir)
		up := filepath.Dir(dir)
		if up == dir {
			return dirs
		}
		dir = up
	}
}
