package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
)

// cfsPeriod is the CFS period in microseconds for CPU quotas (the default).
const cfsPeriod = 100_000

// createV1 makes g's directory in each v1 hierarchy and applies l.
func (g *Group) createV1(c Config, l Limits) error {
	ms, err := cgroupMounts()
	if err != nil {
		return err
	}
	self, err := selfCgroups()
	if err != nil {
		return err
	}
	// Co-mounted controllers (cpu,cpuacct) share one directory.
	made := map[string]string{} // mount point → group dir
	for _, m := range ms {
		for _, ctrl := range m.controllers {
			if !isWanted(ctrl) {
				continue
			}
			if d, ok := made[m.point]; ok {
				g.dirs[ctrl] = d
				continue
			}
			parent := c.Parent
			if parent == "" {
				parent = self[ctrl]
			}
			base := hostDir(m, parent)
			if _, err := os.Stat(base); err != nil {
				return g.errorf(ctrl, base, "parent cgroup: %w", err)
			}
			d, err := g.mkdirs(ctrl, base, g.name)
			if err != nil {
				return err
			}
			made[m.point] = d
			g.dirs[ctrl] = d
		}
	}
	need := map[string]bool{"cpu": l.CPU > 0, "memory": l.Memory > 0, "pids": l.Pids > 0}
	for ctrl, needed := range need {
		if _, ok := g.dirs[ctrl]; needed && !ok {
			return fmt.Errorf("cgroup %s (v1): %s controller not mounted; mount it (e.g. mount -t cgroup -o %s cgroup /sys/fs/cgroup/%s) or drop the %s limit", g.name, ctrl, ctrl, ctrl, ctrl)
		}
	}
	if len(g.dirs) == 0 {
		return fmt.Errorf("cgroup %s (v1): none of %v is mounted", g.name, v1Controllers)
	}
	return g.applyV1(l)
}

// applyV1 writes l into the v1 control files.
func (g *Group) applyV1(l Limits) error {
	if d, ok := g.dirs["cpu"]; ok {
		quota := int64(-1)
		if l.CPU > 0 {
			quota = max(int64(l.CPU*cfsPeriod), 1000) // the kernel's minimum is 1ms
		}
		if err := writeFile(d, "cpu.cfs_period_us", strconv.Itoa(cfsPeriod)); err != nil {
			return g.errorf("cpu", "cpu.cfs_period_us", "%w", err)
		}
		if err := writeFile(d, "cpu.cfs_quota_us", strconv.FormatInt(quota, 10)); err != nil {
			return g.errorf("cpu", "cpu.cfs_quota_us", "%w", err)
		}
	}
	if d, ok := g.dirs["memory"]; ok && l.Memory > 0 {
		v := strconv.FormatInt(l.Memory, 10)
		// memsw must stay >= limit_in_bytes, so set the RAM limit first.
		// A fresh group starts unlimited in both.
		if err := writeFile(d, "memory.limit_in_bytes", v); err != nil {
			return g.errorf("memory", "memory.limit_in_bytes", "%w", err)
		}
		// Absent without swap accounting (swapaccount=0 or no
		// CONFIG_MEMCG_SWAP); then swap is not charged at all.
		if exists(d, "memory.memsw.limit_in_bytes") {
			if err := writeFile(d, "memory.memsw.limit_in_bytes", v); err != nil {
				return g.errorf("memory", "memory.memsw.limit_in_bytes", "%w", err)
			}
		}
	}
	if d, ok := g.dirs["pids"]; ok && l.Pids > 0 {
		if err := writeFile(d, "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return g.errorf("pids", "pids.max", "%w", err)
		}
	}
	return nil
}

// v1Freeze sets the freezer state and waits (briefly) until it holds.
// It reports false when the group has no freezer.
func (g *Group) v1Freeze(state string, wait func() bool) (bool, error) {
	d, ok := g.dirs["freezer"]
	if !ok {
		return false, nil
	}
	if err := writeFile(d, "freezer.state", state); err != nil {
		return true, g.errorf("freezer", "freezer.state", "%w", err)
	}
	for {
		s, err := readFile(d, "freezer.state")
		if err != nil {
			return true, g.errorf("freezer", "freezer.state", "%w", err)
		}
		// FREEZING means a task has not stopped yet; it is still safe to
		// go on and signal, just less airtight against forks.
		if s == state || !wait() {
			return true, nil
		}
	}
}

// v1Stats reads usage from the v1 controllers present.
func (g *Group) v1Stats() (Stats, error) {
	var st Stats
	if d, ok := g.dirs["cpuacct"]; ok {
		n, err := readInt(d, "cpuacct.usage")
		if err != nil {
			return st, g.errorf("cpuacct", "cpuacct.usage", "%w", err)
		}
		st.CPU = nsDuration(n)
	}
	if d, ok := g.dirs["memory"]; ok {
		var err error
		if st.MemoryCurrent, err = readInt(d, "memory.usage_in_bytes"); err != nil {
			return st, g.errorf("memory", "memory.usage_in_bytes", "%w", err)
		}
		if st.MemoryPeak, err = readInt(d, "memory.max_usage_in_bytes"); err != nil {
			return st, g.errorf("memory", "memory.max_usage_in_bytes", "%w", err)
		}
	}
	if d, ok := g.dirs["pids"]; ok {
		var err error
		if st.Pids, err = readInt(d, "pids.current"); err != nil {
			return st, g.errorf("pids", "pids.current", "%w", err)
		}
	}
	return st, nil
}

// v1Counters reads the monotonic counters behind Events.
func (g *Group) v1Counters() (map[string]counter, error) {
	out := map[string]counter{}
	if d, ok := g.dirs["memory"]; ok {
		oc, err := readKeyed(d, "memory.oom_control")
		if err != nil {
			return nil, err
		}
		// oom_kill appeared in Linux 4.13; older kernels only have under_oom.
		if n, ok := oc["oom_kill"]; ok {
			out[OOMKill] = counter{n, path.Join(d, "memory.oom_control") + " oom_kill"}
		}
		n, err := readInt(d, "memory.failcnt")
		if err != nil {
			return nil, err
		}
		out[MemoryMax] = counter{n, path.Join(d, "memory.failcnt")}
	}
	if d, ok := g.dirs["pids"]; ok {
		pe, err := readKeyed(d, "pids.events")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		if n, ok := pe["max"]; ok {
			out[PidsMax] = counter{n, path.Join(d, "pids.events") + " max"}
		}
	}
	return out, nil
}
