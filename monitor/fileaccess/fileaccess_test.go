//go:build linux

package fileaccess

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips (or, with CI=true, fails) when fanotify permission
// events are out of reach.
func requireRoot(t testing.TB) {
	t.Helper()
	if unix.Geteuid() == 0 {
		return
	}
	msg := "needs root: fanotify needs CAP_SYS_ADMIN, the namespace tests map uid 65534"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true forbids skipping)")
	}
	t.Skip(msg)
}

// collector receives Accesses; the buffer is large so tests never drop.
type collector struct{ ch chan Access }

func start(t testing.TB, o Options) (*Watcher, *collector) {
	t.Helper()
	c := &collector{ch: make(chan Access, 10000)}
	o.OnAccess = func(a Access) { c.ch <- a }
	w, err := New(t.Context(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w, c
}

// permWatcher starts a watcher in the best mode and insists it is
// fanotify-perm in CI (this kernel has CONFIG_FANOTIFY_ACCESS_PERMISSIONS).
func permWatcher(t *testing.T, o Options) (*Watcher, *collector) {
	t.Helper()
	requireRoot(t)
	w, c := start(t, o)
	if w.Mode() != ModeFanotifyPerm {
		msg := "mode is " + w.Mode() + ", want " + ModeFanotifyPerm + " (CONFIG_FANOTIFY_ACCESS_PERMISSIONS, CAP_SYS_ADMIN)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return w, c
}

// next returns the first Access satisfying pred, failing after a generous
// deadline (a liveness bound, not a timing assertion). Every Access seen
// before it is passed to seen, if set.
func (c *collector) next(t *testing.T, what string, pred func(Access) bool, seen func(Access)) Access {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case a := <-c.ch:
			if pred(a) {
				return a
			}
			if seen != nil {
				seen(a)
			}
		case <-deadline:
			t.Fatalf("no access for %s", what)
		}
	}
}

func onPath(p string) func(Access) bool { return func(a Access) bool { return a.Path == p } }

func run(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return cmd
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// worldDir is a temp dir every uid can enter (t.TempDir is 0700).
func worldDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "fileaccess-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func selfPidNS(t *testing.T) uint64 {
	l, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	return parseNSLink(l)
}

func TestCatReadIsAttributed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		watch func(dir string) string // what to Add
		file  string                  // relative to dir
	}{
		{"directory", func(d string) string { return d }, "id_ed25519"},
		{"file", func(d string) string { return filepath.Join(d, "id_ed25519") }, "id_ed25519"},
		{"subdirectory", func(d string) string { return d }, "nested/credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, c := permWatcher(t, Options{})
			dir := t.TempDir()
			f := filepath.Join(dir, tc.file)
			writeFile(t, f, "secret\n")
			if err := w.Add(tc.watch(dir), "ssh"); err != nil {
				t.Fatal(err)
			}
			cmd := run(t, "/usr/bin/cat", f)
			a := c.next(t, "cat "+f, onPath(f), nil)
			if a.Exe != "/usr/bin/cat" || !slices.Equal(a.Argv, []string{"/usr/bin/cat", f}) ||
				a.Pid != cmd.Process.Pid || a.PPid != os.Getpid() || a.UID != 0 ||
				a.Kind != KindRead || a.Label != "ssh" || a.Self || a.Comm != "cat" ||
				a.PidNS != selfPidNS(t) || a.Cgroup == "" {
				t.Errorf("access = %+v, want cat (pid %d) reading %s", a, cmd.Process.Pid, f)
			}
		})
	}
}

func TestShellAppendIsWrite(t *testing.T) {
	w, c := permWatcher(t, Options{})
	dir := t.TempDir()
	f := filepath.Join(dir, ".env")
	writeFile(t, f, "A=1\n")
	if err := w.Add(dir, "env"); err != nil {
		t.Fatal(err)
	}
	cmd := run(t, "/bin/sh", "-c", `echo x >> "$1"`, "sh", f)
	a := c.next(t, "append", onPath(f), nil)
	if a.Kind != KindWrite || a.Pid != cmd.Process.Pid || a.Exe != "/usr/bin/dash" && a.Exe != "/usr/bin/bash" {
		t.Errorf("access = %+v, want a write by sh (pid %d)", a, cmd.Process.Pid)
	}
}

func TestUserNamespaceProcessHostUID(t *testing.T) {
	w, c := permWatcher(t, Options{})
	dir := worldDir(t)
	f := filepath.Join(dir, "token")
	writeFile(t, f, "tok\n")
	if err := w.Add(dir, "state"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/cat", f)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 65534, Size: 1}},
		// setuid(0) inside the namespace: the kernel uid becomes host 65534
		// (without it the task keeps its creator's kuid, host root).
		Credential: &syscall.Credential{Uid: 0, Gid: 0},
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cat in namespaces: %v: %s", err, out)
	}
	a := c.next(t, "namespaced cat", onPath(f), nil)
	if a.UID != 65534 || a.Pid != cmd.Process.Pid || a.PidNS == 0 || a.PidNS == selfPidNS(t) ||
		a.Exe != "/usr/bin/cat" || a.Kind != KindRead {
		t.Errorf("access = %+v, want host uid 65534, host pid %d, another pid namespace", a, cmd.Process.Pid)
	}
}

// A file that exists only in another mount namespace (a private tmpfs of a
// "cell") is watched through /proc/<pid>/root and reported under that path.
func TestProcRootOfOtherMountNamespace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		watch func(root string) string
	}{
		{"directory", func(r string) string { return r }},
		{"file", func(r string) string { return filepath.Join(r, "token") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, c := permWatcher(t, Options{})
			mnt := worldDir(t)
			script := `mount --make-rprivate / && mount -t tmpfs -o mode=0755 cellfs "$1" && echo hidden > "$1/token" &&
echo ready && read x && cat "$1/token" >/dev/null && echo done && read x`
			cmd := exec.Command("/bin/sh", "-c", script, "sh", mnt)
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Wait() }()
			out := bufio.NewScanner(stdout)
			if !out.Scan() || out.Text() != "ready" {
				t.Fatalf("cell did not start: %q", out.Text())
			}
			if _, err := os.Stat(filepath.Join(mnt, "token")); !os.IsNotExist(err) {
				t.Fatalf("token visible on the host (err %v): the test needs a private mount", err)
			}
			root := fmt.Sprintf("/proc/%d/root%s", cmd.Process.Pid, mnt)
			if err := w.Add(tc.watch(root), "cell-state"); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(stdin, "go")
			if !out.Scan() || out.Text() != "done" {
				t.Fatalf("cat in cell failed: %q", out.Text())
			}
			want := filepath.Join(root, "token")
			a := c.next(t, "cat in the cell", onPath(want), nil)
			if a.Exe != "/usr/bin/cat" || a.Kind != KindRead || a.Label != "cell-state" || a.PPid != cmd.Process.Pid {
				t.Errorf("access = %+v, want cat (child of %d) reading %s", a, cmd.Process.Pid, want)
			}
		})
	}
}

func TestUnwatchedAndRemovedAreSilent(t *testing.T) {
	w, c := permWatcher(t, Options{MaxDepth: 1})
	base := t.TempDir()
	watched := filepath.Join(base, "watched", "creds")
	deep := filepath.Join(base, "watched", "a", "b", "too-deep") // below MaxDepth
	removed := filepath.Join(base, "removed", "creds")
	unwatched := filepath.Join(base, "other", "creds")
	for _, f := range []string{watched, deep, removed, unwatched} {
		writeFile(t, f, "x")
	}
	if err := w.Add(filepath.Dir(watched), "w"); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(filepath.Dir(removed), "r"); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove(filepath.Dir(removed)); err != nil {
		t.Fatal(err)
	}
	run(t, "/usr/bin/cat", unwatched, deep, removed)
	run(t, "/usr/bin/cat", watched) // sentinel: events arrive in order
	c.next(t, "sentinel", onPath(watched), func(a Access) {
		t.Errorf("unexpected access %s by %s", a.Path, a.Exe)
	})
}

func TestSelfDoesNotDeadlock(t *testing.T) {
	w, c := permWatcher(t, Options{})
	dir := t.TempDir()
	f := filepath.Join(dir, "state.json")
	writeFile(t, f, "{}")
	if err := w.Add(dir, "data"); err != nil {
		t.Fatal(err)
	}
	// If the watcher waited on its own process, these would hang (the
	// test binary's timeout is the failure).
	if _, err := os.ReadFile(f); err != nil {
		t.Fatal(err)
	}
	a := c.next(t, "own read", onPath(f), nil)
	if !a.Self || a.Pid != os.Getpid() || a.Kind != KindRead {
		t.Errorf("own read = %+v, want Self read by pid %d", a, os.Getpid())
	}
	fh, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString(" ")
	fh.Close()
	if a := c.next(t, "own write", onPath(f), nil); !a.Self || a.Kind != KindWrite {
		t.Errorf("own write = %+v, want Self write", a)
	}
}

// A consumer that never returns must not stall openers: the reader drops
// and counts instead.
func TestBlockedConsumerDoesNotStallOpeners(t *testing.T) {
	requireRoot(t)
	release := make(chan struct{})
	var got atomic.Int64
	w, err := New(t.Context(), Options{Buffer: 2, OnAccess: func(Access) { got.Add(1); <-release }})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "creds")
	writeFile(t, f, "x")
	if err := w.Add(dir, "x"); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		run(t, "/usr/bin/cat", f) // would hang if the open waited on the consumer
	}
	// The 20 closes are queued in the kernel before cat exits; wait until the
	// reader has processed them (a liveness bound, not a timing assertion).
	deadline := time.Now().Add(20 * time.Second)
	for w.Dropped() < 17 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := w.Dropped(); d < 17 {
		t.Errorf("Dropped = %d, want ≥ 17 of 20 with Buffer 2 and a stuck consumer", d)
	}
	close(release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if n := got.Load(); n < 1 || n > 3 {
		t.Errorf("consumer got %d accesses, want 1..3", n)
	}
}

func TestCloseReleasesWatchedFiles(t *testing.T) {
	requireRoot(t)
	var after atomic.Bool
	var calls atomic.Int64
	w, err := New(t.Context(), Options{OnAccess: func(Access) {
		if after.Load() {
			calls.Add(1)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "creds")
	writeFile(t, f, "x")
	if err := w.Add(dir, "x"); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	after.Store(true)
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	run(t, "/usr/bin/cat", f) // no group left to answer: must not hang
	if err := w.Add(dir, "x"); err != ErrClosed {
		t.Errorf("Add after Close = %v, want ErrClosed", err)
	}
	if calls.Load() != 0 {
		t.Errorf("OnAccess called after Close")
	}
}

func TestRescan(t *testing.T) {
	w, c := permWatcher(t, Options{})
	home := t.TempDir()
	key := filepath.Join(home, ".ssh", "id_rsa")
	cfg := filepath.Join(home, "config.json")
	writeFile(t, cfg, "{}")
	if err := w.Add(filepath.Dir(key), "ssh"); err != nil { // does not exist yet
		t.Fatalf("Add of a missing path: %v", err)
	}
	if err := w.Add(cfg, "config"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, key, "k")
	// Replace cfg atomically: the marked inode is gone from the path.
	writeFile(t, cfg+".tmp", "{new}")
	if err := os.Rename(cfg+".tmp", cfg); err != nil {
		t.Fatal(err)
	}
	if err := w.Rescan(t.Context()); err != nil {
		t.Fatal(err)
	}
	run(t, "/usr/bin/cat", key)
	if a := c.next(t, "new ~/.ssh", onPath(key), nil); a.Label != "ssh" || a.Exe != "/usr/bin/cat" {
		t.Errorf("access = %+v", a)
	}
	run(t, "/usr/bin/cat", cfg)
	if a := c.next(t, "replaced file", onPath(cfg), nil); a.Label != "config" {
		t.Errorf("access = %+v", a)
	}
	w.mu.Lock()
	n := len(w.marks)
	w.mu.Unlock()
	if n != 2 {
		t.Errorf("%d marks after rescan, want 2 (.ssh and the new config.json)", n)
	}
}

// An open held longer than OpenTimeout is reported before its close, with
// the kind taken from the opener's fdinfo.
func TestLongOpenReportedBeforeClose(t *testing.T) {
	w, c := permWatcher(t, Options{OpenTimeout: 200 * time.Millisecond})
	dir := t.TempDir()
	f := filepath.Join(dir, "db")
	writeFile(t, f, "x")
	if err := w.Add(dir, "data"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", `exec 3>>"$1"; echo ready; read x`, "sh", f)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	bufio.NewScanner(stdout).Scan()
	a := c.next(t, "held open", onPath(f), nil)
	if a.Kind != KindWrite || a.Pid != cmd.Process.Pid {
		t.Errorf("access = %+v, want write by %d", a, cmd.Process.Pid)
	}
	stdin.Close()
	cmd.Wait()
	run(t, "/usr/bin/cat", f) // sentinel: the close of fd 3 must not be reported again
	c.next(t, "sentinel", func(a Access) bool { return a.Exe == "/usr/bin/cat" }, func(a Access) {
		t.Errorf("duplicate access %+v", a)
	})
}

func TestNotificationOnlyFanotify(t *testing.T) {
	requireRoot(t)
	w, c := start(t, Options{Mode: ModeFanotify})
	if w.Mode() != ModeFanotify {
		t.Fatalf("mode %s", w.Mode())
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "creds")
	writeFile(t, f, "x")
	if err := w.Add(dir, "x"); err != nil {
		t.Fatal(err)
	}
	cmd := run(t, "/bin/sh", "-c", `echo x >> "$1"`, "sh", f)
	if a := c.next(t, "append", onPath(f), nil); a.Kind != KindWrite || a.Pid != cmd.Process.Pid {
		t.Errorf("access = %+v, want write by pid %d", a, cmd.Process.Pid)
	}
}

// inotify needs no privilege; it runs everywhere.
func TestInotifyFallback(t *testing.T) {
	w, c := start(t, Options{Mode: ModeInotify})
	if w.Mode() != ModeInotify {
		t.Fatalf("mode %s", w.Mode())
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "sub", "creds")
	g := filepath.Join(dir, "single")
	writeFile(t, f, "x")
	writeFile(t, g, "x")
	if err := w.Add(dir, "d"); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(g, "g"); err != nil { // also covered by dir: must be reported once
		t.Fatal(err)
	}
	run(t, "/usr/bin/cat", f)
	if a := c.next(t, "cat", onPath(f), nil); a.Kind != KindRead || a.Pid != 0 || a.Label != "d" {
		t.Errorf("access = %+v, want unattributed read", a)
	}
	run(t, "/bin/sh", "-c", `echo x >> "$1"`, "sh", g)
	if a := c.next(t, "append", onPath(g), nil); a.Kind != KindWrite || a.Label != "g" {
		t.Errorf("access = %+v, want write labelled g", a)
	}
	run(t, "/usr/bin/cat", f) // sentinel: g's write was reported once
	c.next(t, "sentinel", onPath(f), func(a Access) { t.Errorf("duplicate %+v", a) })
}

func TestMatches(t *testing.T) {
	node := Access{Pid: 42, UID: 1000, Exe: "/usr/local/bin/node"}
	for _, tc := range []struct {
		name string
		a    Access
		e    []Expect
		want bool
	}{
		{"exact exe any uid", node, []Expect{{Exe: "/usr/local/bin/node", UID: -1}}, true},
		{"glob exe", node, []Expect{{Exe: "/usr/*/bin/node", UID: -1}}, true},
		{"glob does not cross /", node, []Expect{{Exe: "/usr/*/node", UID: -1}}, false},
		{"wrong uid", node, []Expect{{Exe: "/usr/local/bin/node", UID: 0}}, false},
		{"uid and pid", node, []Expect{{UID: 1000, Pid: 42}}, true},
		{"wrong pid", node, []Expect{{UID: -1, Pid: 43}}, false},
		{"second entry", node, []Expect{{Exe: "/usr/bin/cat", UID: -1}, {Exe: "/usr/local/bin/node", UID: 1000}}, true},
		{"none", node, nil, false},
		{"cat is not node", Access{Pid: 7, UID: 1000, Exe: "/usr/bin/cat"}, []Expect{{Exe: "/usr/local/bin/node", UID: -1}}, false},
		{"unknown exe", Access{Pid: 7, UID: -1}, []Expect{{Exe: "*", UID: -1}}, false},
		{"unattributed vs uid", Access{UID: -1}, []Expect{{UID: 0}}, false},
		{"unattributed vs anyone", Access{UID: -1}, []Expect{{UID: -1}}, true},
		{"bad glob", node, []Expect{{Exe: "[", UID: -1}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.Matches(tc.e); got != tc.want {
				t.Errorf("Matches = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseProc(t *testing.T) {
	var a Access
	parseStatus([]byte("Name:\tcat\nUmask:\t0022\nState:\tR\nPPid:\t17\nUid:\t1000\t65534\t1000\t1000\n"), &a)
	if a.Comm != "cat" || a.PPid != 17 || a.UID != 65534 {
		t.Errorf("parseStatus = %+v", a)
	}
	if n := parseNSLink("pid:[4026531836]"); n != 4026531836 {
		t.Errorf("parseNSLink = %d", n)
	}
	for _, tc := range []struct{ in, want string }{
		{"9:name=systemd:/\n8:pids:/clawhold/cell-a\n4:memory:/x\n0::/\n", "/clawhold/cell-a"},
		{"0::/system.slice/clawhold.service\n", "/system.slice/clawhold.service"},
		{"4:memory:/x\n0::/\n", "/x"},
		{"3:cpu,cpuacct,pids:/c\n", "/c"},
		{"", ""},
	} {
		if got := pickCgroup([]byte(tc.in)); got != tc.want {
			t.Errorf("pickCgroup(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if !strings.HasPrefix(procInfo(os.Getpid()).Exe, "/") {
		t.Error("procInfo(self) has no exe")
	}
}

func TestForcedModeErrors(t *testing.T) {
	if _, err := New(context.Background(), Options{Mode: "dtrace"}); err == nil {
		t.Error("unknown mode accepted")
	}
	w, _ := start(t, Options{Mode: ModeInotify})
	if err := w.Add("relative/path", "x"); err == nil {
		t.Error("relative path accepted")
	}
	if err := w.Remove("/not/watched"); err == nil {
		t.Error("Remove of an unwatched path succeeded")
	}
}

func TestRescanIntervalFindsNewDirectory(t *testing.T) {
	w, c := permWatcher(t, Options{RescanInterval: 20 * time.Millisecond})
	ssh := filepath.Join(t.TempDir(), ".ssh")
	if err := w.Add(ssh, "ssh"); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(ssh, "id_ed25519")
	writeFile(t, key, "k")
	// Read until a periodic rescan has marked the new directory.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		run(t, "/usr/bin/cat", key)
		select {
		case a := <-c.ch:
			if a.Path != key || a.Exe != "/usr/bin/cat" {
				t.Fatalf("access = %+v", a)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("new ~/.ssh never watched")
}

func TestContextCancelCloses(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	w, err := New(ctx, Options{Mode: ModeInotify})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	dir := t.TempDir()
	deadline := time.Now().Add(20 * time.Second)
	for w.Add(dir, "x") != ErrClosed {
		if time.Now().After(deadline) {
			t.Fatal("watcher still open after its context was cancelled")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
