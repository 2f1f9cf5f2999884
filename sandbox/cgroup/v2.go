package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// createV2 makes g's directory in the unified hierarchy, enables the
// controllers it needs in the parents, and applies l.
func (g *Group) createV2(c Config, l Limits) error {
	root := c.Root
	if root == "" {
		var err error
		if root, err = findV2Root(); err != nil {
			return err
		}
	}
	parentRel := c.Parent
	if parentRel == "" {
		self, err := selfCgroups()
		if err != nil {
			return err
		}
		parentRel = self[""]
	}
	parentRel = path.Clean("/" + parentRel)
	base := filepath.Join(root, parentRel)

	// Which controllers to delegate: those the hierarchy offers at all.
	// A limit on a missing controller is an error, not a silent no-op.
	avail, err := readFile(root, "cgroup.controllers")
	if err != nil {
		return g.errorf("", filepath.Join(root, "cgroup.controllers"), "%w", err)
	}
	want := wantV2(strings.Fields(avail))
	for ctrl, needed := range map[string]bool{"cpu": l.CPU > 0, "memory": l.Memory > 0, "pids": l.Pids > 0} {
		if needed && !slices.Contains(want, ctrl) {
			return fmt.Errorf("cgroup %s (v2): %s controller not available in %s/cgroup.controllers "+
				"(on hybrid hosts it is bound to a v1 hierarchy; boot with systemd.unified_cgroup_hierarchy=1 or use v1)",
				g.name, ctrl, root)
		}
	}

	if c.SelfLeaf != "" && len(want) > 0 && base != filepath.Clean(root) {
		if err := g.leaveParent(base, c.SelfLeaf); err != nil {
			return err
		}
	}
	// Controllers must be on in the subtree_control of every ancestor, from
	// the root down to the leaf's parent.
	ancestors := []string{root}
	for d := base; d != filepath.Clean(root) && d != "/"; d = filepath.Dir(d) {
		ancestors = slices.Insert(ancestors, 1, d)
	}
	for _, d := range ancestors {
		if err := g.enableV2(d, want); err != nil {
			return err
		}
	}
	dir, err := g.mkdirs("", base, g.name)
	if err != nil {
		return err
	}
	var mids []string // intermediate dirs between base and the leaf, top first
	for d := filepath.Dir(dir); strings.HasPrefix(d, base+"/"); d = filepath.Dir(d) {
		mids = append([]string{d}, mids...)
	}
	for _, d := range mids {
		if err := g.enableV2(d, want); err != nil {
			return err
		}
	}
	g.dirs[""] = dir
	return g.applyV2(dir, l)
}

func wantV2(avail []string) []string {
	var want []string
	for _, c := range v2Controllers {
		if slices.Contains(avail, c) {
			want = append(want, c)
		}
	}
	return want
}

// enableV2 turns on the controllers in dir's cgroup.subtree_control that are
// not on already. Writing an ancestor we do not own fails with EACCES, and a
// non-root cgroup that holds processes refuses with EBUSY.
func (g *Group) enableV2(dir string, ctrls []string) error {
	if len(ctrls) == 0 {
		return nil
	}
	cur, err := readFile(dir, "cgroup.subtree_control")
	if err != nil {
		return g.errorf("", filepath.Join(dir, "cgroup.subtree_control"), "%w", err)
	}
	on := strings.Fields(cur)
	var add []string
	for _, c := range ctrls {
		if !slices.Contains(on, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	err = writeFile(dir, "cgroup.subtree_control", strings.Join(add, " "))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EBUSY):
		return g.errorf("", filepath.Join(dir, "cgroup.subtree_control"),
			"%w: the cgroup holds processes, and v2 allows controllers only for cgroups without them; "+
				"set Config.SelfLeaf to move clawhold into a leaf, or Config.Parent to an empty cgroup", err)
	default:
		return g.errorf("", filepath.Join(dir, "cgroup.subtree_control"), "%w", err)
	}
}

// leaveParent moves the calling process into base/leaf when base holds
// processes, so that base can delegate controllers to its children.
func (g *Group) leaveParent(base, leaf string) error {
	pids, err := readFile(base, "cgroup.procs")
	if err != nil {
		return g.errorf("", filepath.Join(base, "cgroup.procs"), "%w", err)
	}
	if pids == "" {
		return nil
	}
	dir := filepath.Join(base, leaf)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return g.errorf("", dir, "creating supervisor leaf: %w", err)
	}
	if err := writeFile(dir, "cgroup.procs", strconv.Itoa(os.Getpid())); err != nil {
		return g.errorf("", filepath.Join(dir, "cgroup.procs"), "moving clawhold: %w", err)
	}
	return nil
}

// applyV2 writes l into the v2 control files of dir. Files for controllers
// that are not enabled are skipped when their limit is zero.
func (g *Group) applyV2(dir string, l Limits) error {
	type kv struct{ file, val string }
	var w []kv
	if l.CPU > 0 {
		w = append(w, kv{"cpu.max", fmt.Sprintf("%d %d", max(int64(l.CPU*cfsPeriod), 1000), cfsPeriod)})
	} else if exists(dir, "cpu.max") {
		w = append(w, kv{"cpu.max", fmt.Sprintf("max %d", cfsPeriod)})
	}
	if l.Memory > 0 {
		w = append(w, kv{"memory.max", strconv.FormatInt(l.Memory, 10)})
		// Absent without swap accounting; then swap is not charged at all.
		if exists(dir, "memory.swap.max") {
			w = append(w, kv{"memory.swap.max", "0"})
		}
	}
	if l.Pids > 0 {
		w = append(w, kv{"pids.max", strconv.FormatInt(l.Pids, 10)})
	}
	for _, x := range w {
		if err := writeFile(dir, x.file, x.val); err != nil {
			return g.errorf(strings.SplitN(x.file, ".", 2)[0], x.file, "%w", err)
		}
	}
	return nil
}

// v2Stats reads usage from dir.
func (g *Group) v2Stats() (Stats, error) {
	var st Stats
	d := g.dirs[""]
	// cpu.stat is always present: the core accounts CPU even without the
	// cpu controller.
	cs, err := readKeyed(d, "cpu.stat")
	if err != nil {
		return st, g.errorf("cpu", "cpu.stat", "%w", err)
	}
	st.CPU = usDuration(cs["usage_usec"])
	if exists(d, "memory.current") {
		if st.MemoryCurrent, err = readInt(d, "memory.current"); err != nil {
			return st, g.errorf("memory", "memory.current", "%w", err)
		}
		// memory.peak exists since Linux 5.19.
		if exists(d, "memory.peak") {
			if st.MemoryPeak, err = readInt(d, "memory.peak"); err != nil {
				return st, g.errorf("memory", "memory.peak", "%w", err)
			}
		}
	}
	if exists(d, "pids.current") {
		if st.Pids, err = readInt(d, "pids.current"); err != nil {
			return st, g.errorf("pids", "pids.current", "%w", err)
		}
	}
	return st, nil
}

// v2Counters reads the monotonic counters behind Events.
func (g *Group) v2Counters() (map[string]counter, error) {
	d := g.dirs[""]
	out := map[string]counter{}
	if exists(d, "memory.events") {
		me, err := readKeyed(d, "memory.events")
		if err != nil {
			return nil, err
		}
		if n, ok := me["oom_kill"]; ok {
			out[OOMKill] = counter{n, path.Join(d, "memory.events") + " oom_kill"}
		}
		if n, ok := me["max"]; ok {
			out[MemoryMax] = counter{n, path.Join(d, "memory.events") + " max"}
		}
	}
	if exists(d, "pids.events") {
		pe, err := readKeyed(d, "pids.events")
		if err != nil {
			return nil, err
		}
		if n, ok := pe["max"]; ok {
			out[PidsMax] = counter{n, path.Join(d, "pids.events") + " max"}
		}
	}
	if _, err := os.Stat(d); err != nil {
		return nil, err
	}
	return out, nil
}
