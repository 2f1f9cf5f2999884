// Package cgroup puts each sandbox in its own cgroup with CPU, memory and
// pids limits, on cgroup v1 (legacy or hybrid hosts) and v2 (unified hosts).
//
// Mode detection comes from github.com/containerd/cgroups/v3. The cgroupfs
// files themselves are written directly rather than through its cgroup1 and
// cgroup2 managers, for two reasons:
//
//   - those packages pull in cilium/ebpf, godbus, go-systemd, runtime-spec,
//     containerd/log, logrus, go-units and x/exp, none of which are in this
//     module's go.mod (only the root package is buildable as is);
//   - they lack what a sandbox supervisor needs most: v1 kill (freeze, signal,
//     thaw), pids.events and memory.failcnt notifications, and a single
//     Group that spans the separate v1 hierarchies with one error path.
//
// The files touched are few and stable kernel ABI (see
// Documentation/admin-guide/cgroup-v1 and cgroup-v2.rst).
package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/cgroups/v3"
)

// Mode is how the host organises its cgroup controllers.
type Mode int

const (
	// Unavailable means no cgroup filesystem is mounted.
	Unavailable Mode = iota
	// V1 means the controllers live in v1 hierarchies (legacy or hybrid).
	V1
	// V2 means the unified hierarchy holds the controllers.
	V2
)

func (m Mode) String() string {
	switch m {
	case V1:
		return "v1"
	case V2:
		return "v2"
	default:
		return "unavailable"
	}
}

// MarshalText makes Mode readable in JSON reports.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (m *Mode) UnmarshalText(b []byte) error {
	switch string(b) {
	case "v1":
		*m = V1
	case "v2":
		*m = V2
	case "unavailable", "":
		*m = Unavailable
	default:
		return fmt.Errorf("cgroup: unknown mode %q", b)
	}
	return nil
}

// DetectMode reports the host's cgroup mode. Hybrid hosts count as V1: their
// unified hierarchy exists but the resource controllers are bound to v1.
func DetectMode() Mode {
	switch cgroups.Mode() {
	case cgroups.Legacy, cgroups.Hybrid:
		return V1
	case cgroups.Unified:
		return V2
	default:
		return Unavailable
	}
}

// IsHybrid reports whether a v1 host also mounts a cgroup2 hierarchy.
func IsHybrid() bool { return cgroups.Mode() == cgroups.Hybrid }

// Limits are the resource limits of one sandbox. Zero means unlimited.
type Limits struct {
	CPU    float64 // cores, e.g. 0.5 = 50% of one core
	Memory int64   // bytes, swap included (swap cannot extend it)
	Pids   int64   // processes and threads
}

// PermissionFix is the advice given when the caller may not create cgroups
// in mode m.
func PermissionFix(m Mode) string {
	if m == V1 {
		return "run clawhold as root, or have root create a parent cgroup you own in each v1 hierarchy " +
			"(cgcreate -a $USER -t $USER -g cpu,cpuacct,memory,pids,freezer:clawhold) and use it as the parent (Config.Parent)"
	}
	return "run clawhold as root, or inside a cgroup delegated to your user " +
		"(systemd-run --user --scope -p Delegate=yes clawhold ...; for a service: Delegate=yes in its unit)"
}

// Config tunes where and how New creates groups. The zero Config creates
// groups under the calling process's own cgroup on the detected mode.
type Config struct {
	// Mode forces V1 or V2; Unavailable (the zero value) detects it.
	Mode Mode
	// Root is the cgroup2 mount point for V2 (default: found in
	// /proc/self/mountinfo). Unused for V1.
	Root string
	// Parent is the cgroup path, relative to each hierarchy's root, under
	// which groups are created, e.g. "/clawhold.slice". Empty means the
	// calling process's cgroup in each hierarchy.
	Parent string
	// SelfLeaf, for V2 only, names a child of the caller's cgroup into which
	// New moves the calling process when the parent cgroup holds processes
	// (v2 forbids enabling controllers there: the "no internal processes"
	// rule). This is the usual step inside a delegated systemd scope. Empty
	// means New fails with an explanation instead.
	SelfLeaf string
}

// v1Controllers are the hierarchies a v1 group joins. cpuset, devices, blkio
// and the named systemd hierarchy are left alone: nothing here limits them.
var v1Controllers = []string{"cpu", "cpuacct", "memory", "pids", "freezer"}

// v2Controllers are enabled in the parents' cgroup.subtree_control.
var v2Controllers = []string{"cpu", "memory", "pids"}

// Group is one sandbox's cgroup. Its methods are safe for concurrent use.
type Group struct {
	name string
	mode Mode

	// dirs maps controller to directory (v1; several controllers may share
	// one when co-mounted, e.g. cpu,cpuacct); for v2 the key is "".
	dirs map[string]string
	// created lists the directories New made, parents before children,
	// so that Delete removes exactly those.
	created []string

	mu      sync.Mutex
	deleted bool
}

// New creates the cgroup named name (e.g. "clawhold/sandbox-1234") under the
// calling process's cgroup with the zero Config, and applies l.
func New(ctx context.Context, name string, l Limits) (*Group, error) {
	return Config{}.New(ctx, name, l)
}

// New creates the cgroup named name as configured by c and applies l.
// On failure nothing is left behind.
func (c Config) New(ctx context.Context, name string, l Limits) (*Group, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := l.validate(); err != nil {
		return nil, err
	}
	mode := c.Mode
	if mode == Unavailable {
		mode = DetectMode()
	}
	g := &Group{name: name, mode: mode, dirs: map[string]string{}}
	var err error
	switch mode {
	case V1:
		err = g.createV1(c, l)
	case V2:
		err = g.createV2(c, l)
	default:
		return nil, fmt.Errorf("cgroup %s: no cgroup filesystem mounted under /sys/fs/cgroup", name)
	}
	if err != nil {
		g.removeDirs()
		return nil, err
	}
	return g, nil
}

func checkName(name string) error {
	clean := path.Clean("/" + name)
	if name == "" || clean == "/" || clean != "/"+strings.Trim(name, "/") || strings.Contains(name, "..") {
		return fmt.Errorf("cgroup: invalid group name %q", name)
	}
	return nil
}

func (l Limits) validate() error {
	if l.CPU < 0 || l.Memory < 0 || l.Pids < 0 {
		return fmt.Errorf("cgroup: negative limit in %+v", l)
	}
	return nil
}

// Mode reports whether g lives in v1 hierarchies or the unified one.
func (g *Group) Mode() Mode { return g.mode }

// Name is the name g was created with.
func (g *Group) Name() string { return g.name }

// Dirs returns the directories of g: for v1 one per controller, for v2 a
// single entry under the key "".
func (g *Group) Dirs() map[string]string {
	return maps.Clone(g.dirs)
}

// uniqueDirs lists g's directories once each, in a stable order.
func (g *Group) uniqueDirs() []string {
	var out []string
	for _, d := range g.dirs {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	slices.Sort(out)
	return out
}

// Add moves the process pid (all its threads) into g, in every hierarchy.
func (g *Group) Add(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroup %s: invalid pid %d", g.name, pid)
	}
	for _, ctrl := range g.controllers() {
		if err := writeFile(g.dirs[ctrl], "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return g.errorf(ctrl, "cgroup.procs", "adding pid %d: %w", pid, err)
		}
	}
	return nil
}

// controllers lists g's controllers, one per directory, in a stable order.
func (g *Group) controllers() []string {
	var keys []string
	seen := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(g.dirs)) {
		if d := g.dirs[k]; !seen[d] {
			seen[d] = true
			keys = append(keys, k)
		}
	}
	return keys
}

// errorf wraps an error with the group, controller and file it concerns.
// file may be a bare control file name, resolved in ctrl's directory.
func (g *Group) errorf(ctrl, file, format string, args ...any) error {
	if !filepath.IsAbs(file) {
		if d, ok := g.dirs[ctrl]; ok {
			file = filepath.Join(d, file)
		}
	}
	where := file
	if ctrl != "" {
		where = ctrl + " " + file
	}
	err := fmt.Errorf(format, args...)
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("cgroup %s (%s): %s: %w; fix: %s", g.name, g.mode, where, err, PermissionFix(g.mode))
	}
	return fmt.Errorf("cgroup %s (%s): %s: %w", g.name, g.mode, where, err)
}

// mkdirs creates dir and any missing parents up to (not including) base,
// recording what it made. base must already exist. A shared parent removed
// by a sibling's Delete between our steps makes it start over.
func (g *Group) mkdirs(ctrl, base, rel string) (string, error) {
	for attempt := 0; ; attempt++ {
		dir, err := g.mkdirsOnce(ctrl, base, rel)
		if err == nil || !errors.Is(err, fs.ErrNotExist) || attempt == 3 {
			return dir, err
		}
	}
}

func (g *Group) mkdirsOnce(ctrl, base, rel string) (string, error) {
	dir := base
	parts := strings.Split(strings.Trim(rel, "/"), "/")
	for i, p := range parts {
		dir = filepath.Join(dir, p)
		err := os.Mkdir(dir, 0o755)
		switch {
		case err == nil:
			g.created = append(g.created, dir)
		case errors.Is(err, fs.ErrExist) && i < len(parts)-1:
			// Shared intermediate directory, e.g. "clawhold".
		case errors.Is(err, fs.ErrExist):
			return "", g.errorf(ctrl, dir, "cgroup already exists (stale sandbox? delete it first)")
		default:
			return "", g.errorf(ctrl, dir, "creating: %w", err)
		}
	}
	return dir, nil
}

// removeDirs removes the directories New created, children first. The leaf
// must go; shared parents are left when other groups still use them.
func (g *Group) removeDirs() error {
	var errs []error
	for i := len(g.created) - 1; i >= 0; i-- {
		d := g.created[i]
		err := syscall.Rmdir(d)
		switch {
		case err == nil, errors.Is(err, fs.ErrNotExist):
		case !g.isLeaf(d) && (errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.ENOTEMPTY)):
			// A sibling sandbox still lives under this parent.
		default:
			errs = append(errs, fmt.Errorf("cgroup %s: removing %s: %w", g.name, d, err))
		}
	}
	return errors.Join(errs...)
}

func (g *Group) isLeaf(dir string) bool {
	for _, d := range g.dirs {
		if d == dir {
			return true
		}
	}
	return false
}

// writeFile writes one value to a cgroupfs control file. It never creates
// the file: control files exist or the kernel lacks the feature.
func writeFile(dir, file, val string) error {
	f, err := os.OpenFile(filepath.Join(dir, file), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(val)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q: %w", val, err)
	}
	return nil
}

func readFile(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	return strings.TrimSpace(string(b)), err
}

func readInt(dir, file string) (int64, error) {
	s, err := readFile(dir, file)
	if err != nil {
		return 0, err
	}
	if s == "max" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// readKeyed parses "key value" lines (memory.events, pids.events,
// memory.oom_control, cpu.stat).
func readKeyed(dir, file string) (map[string]int64, error) {
	s, err := readFile(dir, file)
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		m[k] = n
	}
	return m, nil
}

func exists(dir, file string) bool {
	_, err := os.Stat(filepath.Join(dir, file))
	return err == nil
}

// procs lists the pids in dir and its descendants.
func procs(dir string) ([]int, error) {
	var pids []int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		s, err := readFile(p, "cgroup.procs")
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(s) {
			if n, err := strconv.Atoi(f); err == nil {
				pids = append(pids, n)
			}
		}
		return nil
	})
	return pids, err
}
