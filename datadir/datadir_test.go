//go:build unix

package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/clawhold/clawhold/config"
)

// nobody is the uid test files are given to when another owner is needed.
const nobody = 65534

// needRoot skips a test that has to chown, unless running in CI, where
// skipping would hide that the check is not tested: there it fails.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test chowns files and must run as root in CI")
	}
	t.Skip("not root: cannot chown")
}

// withUmask runs the rest of the test under umask mask.
func withUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

func mkdir(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask, and sticky bits
		t.Fatal(err)
	}
}

func TestCheckMode(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		want string // "" for no error; %s is the path
	}{
		{0o700, ""},
		{0o750, "data dir %s is mode 0750: other users can read it; run: chmod 700 %s"},
		{0o755, "data dir %s is mode 0755: other users can read it; run: chmod 700 %s"},
		{0o770, "data dir %s is mode 0770: other users can write to it; run: chmod 700 %s"},
		{0o777, "data dir %s is mode 0777: other users can write to it; run: chmod 700 %s"},
		{0o705, "data dir %s is mode 0705: other users can read it; run: chmod 700 %s"},
		{0o701, "data dir %s is mode 0701: other users can enter it; run: chmod 700 %s"},
		{0o710, "data dir %s is mode 0710: other users can enter it; run: chmod 700 %s"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%04o", tt.mode), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			mkdir(t, dir, tt.mode)
			err := Check(dir)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if want := fmt.Sprintf(tt.want, dir, dir); err == nil || err.Error() != want {
				t.Errorf("Check = %v\nwant %s", err, want)
			}
		})
	}
}

func TestCheckRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, base string) string // returns the data dir
		root  bool                                   // needs root to set up
		want  string                                 // substring; %s is base
	}{
		{
			name: "symlink",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "real"), 0o700)
				link := filepath.Join(base, "data")
				if err := os.Symlink(filepath.Join(base, "real"), link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			want: "data dir %[1]s/data is a symlink to %[1]s/real: use the real path, e.g. --data-dir %[1]s/real",
		},
		{
			name: "dangling symlink",
			setup: func(t *testing.T, base string) string {
				link := filepath.Join(base, "data")
				if err := os.Symlink(filepath.Join(base, "nowhere"), link); err != nil {
					t.Fatal(err)
				}
				return link
			},
			want: "data dir %[1]s/data is a symlink",
		},
		{
			name: "regular file",
			setup: func(t *testing.T, base string) string {
				path := filepath.Join(base, "data")
				if err := os.WriteFile(path, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				return path
			},
			want: "data dir %[1]s/data is not a directory",
		},
		{
			name: "missing",
			setup: func(t *testing.T, base string) string {
				return filepath.Join(base, "data")
			},
			want: "lstat %[1]s/data: no such file or directory",
		},
		{
			name: "wrong owner",
			root: true,
			setup: func(t *testing.T, base string) string {
				dir := filepath.Join(base, "data")
				mkdir(t, dir, 0o700)
				if err := os.Chown(dir, nobody, -1); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			want: fmt.Sprintf("data dir %%[1]s/data is owned by uid %d, not %d (you); run: chown %d %%[1]s/data or choose another --data-dir",
				nobody, os.Getuid(), os.Getuid()),
		},
		{
			name: "world-writable parent",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "shared"), 0o777)
				dir := filepath.Join(base, "shared", "data")
				mkdir(t, dir, 0o700)
				return dir
			},
			want: "data dir %[1]s/shared/data: parent directory %[1]s/shared is mode 0777: other users can write to it and replace the data dir; run: chmod go-w %[1]s/shared or choose another --data-dir",
		},
		{
			name: "group-writable grandparent",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "team"), 0o770)
				mkdir(t, filepath.Join(base, "team", "me"), 0o755)
				dir := filepath.Join(base, "team", "me", "data")
				mkdir(t, dir, 0o700)
				return dir
			},
			want: "parent directory %[1]s/team is mode 0770",
		},
		{
			name: "symlinked parent in a world-writable directory",
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "shared"), 0o777)
				mkdir(t, filepath.Join(base, "shared", "real"), 0o755)
				mkdir(t, filepath.Join(base, "shared", "real", "data"), 0o700)
				if err := os.Symlink(filepath.Join(base, "shared", "real"), filepath.Join(base, "link")); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(base, "link", "data")
			},
			want: "parent directory %[1]s/shared is mode 0777",
		},
		{
			name: "parent owned by another user",
			root: true,
			setup: func(t *testing.T, base string) string {
				mkdir(t, filepath.Join(base, "theirs"), 0o755)
				dir := filepath.Join(base, "theirs", "data")
				mkdir(t, dir, 0o700)
				if err := os.Chown(filepath.Join(base, "theirs"), nobody, -1); err != nil {
					t.Fatal(err)
				}
				return dir
			},
			want: fmt.Sprintf("parent directory %%[1]s/theirs is owned by uid %d, who could replace the data dir", nobody),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				needRoot(t)
			}
			base := t.TempDir()
			dir := tt.setup(t, base)
			err := Check(dir)
			if want := fmt.Sprintf(tt.want, base); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Check = %v\nwant an error containing %s", err, want)
			}
		})
	}
}

func TestCheckAllows(t *testing.T) {
	base := t.TempDir()

	// A sticky world-writable parent, like /tmp, is fine: others cannot
	// rename what they do not own.
	mkdir(t, filepath.Join(base, "tmp"), 0o777|fs.ModeSticky)
	dir := filepath.Join(base, "tmp", "data")
	mkdir(t, dir, 0o700)
	if err := Check(dir); err != nil {
		t.Errorf("Check under a sticky directory = %v", err)
	}

	// A symlink above the data dir is fine when its target is safe.
	mkdir(t, filepath.Join(base, "real"), 0o755)
	mkdir(t, filepath.Join(base, "real", "data"), 0o700)
	if err := os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	if err := Check(filepath.Join(base, "link", "data")); err != nil {
		t.Errorf("Check through a symlinked parent = %v", err)
	}

	// Relative paths are checked from the working directory.
	t.Chdir(base)
	if err := Check(filepath.Join("real", "data")); err != nil {
		t.Errorf("Check(relative) = %v", err)
	}

	if err := Check(""); err == nil {
		t.Error(`Check("") = nil, want error`)
	}
}

func TestEnsure(t *testing.T) {
	for _, mask := range []int{0, 0o022, 0o077} {
		t.Run(fmt.Sprintf("umask %03o", mask), func(t *testing.T) {
			base := t.TempDir() // before the umask change, so it stays 0700
			withUmask(t, mask)
			dir := filepath.Join(base, "a", "b", "data")
			if err := Ensure(dir); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{dir, filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
				fi, err := os.Stat(d)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode().Perm(); got != 0o700 {
					t.Errorf("%s is mode %04o, want 0700", d, got)
				}
			}
			// Idempotent.
			if err := Ensure(dir); err != nil {
				t.Errorf("second Ensure = %v", err)
			}
		})
	}

	t.Run("existing open dir is refused, not fixed", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		mkdir(t, dir, 0o755)
		if err := Ensure(dir); err == nil || !strings.Contains(err.Error(), "run: chmod 700 "+dir) {
			t.Errorf("Ensure = %v, want the chmod advice", err)
		}
		if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
			t.Errorf("Ensure changed the mode of an existing dir to %04o", fi.Mode().Perm())
		}
	})

	t.Run("empty", func(t *testing.T) {
		if err := Ensure(""); err == nil {
			t.Error(`Ensure("") = nil, want error`)
		}
	})
}

// readPrivate is ReadPrivateFile as the key and password loaders call it.
func readPrivate(path string) error {
	_, err := ReadPrivateFile("secret file", path, 4096, false)
	return err
}

func TestPrivateFileChecks(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		want string // "" for no error; %s is the path
	}{
		{0o600, ""},
		{0o400, ""},
		{0o700, ""},
		{0o640, "secret file %s is mode 0640: other users can read it; run: chmod 600 %s"},
		{0o644, "secret file %s is mode 0644: other users can read it; run: chmod 600 %s"},
		{0o604, "secret file %s is mode 0604: other users can read it; run: chmod 600 %s"},
		{0o660, "secret file %s is mode 0660: other users can write to it; run: chmod 600 %s"},
		{0o666, "secret file %s is mode 0666: other users can write to it; run: chmod 600 %s"},
		{0o601, "secret file %s is mode 0601: other users can run it; run: chmod 600 %s"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%04o", tt.mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "root.key")
			if err := os.WriteFile(path, []byte("k"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			err := readPrivate(path)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("ReadPrivateFile = %v, want nil", err)
				}
				return
			}
			if want := fmt.Sprintf(tt.want, path, path); err == nil || err.Error() != want {
				t.Errorf("ReadPrivateFile = %v\nwant %s", err, want)
			}
		})
	}

	t.Run("symlink", func(t *testing.T) {
		dir := t.TempDir()
		real, link := filepath.Join(dir, "real.key"), filepath.Join(dir, "root.key")
		if err := os.WriteFile(real, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(real, link); err != nil {
			t.Fatal(err)
		}
		if err := readPrivate(link); err == nil || !strings.Contains(err.Error(), "is a symlink to "+real) {
			t.Errorf("ReadPrivateFile(symlink) = %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		if err := readPrivate(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("ReadPrivateFile(dir) = %v", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if err := readPrivate(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("ReadPrivateFile(missing) = %v, want a not-exist error", err)
		}
	})
	t.Run("wrong owner", func(t *testing.T) {
		needRoot(t)
		path := filepath.Join(t.TempDir(), "root.key")
		if err := os.WriteFile(path, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, nobody, -1); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("secret file %s is owned by uid %d, not %d (you); run: chown %d %s or use another file", path, nobody, os.Getuid(), os.Getuid(), path)
		if err := readPrivate(path); err == nil || err.Error() != want {
			t.Errorf("ReadPrivateFile = %v\nwant %s", err, want)
		}
	})
	t.Run("world-writable directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "shared")
		mkdir(t, dir, 0o777)
		path := filepath.Join(dir, "root.key")
		if err := os.WriteFile(path, []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := readPrivate(path); err == nil || !strings.Contains(err.Error(), "parent directory "+dir+" is mode 0777") {
			t.Errorf("ReadPrivateFile = %v", err)
		}
	})
}

func TestWriteFileAtomic(t *testing.T) {
	withUmask(t, 0)

	t.Run("new file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "clawhold.yaml")
		if err := WriteFileAtomic(path, []byte("hello"), 0o600); err != nil {
			t.Fatal(err)
		}
		checkFile(t, path, "hello", 0o600)
		checkNoTemp(t, filepath.Dir(path))
	})

	t.Run("replaces", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "backup")
		if err := os.WriteFile(path, []byte("old contents, longer"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteFileAtomic(path, []byte("new"), 0o600); err != nil {
			t.Fatal(err)
		}
		checkFile(t, path, "new", 0o600)
		checkNoTemp(t, filepath.Dir(path))
	})

	t.Run("replaces a symlink, does not follow it", func(t *testing.T) {
		dir := t.TempDir()
		target, path := filepath.Join(dir, "target"), filepath.Join(dir, "link")
		if err := os.WriteFile(target, []byte("target"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		if err := WriteFileAtomic(path, []byte("new"), 0o600); err != nil {
			t.Fatal(err)
		}
		checkFile(t, path, "new", 0o600)
		checkFile(t, target, "target", 0o600)
	})

	t.Run("rename fails", func(t *testing.T) {
		dir := t.TempDir()
		// A non-empty directory cannot be renamed over.
		path := filepath.Join(dir, "occupied")
		mkdir(t, path, 0o700)
		if err := os.WriteFile(filepath.Join(path, "x"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := WriteFileAtomic(path, []byte("data"), 0o600)
		if err == nil || !strings.Contains(err.Error(), "writing "+path) {
			t.Fatalf("WriteFileAtomic = %v, want an error naming %s", err, path)
		}
		checkNoTemp(t, dir)
	})

	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		if err := WriteFileAtomic(filepath.Join(dir, "nope", "f"), []byte("data"), 0o600); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("WriteFileAtomic = %v, want a not-exist error", err)
		}
		checkNoTemp(t, dir)
	})

	t.Run("relative path", func(t *testing.T) {
		dir := t.TempDir()
		t.Chdir(dir)
		if err := WriteFileAtomic("rel", []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		checkFile(t, filepath.Join(dir, "rel"), "data", 0o600)
	})
}

func checkFile(t *testing.T, path, contents string, perm fs.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != contents {
		t.Errorf("%s contains %q, want %q", path, got, contents)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != perm {
		t.Errorf("%s is mode %v, want a regular file with mode %04o", path, fi.Mode(), perm)
	}
}

// checkNoTemp fails if WriteFileAtomic left a temporary file in dir.
func checkNoTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", filepath.Join(dir, e.Name()))
		}
	}
}

func TestResolve(t *testing.T) {
	cfg := &config.Config{DataDir: "/from/config"}
	tests := []struct {
		name string
		flag string
		env  map[string]string
		cfg  *config.Config
		uid  int
		want string
	}{
		{"flag wins", "/from/flag", map[string]string{"CLAWHOLD_DATA_DIR": "/from/env"}, cfg, 0, "/from/flag"},
		{"flag is cleaned", "/from/flag/", nil, nil, 1000, "/from/flag"},
		{"env over config", "", map[string]string{"CLAWHOLD_DATA_DIR": "/from/env"}, cfg, 0, "/from/env"},
		{"config over default", "", map[string]string{"HOME": "/home/a"}, cfg, 1000, "/from/config"},
		{"nil config", "", map[string]string{"HOME": "/home/a"}, nil, 1000, "/home/a/.local/share/clawhold"},
		{"empty config", "", nil, config.Default(), 0, "/var/lib/clawhold"},
		{"root default", "", map[string]string{"HOME": "/root", "XDG_DATA_HOME": "/x"}, nil, 0, "/var/lib/clawhold"},
		{"xdg", "", map[string]string{"HOME": "/home/a", "XDG_DATA_HOME": "/home/a/data"}, nil, 1000, "/home/a/data/clawhold"},
		{"relative xdg ignored", "", map[string]string{"HOME": "/home/a", "XDG_DATA_HOME": "data"}, nil, 1000, "/home/a/.local/share/clawhold"},
		{"empty env ignored", "", map[string]string{"CLAWHOLD_DATA_DIR": "", "HOME": "/home/a"}, nil, 1000, "/home/a/.local/share/clawhold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			if got := resolve(tt.flag, tt.cfg, getenv, tt.uid); got != tt.want {
				t.Errorf("resolve = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestReadPrivateFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadPrivateFile("token file", p, 16, false); err != nil || string(b) != "s3cret" {
		t.Fatalf("read = %q, %v", b, err)
	}
	if _, err := ReadPrivateFile("token file", p, 5, false); err == nil || !strings.Contains(err.Error(), "larger than 5 bytes") {
		t.Fatalf("over the size bound: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(p, link); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateFile("token file", link, 16, false); err == nil || !strings.Contains(err.Error(), "is a symlink to "+p) {
		t.Fatalf("symlink without follow: %v", err)
	}
	if b, err := ReadPrivateFile("token file", link, 16, true); err != nil || string(b) != "s3cret" {
		t.Fatalf("symlink with follow: %q, %v", b, err)
	}
	// follow checks the target: a loose target is refused through the link.
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateFile("token file", link, 16, true); err == nil || !strings.Contains(err.Error(), "is mode 0644") {
		t.Fatalf("loose target through a followed link: %v", err)
	}
}
