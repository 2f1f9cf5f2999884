package cgroup

import (
	"slices"
	"strings"
	"testing"
)

// A systemd hybrid host with co-mounted controllers, as on Debian/Ubuntu
// before unified-by-default.
const hybridMountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:22 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,pids
33 25 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,net_cls,net_prio
34 25 0:30 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
35 25 0:31 /docker/abc /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset,clone_children
36 22 0:32 / /mnt/with\040space rw - cgroup2 cgroup2 rw
`

func TestParseMountinfo(t *testing.T) {
	ms, err := parseMountinfo(strings.NewReader(hybridMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]mount{}
	for _, m := range ms {
		got[m.point] = m
	}
	tests := []struct {
		point string
		v2    bool
		ctrls []string
		root  string
	}{
		{"/sys/fs/cgroup/unified", true, nil, "/"},
		{"/sys/fs/cgroup/systemd", false, nil, "/"},
		{"/sys/fs/cgroup/cpu,cpuacct", false, []string{"cpu", "cpuacct"}, "/"},
		{"/sys/fs/cgroup/memory", false, []string{"memory"}, "/"},
		{"/sys/fs/cgroup/cpuset", false, []string{"cpuset"}, "/docker/abc"},
		{"/mnt/with space", true, nil, "/"},
	}
	for _, tt := range tests {
		m, ok := got[tt.point]
		if !ok {
			t.Errorf("mount %s not found in %+v", tt.point, ms)
			continue
		}
		if m.v2 != tt.v2 || !slices.Equal(m.controllers, tt.ctrls) || m.root != tt.root {
			t.Errorf("mount %s = %+v, want v2=%v controllers=%v root=%s", tt.point, m, tt.v2, tt.ctrls, tt.root)
		}
	}
	if _, ok := got["/"]; ok {
		t.Error("ext4 root reported as a cgroup mount")
	}
}

func TestParseProcCgroup(t *testing.T) {
	got := parseProcCgroup("12:cpu,cpuacct:/user.slice\n4:memory:/process_api/x\n1:name=systemd:/init.scope\n0::/user.slice/session-1.scope\n")
	want := map[string]string{
		"cpu": "/user.slice", "cpuacct": "/user.slice", "memory": "/process_api/x",
		"name=systemd": "/init.scope", "": "/user.slice/session-1.scope",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%q = %q, want %q", k, got[k], v)
		}
	}
}

func TestHostDir(t *testing.T) {
	tests := []struct {
		m    mount
		cg   string
		want string
	}{
		{mount{root: "/", point: "/sys/fs/cgroup/memory"}, "/process_api/x", "/sys/fs/cgroup/memory/process_api/x"},
		{mount{root: "/", point: "/sys/fs/cgroup"}, "/", "/sys/fs/cgroup"},
		// Container without a cgroup namespace: the mount root is its own cgroup.
		{mount{root: "/docker/abc", point: "/sys/fs/cgroup/cpuset"}, "/docker/abc/sub", "/sys/fs/cgroup/cpuset/sub"},
		{mount{root: "/", point: "/sys/fs/cgroup"}, "/../../etc", "/sys/fs/cgroup/etc"},
	}
	for _, tt := range tests {
		if got := hostDir(tt.m, tt.cg); got != tt.want {
			t.Errorf("hostDir(%+v, %q) = %q, want %q", tt.m, tt.cg, got, tt.want)
		}
	}
}
