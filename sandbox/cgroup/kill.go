package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"
)

// Stats is a snapshot of a group's resource usage.
type Stats struct {
	CPU           time.Duration `json:"cpu"`            // total CPU time consumed
	MemoryCurrent int64         `json:"memory_current"` // bytes in use
	MemoryPeak    int64         `json:"memory_peak"`    // high-water mark (v2: 0 before Linux 5.19)
	Pids          int64         `json:"pids"`           // tasks (threads) in the group
}

// Stats reads g's current usage.
func (g *Group) Stats() (Stats, error) {
	if g.mode == V2 {
		return g.v2Stats()
	}
	return g.v1Stats()
}

func nsDuration(n int64) time.Duration { return time.Duration(n) }
func usDuration(n int64) time.Duration { return time.Duration(n) * time.Microsecond }

// How long Kill and Delete wait for the kernel before giving up.
const (
	killTimeout   = 10 * time.Second
	deleteTimeout = 5 * time.Second
)

// Procs lists the processes in g and its descendants, across hierarchies.
func (g *Group) Procs() ([]int, error) {
	var all []int
	for _, ctrl := range g.controllers() {
		pids, err := procs(g.dirs[ctrl])
		if err != nil {
			return nil, g.errorf(ctrl, "cgroup.procs", "%w", err)
		}
		for _, p := range pids {
			if !slices.Contains(all, p) {
				all = append(all, p)
			}
		}
	}
	return all, nil
}

// Kill kills every process in g and waits until the group is empty.
//
// v2 uses cgroup.kill (Linux 5.14+), which the kernel applies atomically,
// forks included. Otherwise the group is frozen so that nothing can fork
// between reading cgroup.procs and signalling, every process gets SIGKILL,
// the group is thawed so the signals are delivered, and this repeats until
// cgroup.procs is empty.
func (g *Group) Kill() error {
	deadline := time.Now().Add(killTimeout)
	// freezeWait paces polling of the freezer state. A task stuck in
	// FREEZING (e.g. in uninterruptible sleep) must not stall Kill, so each
	// freeze gets a second at most; signalling proceeds regardless.
	freezeWait := func() func() bool {
		d := time.Now().Add(time.Second)
		return func() bool { time.Sleep(time.Millisecond); return time.Now().Before(d) }
	}
	if g.mode == V2 {
		d := g.dirs[""]
		if exists(d, "cgroup.kill") {
			if err := writeFile(d, "cgroup.kill", "1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return g.errorf("", "cgroup.kill", "%w", err)
			}
			// The signals are sent; give the exits a moment before
			// falling back to the signal loop below.
			for range 200 {
				if pids, err := g.Procs(); err != nil || len(pids) == 0 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	for {
		pids, err := g.Procs()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("cgroup %s (%s): still %d processes after %v (uninterruptible sleep?): %v",
				g.name, g.mode, len(pids), killTimeout, pids)
		}
		frozen, err := g.freeze(true, freezeWait())
		if err != nil {
			return err
		}
		if frozen {
			// Re-read: what was forked before the freeze took hold.
			if pids, err = g.Procs(); err != nil {
				g.freeze(false, freezeWait())
				return err
			}
		}
		for _, p := range pids {
			// ESRCH: already gone. Other errors show up as a process
			// that stays, and end in the timeout above.
			syscall.Kill(p, syscall.SIGKILL)
		}
		if _, err := g.freeze(false, freezeWait()); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freeze freezes or thaws g, reporting false when g has no freezer.
func (g *Group) freeze(on bool, wait func() bool) (bool, error) {
	if g.mode == V1 {
		state := "THAWED"
		if on {
			state = "FROZEN"
		}
		return g.v1Freeze(state, wait)
	}
	d := g.dirs[""]
	if !exists(d, "cgroup.freeze") {
		return false, nil
	}
	val := "0"
	if on {
		val = "1"
	}
	if err := writeFile(d, "cgroup.freeze", val); err != nil {
		return true, g.errorf("", "cgroup.freeze", "%w", err)
	}
	for on {
		ev, err := readKeyed(d, "cgroup.events")
		if err != nil {
			return true, g.errorf("", "cgroup.events", "%w", err)
		}
		if ev["frozen"] == 1 || !wait() {
			break
		}
	}
	return true, nil
}

// Delete kills g's processes and removes its directories in every
// hierarchy. It may be called more than once. Removal is retried briefly
// because the kernel drops dead tasks from the group asynchronously.
func (g *Group) Delete() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deleted {
		return nil
	}
	if err := g.Kill(); err != nil {
		return err
	}
	// Child cgroups made inside the sandbox go first, deepest first.
	for _, d := range g.uniqueDirs() {
		if err := removeChildren(d); err != nil {
			return g.errorf("", d, "removing child cgroups: %w", err)
		}
	}
	deadline := time.Now().Add(deleteTimeout)
	for {
		err := g.removeDirs()
		if err == nil {
			g.deleted = true
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// removeChildren removes the cgroups below dir, deepest first.
func removeChildren(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sub := dir + "/" + e.Name()
		if err := removeChildren(sub); err != nil {
			return err
		}
		if err := syscall.Rmdir(sub); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
