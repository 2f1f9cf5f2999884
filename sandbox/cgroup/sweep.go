package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Sweep removes the groups a killed clawhold could not: every directory
// named prefix+"*" under dir (e.g. "clawhold" and "sandbox-") below the
// calling process's cgroup, in every hierarchy, that holds no process and
// is older than minAge (so that a group another clawhold is creating right
// now is left alone). It returns how many it removed. A SIGKILL of the
// clawhold running a sandbox kills the sandbox (PR_SET_PDEATHSIG) but not
// its cleanup; the next sandbox start sweeps.
func Sweep(dir, prefix string, minAge time.Duration) (int, error) {
	self, err := selfCgroups()
	if err != nil {
		return 0, err
	}
	var bases []string
	switch DetectMode() {
	case V1:
		ms, err := cgroupMounts()
		if err != nil {
			return 0, err
		}
		seen := map[string]bool{}
		for _, m := range ms {
			for _, ctrl := range m.controllers {
				if isWanted(ctrl) && !seen[m.point] {
					seen[m.point] = true
					bases = append(bases, filepath.Join(hostDir(m, self[ctrl]), dir))
				}
			}
		}
	case V2:
		root, err := findV2Root()
		if err != nil {
			return 0, err
		}
		bases = append(bases, filepath.Join(root, self[""], dir))
	default:
		return 0, nil
	}
	removed := 0
	var errs []error
	for _, base := range bases {
		ents, err := os.ReadDir(base)
		if err != nil {
			continue // no sandbox ever ran in this hierarchy
		}
		for _, e := range ents {
			if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
				continue
			}
			d := filepath.Join(base, e.Name())
			fi, err := e.Info()
			if err != nil || time.Since(fi.ModTime()) < minAge {
				continue
			}
			if pids, err := procs(d); err != nil || len(pids) > 0 {
				continue
			}
			if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			removed++
		}
	}
	return removed, errors.Join(errs...)
}
