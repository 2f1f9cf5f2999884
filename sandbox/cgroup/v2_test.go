package cgroup

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hybridUnified is where hybrid hosts (like the CI machine) mount cgroup2.
const hybridUnified = "/sys/fs/cgroup/unified"

// v2Config returns a Config for the real unified hierarchy: on v2 hosts the
// default, on hybrid hosts /sys/fs/cgroup/unified (which has no resource
// controllers, so only limit-free groups work there).
func v2Config(t *testing.T) Config {
	t.Helper()
	switch {
	case DetectMode() == V2:
		return hostConfig()
	case IsHybrid():
		return Config{Mode: V2, Root: hybridUnified}
	default:
		t.Skip("no cgroup2 hierarchy on this host")
		return Config{}
	}
}

// TestV2RealHierarchy runs create, add, kill (cgroup.kill) and delete
// against the real cgroup2 filesystem. On hybrid hosts that hierarchy has no
// cpu/memory/pids controllers, so the group carries no limits.
func TestV2RealHierarchy(t *testing.T) {
	requireRoot(t)
	c := v2Config(t)
	g := newGroup(t, c, Limits{})
	if g.Mode() != V2 {
		t.Fatalf("Mode = %v, want v2", g.Mode())
	}
	d := g.Dirs()[""]
	if !exists(d, "cgroup.kill") {
		t.Fatalf("%s has no cgroup.kill (Linux < 5.14?)", d)
	}
	cmd := startInGroup(t, g, "sleep 600 & sleep 600 & exec sleep 600")
	time.Sleep(100 * time.Millisecond)
	if got := readCG(t, d, "cgroup.procs"); !strings.Contains(got, "\n") {
		t.Fatalf("cgroup.procs = %q, want 3 processes", got)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("v2 stats: %+v", st)
	if err := g.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("process survived cgroup.kill")
	} else if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("exit %v, want SIGKILL", err)
	}
	if pids, _ := g.Procs(); len(pids) != 0 {
		t.Errorf("procs after Kill: %v", pids)
	}
	if err := g.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	assertGone(t, g)
	if err := g.Delete(); err != nil {
		t.Fatalf("second Delete: %v", err)
	}
}

// TestV2MissingControllerFails: asking the real hybrid cgroup2 hierarchy for
// a limit it cannot enforce must fail loudly and leave nothing behind.
func TestV2MissingControllerFails(t *testing.T) {
	requireRoot(t)
	if !IsHybrid() {
		t.Skip("needs a hybrid host, whose cgroup2 hierarchy lacks the controllers")
	}
	c := Config{Mode: V2, Root: hybridUnified}
	for _, l := range []Limits{{Memory: 1 << 30}, {CPU: 1}, {Pids: 5}} {
		g, err := c.New(context.Background(), testName(t), l)
		if err == nil {
			g.Delete()
			t.Fatalf("New(%+v) on %s succeeded, want error", l, hybridUnified)
		}
		if !strings.Contains(err.Error(), "controller not available") {
			t.Errorf("error %q does not say the controller is missing", err)
		}
	}
	if _, err := os.Stat(filepath.Join(hybridUnified, strings.Split(testName(t), "/")[0])); err == nil {
		t.Error("failed New left a directory behind")
	}
}

// fakeCgroup makes a directory standing in for a cgroupfs directory: a
// temporary directory with empty control files, since cgroupfs files exist
// up front and are never created by writers.
func fakeCgroup(t *testing.T, dir string, files ...string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestV2LimitsFakeCgroupfs checks the v2 limit-writing logic against a
// temporary directory STANDING IN for cgroupfs: this host's cgroup2
// hierarchy has no resource controllers, so real v2 limit files do not
// exist here.
func TestV2LimitsFakeCgroupfs(t *testing.T) {
	all := []string{"cpu.max", "memory.max", "memory.swap.max", "pids.max"}
	tests := []struct {
		name  string
		files []string // control files the fake kernel offers
		l     Limits
		want  map[string]string
	}{
		{"all limits", all, Limits{CPU: 0.5, Memory: 64 << 20, Pids: 10}, map[string]string{
			"cpu.max": "50000 100000", "memory.max": "67108864", "memory.swap.max": "0", "pids.max": "10",
		}},
		{"unlimited", all, Limits{}, map[string]string{
			"cpu.max": "max 100000", "memory.max": "", "memory.swap.max": "", "pids.max": "",
		}},
		{"no swap accounting", []string{"cpu.max", "memory.max", "pids.max"}, Limits{Memory: 1 << 30}, map[string]string{
			"memory.max": "1073741824",
		}},
		{"one and a half cores", all, Limits{CPU: 1.5}, map[string]string{"cpu.max": "150000 100000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			fakeCgroup(t, dir, tt.files...)
			g := &Group{name: "fake", mode: V2, dirs: map[string]string{"": dir}}
			if err := g.applyV2(dir, tt.l); err != nil {
				t.Fatalf("applyV2: %v", err)
			}
			for f, want := range tt.want {
				if got := readCG(t, dir, f); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); !strings.Contains(strings.Join(tt.files, " "), "swap") && err == nil {
				t.Error("memory.swap.max created although the fake kernel lacks it")
			}
		})
	}
}

// TestV2EnableControllersFakeCgroupfs checks subtree_control handling in a
// temporary directory STANDING IN for cgroupfs: the controllers must be
// enabled from the root down, and only those not enabled already.
func TestV2EnableControllersFakeCgroupfs(t *testing.T) {
	root := t.TempDir()
	fakeCgroup(t, root, "cgroup.controllers", "cgroup.subtree_control")
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("cpu memory\n"), 0o644)
	self := filepath.Join(root, "user.slice", "app.scope")
	fakeCgroup(t, filepath.Join(root, "user.slice"), "cgroup.subtree_control")
	fakeCgroup(t, self, "cgroup.subtree_control")

	g := &Group{name: "fake", mode: V2, dirs: map[string]string{}}
	want := wantV2([]string{"cpuset", "cpu", "io", "memory", "pids"})
	if strings.Join(want, " ") != "cpu memory pids" {
		t.Fatalf("wantV2 = %v", want)
	}
	tests := []struct{ dir, want string }{
		{root, "+pids"}, // cpu and memory already on
		{filepath.Join(root, "user.slice"), "+cpu +memory +pids"},
		{self, "+cpu +memory +pids"},
	}
	for _, tt := range tests {
		if err := g.enableV2(tt.dir, want); err != nil {
			t.Fatalf("enableV2(%s): %v", tt.dir, err)
		}
		if got := readCG(t, tt.dir, "cgroup.subtree_control"); got != tt.want {
			t.Errorf("%s/cgroup.subtree_control written %q, want %q", tt.dir, got, tt.want)
		}
	}
}

// TestV2CreateFakeCgroupfs drives Config.New end to end against a
// temporary directory STANDING IN for cgroupfs, with no controllers (so no
// subtree_control writes into directories the fake cannot populate).
func TestV2CreateFakeCgroupfs(t *testing.T) {
	root := t.TempDir()
	fakeCgroup(t, root, "cgroup.controllers", "cgroup.subtree_control")
	g, err := Config{Mode: V2, Root: root, Parent: "/"}.New(context.Background(), "clawhold/sandbox-1", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "clawhold", "sandbox-1"); g.Dirs()[""] != want {
		t.Errorf("dir = %s, want %s", g.Dirs()[""], want)
	}
	if err := g.removeDirs(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "clawhold")); err == nil {
		t.Error("intermediate directory left behind")
	}
}

// TestV2EventsFakeCgroupfs checks v2 event parsing and inotify wakeups
// against a temporary directory STANDING IN for cgroupfs: the test plays the
// kernel by rewriting memory.events and pids.events.
func TestV2EventsFakeCgroupfs(t *testing.T) {
	dir := t.TempDir()
	write := func(file, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("memory.events", "low 0\nhigh 0\nmax 3\noom 0\noom_kill 0\noom_group_kill 0\n")
	write("pids.events", "max 0\n")
	g := &Group{name: "fake", mode: V2, dirs: map[string]string{"": dir}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := g.Events(ctx)

	tests := []struct {
		file, content string
		want          string
		count         int64
	}{
		{"memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 0\noom_group_kill 0\n", MemoryMax, 2},
		{"memory.events", "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n", OOMKill, 1},
		{"pids.events", "max 4\n", PidsMax, 4},
	}
	for _, tt := range tests {
		write(tt.file, tt.content)
		ev := waitEvent(t, events, tt.want, 5*time.Second)
		if ev.Count != tt.count {
			t.Errorf("%s count = %d, want %d", tt.want, ev.Count, tt.count)
		}
		if !strings.Contains(ev.Detail, tt.file) {
			t.Errorf("detail %q does not name %s", ev.Detail, tt.file)
		}
	}
	cancel()
	for range events {
	}
}

// TestV2SelfLeafReal moves the test process into a leaf of a cgroup it
// occupies, on the real cgroup2 hierarchy, as Config.SelfLeaf does inside a
// delegated scope, and moves it back afterwards.
func TestV2SelfLeafReal(t *testing.T) {
	requireRoot(t)
	c := v2Config(t)
	root := c.Root
	if root == "" {
		var err error
		if root, err = findV2Root(); err != nil {
			t.Fatal(err)
		}
	}
	self, err := selfCgroups()
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, self[""])
	top := filepath.Join(root, strings.Split(testName(t), "/")[0])
	parent := filepath.Join(top, "scope")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Back home first, or the directories cannot go.
		if err := writeFile(home, "cgroup.procs", strconv.Itoa(os.Getpid())); err != nil {
			t.Errorf("moving back to %s: %v", home, err)
		}
		for _, d := range []string{filepath.Join(parent, "supervisor"), parent, top} {
			if err := syscall.Rmdir(d); err != nil && !os.IsNotExist(err) {
				t.Errorf("rmdir %s: %v", d, err)
			}
		}
	})
	if err := writeFile(parent, "cgroup.procs", strconv.Itoa(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	g := &Group{name: "selfleaf", mode: V2, dirs: map[string]string{}}
	if err := g.leaveParent(parent, "supervisor"); err != nil {
		t.Fatalf("leaveParent: %v", err)
	}
	now, err := selfCgroups()
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimPrefix(filepath.Join(parent, "supervisor"), root); now[""] != want {
		t.Errorf("after leaveParent the process is in %q, want %q", now[""], want)
	}
	if procs := readCG(t, parent, "cgroup.procs"); procs != "" {
		t.Errorf("%s still holds %q", parent, procs)
	}
}
