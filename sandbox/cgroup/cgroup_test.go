package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireRoot skips unprivileged runs, except in CI where a skip would hide
// a broken environment.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root (CAP_SYS_ADMIN over cgroupfs) to create cgroups"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true, refusing to skip")
	}
	t.Skip(msg)
}

func requireMode(t *testing.T, m Mode) {
	t.Helper()
	if got := DetectMode(); got != m {
		t.Skipf("host cgroup mode is %v, test needs %v", got, m)
	}
}

// hostConfig is the Config for mode-agnostic tests. On v2 hosts it creates
// groups under the root cgroup: the test process's own cgroup holds
// processes, so v2 would refuse to enable controllers in it.
func hostConfig() Config {
	if DetectMode() == V2 {
		return Config{Parent: "/"}
	}
	return Config{}
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// testName is unique per test and process so reruns and concurrent packages
// do not collide.
func testName(t *testing.T) string {
	return fmt.Sprintf("clawhold-test-%d/%s", os.Getpid(), unsafeChars.ReplaceAllString(t.Name(), "_"))
}

// newGroup creates a group that is deleted, and checked to be gone, when the
// test ends, pass or fail.
func newGroup(t *testing.T, c Config, l Limits) *Group {
	t.Helper()
	g, err := c.New(context.Background(), testName(t), l)
	if err != nil {
		t.Fatalf("New(%+v): %v", l, err)
	}
	t.Cleanup(func() {
		if err := g.Delete(); err != nil {
			t.Errorf("cleanup Delete: %v", err)
		}
		assertGone(t, g)
	})
	return g
}

// assertGone checks that neither the group's directories nor the parents New
// created for it remain, in any hierarchy.
func assertGone(t *testing.T, g *Group) {
	t.Helper()
	for _, d := range append(g.uniqueDirs(), g.created...) {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists after Delete (stat: %v)", d, err)
		}
	}
}

// startInGroup starts sh -c script held at a "read" until it is in g, so
// nothing it does escapes the limits.
func startInGroup(t *testing.T, g *Group, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "read go; "+script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatalf("Add(%d): %v", cmd.Process.Pid, err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	return cmd
}

func readCG(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestModeText(t *testing.T) {
	for _, m := range []Mode{Unavailable, V1, V2} {
		b, _ := m.MarshalText()
		var back Mode
		if err := back.UnmarshalText(b); err != nil || back != m {
			t.Errorf("round trip %v: got %v, %v", m, back, err)
		}
	}
}

func TestNameValidation(t *testing.T) {
	for _, name := range []string{"", "/", "../x", "a/../../b", "a//b"} {
		if _, err := (Config{Mode: V1}).New(context.Background(), name, Limits{}); err == nil {
			t.Errorf("New(%q) succeeded, want error", name)
		}
	}
	if _, err := (Config{Mode: V1}).New(context.Background(), "x", Limits{CPU: -1}); err == nil {
		t.Error("negative limit accepted")
	}
}

func TestPermissionErrorNamesFix(t *testing.T) {
	g := &Group{name: "clawhold/sandbox-1", mode: V2}
	err := g.errorf("", "/sys/fs/cgroup/x", "creating: %w", &fs.PathError{Op: "mkdir", Path: "/x", Err: syscall.EACCES})
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("error %v does not wrap fs.ErrPermission", err)
	}
	for _, want := range []string{"Delegate=yes", "root", "/sys/fs/cgroup/x"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestV1Limits(t *testing.T) {
	requireRoot(t)
	requireMode(t, V1)
	const unlimited = "9223372036854771712" // PAGE_COUNTER_MAX in bytes on 4K pages
	tests := []struct {
		name  string
		l     Limits
		files map[string]map[string]string // controller → file → want
	}{
		{"all", Limits{CPU: 0.5, Memory: 64 << 20, Pids: 10}, map[string]map[string]string{
			"cpu":    {"cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "50000"},
			"memory": {"memory.limit_in_bytes": "67108864", "memory.memsw.limit_in_bytes": "67108864"},
			"pids":   {"pids.max": "10"},
		}},
		{"unlimited", Limits{}, map[string]map[string]string{
			"cpu":    {"cpu.cfs_quota_us": "-1"},
			"memory": {"memory.limit_in_bytes": unlimited},
			"pids":   {"pids.max": "max"},
		}},
		{"tiny cpu clamps to 1ms", Limits{CPU: 0.001}, map[string]map[string]string{
			"cpu": {"cpu.cfs_quota_us": "1000"},
		}},
		{"two cores", Limits{CPU: 2}, map[string]map[string]string{
			"cpu": {"cpu.cfs_quota_us": "200000"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGroup(t, Config{}, tt.l)
			if g.Mode() != V1 {
				t.Fatalf("Mode = %v", g.Mode())
			}
			for _, c := range v1Controllers {
				if _, ok := g.Dirs()[c]; !ok {
					t.Errorf("no %s directory", c)
				}
			}
			for ctrl, files := range tt.files {
				for f, want := range files {
					if f == "memory.memsw.limit_in_bytes" && !exists(g.dirs[ctrl], f) {
						t.Logf("no swap accounting on this host, skipping %s", f)
						continue
					}
					if got := readCG(t, g.dirs[ctrl], f); got != want {
						t.Errorf("%s/%s = %q, want %q", ctrl, f, got, want)
					}
				}
			}
		})
	}
}

// TestV1UnderCallerCgroup checks that groups nest under the caller's own
// cgroup in each hierarchy (this process's memory cgroup is not "/").
func TestV1UnderCallerCgroup(t *testing.T) {
	requireRoot(t)
	requireMode(t, V1)
	self, err := selfCgroups()
	if err != nil {
		t.Fatal(err)
	}
	g := newGroup(t, Config{}, Limits{})
	for ctrl, d := range g.Dirs() {
		want := filepath.Join(self[ctrl], testName(t))
		if !strings.HasSuffix(d, want) {
			t.Errorf("%s dir %s is not under the caller's cgroup %s", ctrl, d, self[ctrl])
		}
	}
}

// waitEvent returns the first event of kind, failing after timeout.
func waitEvent(t *testing.T, ch <-chan Event, kind string, timeout time.Duration) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatalf("event channel closed before a %s event", kind)
			}
			t.Logf("event: %+v", ev)
			if ev.Kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within %v", kind, timeout)
		}
	}
}

func TestEventsAndContainment(t *testing.T) {
	requireRoot(t)
	requireMode(t, V1)
	tests := []struct {
		name   string
		l      Limits
		script string
		want   string
		check  func(t *testing.T, g *Group, cmd *exec.Cmd)
	}{
		{
			// tail buffers a "line" of /dev/zero forever: a memory bomb.
			name: "memory bomb is OOM-killed", l: Limits{Memory: 32 << 20},
			script: "exec tail /dev/zero", want: OOMKill,
			check: func(t *testing.T, g *Group, cmd *exec.Cmd) {
				err := cmd.Wait()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Errorf("memory bomb exit = %v, want SIGKILL", err)
				}
				st, err := g.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if st.MemoryPeak < 16<<20 || st.MemoryPeak > 40<<20 {
					t.Errorf("peak memory %d, want about the 32 MiB limit", st.MemoryPeak)
				}
			},
		},
		{
			name: "fork bomb is held by pids.max", l: Limits{Pids: 8},
			script: "i=0; while [ $i -lt 64 ]; do sleep 60 & i=$((i+1)); done; wait", want: PidsMax,
			check: func(t *testing.T, g *Group, _ *exec.Cmd) {
				st, err := g.Stats()
				if err != nil {
					t.Fatal(err)
				}
				if st.Pids > 8 || st.Pids == 0 {
					t.Errorf("pids.current = %d, want 1..8", st.Pids)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGroup(t, Config{}, tt.l)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			events := g.Events(ctx)
			cmd := startInGroup(t, g, tt.script)
			ev := waitEvent(t, events, tt.want, 20*time.Second)
			if ev.Count < 1 || ev.Detail == "" || ev.Time.IsZero() {
				t.Errorf("malformed event %+v", ev)
			}
			tt.check(t, g, cmd)
			if err := g.Kill(); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			cancel()
			for range events { // must close after cancel
			}
		})
	}
}

// TestV1CPUQuota is a containment check, not a benchmark: a busy loop under
// a 0.2 core quota must stay well under one core.
func TestV1CPUQuota(t *testing.T) {
	requireRoot(t)
	requireMode(t, V1)
	g := newGroup(t, Config{}, Limits{CPU: 0.2})
	startInGroup(t, g, "while :; do :; done")
	time.Sleep(200 * time.Millisecond) // let it settle into the quota
	before, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(2 * time.Second)
	after, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	share := float64(after.CPU-before.CPU) / float64(time.Since(start))
	t.Logf("CPU share under a 0.2 quota: %.3f", share)
	if share > 0.35 {
		t.Errorf("CPU share %.3f, want <= 0.35 (quota 0.2)", share)
	}
	if share < 0.05 {
		t.Errorf("CPU share %.3f: the hog barely ran, accounting broken?", share)
	}
}

func TestKillDelete(t *testing.T) {
	requireRoot(t)
	requireMode(t, V1)
	tests := []struct {
		name   string
		script string
	}{
		{"empty", ""},
		{"one sleeper", "exec sleep 600"},
		{"process tree", "sleep 600 & sleep 600 & (sleep 600 & sleep 600) & wait"},
		{"forking loop", "while :; do sleep 600 & done"},
		{"ignores SIGTERM", "trap '' TERM; sleep 600 & wait"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGroup(t, Config{}, Limits{Pids: 200})
			if tt.script != "" {
				startInGroup(t, g, tt.script)
				time.Sleep(100 * time.Millisecond)
				if pids, _ := g.Procs(); len(pids) == 0 {
					t.Fatal("no processes in the group before Kill")
				}
			}
			if err := g.Kill(); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			if pids, err := g.Procs(); err != nil || len(pids) != 0 {
				t.Fatalf("after Kill: procs %v, %v", pids, err)
			}
			if s := readCG(t, g.dirs["freezer"], "freezer.state"); s != "THAWED" {
				t.Errorf("freezer.state = %s after Kill, want THAWED", s)
			}
			if err := g.Delete(); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			assertGone(t, g)
			if err := g.Delete(); err != nil {
				t.Fatalf("second Delete: %v", err)
			}
		})
	}
}

// TestDeleteWithoutKill checks that Delete alone kills, and copes with child
// cgroups the sandbox made inside its own group.
func TestDeleteWithoutKill(t *testing.T) {
	requireRoot(t)
	requireMode(t, V1)
	g := newGroup(t, Config{}, Limits{})
	cmd := startInGroup(t, g, "exec sleep 600")
	if err := os.Mkdir(filepath.Join(g.dirs["memory"], "inner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := g.Delete(); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("sleeper exited cleanly; want killed")
	}
	assertGone(t, g)
}

// TestStats checks the counters move for a busy child.
func TestStats(t *testing.T) {
	requireRoot(t)
	g := newGroup(t, hostConfig(), Limits{})
	startInGroup(t, g, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 600")
	time.Sleep(300 * time.Millisecond)
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	if st.CPU <= 0 || st.Pids < 1 {
		t.Errorf("stats %+v: want CPU > 0 and pids >= 1", st)
	}
	if g.Mode() == V1 && st.MemoryCurrent <= 0 {
		t.Errorf("stats %+v: want memory > 0", st)
	}
}

func TestEventsClosesOnDelete(t *testing.T) {
	requireRoot(t)
	g := newGroup(t, hostConfig(), Limits{Memory: 64 << 20, Pids: 10})
	events := g.Events(context.Background())
	if err := g.Delete(); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-events:
		if ok {
			t.Error("unexpected event")
		}
	case <-time.After(5 * time.Second):
		t.Error("Events channel still open 5s after Delete")
	}
}

func TestNewExistingFails(t *testing.T) {
	requireRoot(t)
	newGroup(t, hostConfig(), Limits{})
	if g, err := hostConfig().New(context.Background(), testName(t), Limits{}); err == nil {
		g.Delete()
		t.Fatal("second New with the same name succeeded")
	}
}
