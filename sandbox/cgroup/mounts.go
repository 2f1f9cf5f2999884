package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// mount is one cgroup filesystem from /proc/self/mountinfo.
type mount struct {
	root        string   // path of the mount's root inside the hierarchy
	point       string   // where it is mounted
	v2          bool     // cgroup2
	controllers []string // v1: controllers bound to the hierarchy
}

// nonController lists the v1 super options that are not controller names
// (name= and release_agent= are caught by their "=").
var nonController = map[string]bool{
	"rw": true, "ro": true, "xattr": true, "noprefix": true, "clone_children": true,
	"cpuset_v2_mode": true, "favordynmods": true, "all": true, "none": true,
}

// cgroupMounts lists the cgroup and cgroup2 mounts visible to the process.
func cgroupMounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroup: reading mounts: %w", err)
	}
	defer f.Close()
	return parseMountinfo(f)
}

func parseMountinfo(r io.Reader) ([]mount, error) {
	var ms []mount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent maj:min root point opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 {
			continue
		}
		m := mount{root: unescape(a[3]), point: unescape(a[4])}
		switch b[0] {
		case "cgroup2":
			m.v2 = true
		case "cgroup":
			for _, o := range strings.Split(b[2], ",") {
				if !nonController[o] && !strings.Contains(o, "=") {
					m.controllers = append(m.controllers, o)
				}
			}
			// Named hierarchies (name=systemd) carry no controllers.
		default:
			continue
		}
		ms = append(ms, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroup: reading mounts: %w", err)
	}
	return ms, nil
}

// unescape undoes mountinfo's octal escapes (\040 for space and so on).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// selfCgroups parses /proc/self/cgroup: controller → path, with "" for the
// v2 entry ("0::/path").
func selfCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroup: reading /proc/self/cgroup: %w", err)
	}
	return parseProcCgroup(string(b)), nil
}

func parseProcCgroup(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out
}

// hostDir turns a cgroup path into a directory under mount m.
func hostDir(m mount, cgPath string) string {
	rel := cgPath
	if m.root != "/" {
		// Inside a container the mount root is the container's cgroup.
		if r, ok := strings.CutPrefix(cgPath, m.root); ok {
			rel = r
		}
	}
	return filepath.Join(m.point, path.Clean("/"+rel))
}

// V1Controllers returns the v1 controllers a group would join that are
// mounted on this host, mapped to their mount points.
func V1Controllers() (map[string]string, error) {
	ms, err := cgroupMounts()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range ms {
		for _, c := range m.controllers {
			if isWanted(c) {
				if _, dup := out[c]; !dup {
					out[c] = m.point
				}
			}
		}
	}
	return out, nil
}

func isWanted(c string) bool {
	for _, w := range v1Controllers {
		if w == c {
			return true
		}
	}
	return false
}

// V2Root returns the cgroup2 mount point and the caller's directory in it,
// and the controllers that directory offers (cgroup.controllers).
func V2Root() (root, self string, controllers []string, err error) {
	root, err = findV2Root()
	if err != nil {
		return "", "", nil, err
	}
	cgs, err := selfCgroups()
	if err != nil {
		return "", "", nil, err
	}
	self = hostDir(mount{root: "/", point: root}, cgs[""])
	s, err := readFile(self, "cgroup.controllers")
	if err != nil {
		return root, self, nil, fmt.Errorf("cgroup v2: reading %s/cgroup.controllers: %w", self, err)
	}
	return root, self, strings.Fields(s), nil
}

func findV2Root() (string, error) {
	ms, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	var found string
	for _, m := range ms {
		if !m.v2 {
			continue
		}
		if m.point == "/sys/fs/cgroup" {
			return m.point, nil
		}
		if found == "" {
			found = m.point
		}
	}
	if found == "" {
		return "", fmt.Errorf("cgroup v2: no cgroup2 filesystem mounted")
	}
	return found, nil
}
