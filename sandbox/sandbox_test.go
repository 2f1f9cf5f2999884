package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawhold/clawhold/egress"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	Reexec() // init and exec stages: this test binary re-executed
	if os.Getenv(probeEnv) != "" {
		os.Exit(probe(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// needRoot skips, or fails in CI, when the sandbox cannot be built here.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("sandbox tests need root (CAP_SYS_ADMIN for cgroups, user namespaces mapping to uid 65534) and CI=true forbids skipping")
		}
		t.Skip("needs root: cgroups and a user namespace mapped to uid 65534")
	}
}

// env is one sandbox test setup: a real egress proxy on a unix socket
// allowing everything public plus one local upstream, and a host-side
// loopback service that must stay out of reach.
type env struct {
	t        *testing.T
	egress   string // socket path
	upstream string // host:port of the allowed local upstream
	hostSvc  string // host:port of a host loopback service (must be unreachable)
	mu       sync.Mutex
	events   []Event
	decided  []egress.Event
}

func newEnv(t *testing.T) *env {
	needRoot(t)
	e := &env{t: t}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "upstream-ok") })}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(upLn)
	t.Cleanup(func() { up.Close() })
	e.upstream = upLn.Addr().String()
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := hostLn.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("host-secret\n"))
			c.Close()
		}
	}()
	t.Cleanup(func() { hostLn.Close() })
	e.hostSvc = hostLn.Addr().String()

	upAP := netip.MustParseAddrPort(e.upstream)
	p, err := egress.New(egress.Config{
		Policies: map[string]egress.Policy{"default": {Rules: []egress.Rule{
			{Action: egress.Allow, Host: "upstream.test", Ports: []uint16{upAP.Port()}, CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
			{Action: egress.Allow, Host: "*"},
		}}},
		Resolver: staticResolver{"upstream.test": "127.0.0.1", "localhost": "127.0.0.1", "rebind.test": "127.0.0.1"},
		Events: func(ev egress.Event) {
			e.mu.Lock()
			e.decided = append(e.decided, ev)
			e.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e.egress = filepath.Join(dir, "egress.sock")
	ln, err := egress.Listen(context.Background(), "unix", e.egress)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(e.egress, NobodyID, NobodyID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Serve(ctx, ln, egress.Client{Cell: "test", Policy: "default"}) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// staticResolver answers from a fixed table: the stand-in DNS server for
// names that must resolve to loopback (no real resolver may be reached
// from tests).
type staticResolver map[string]string

func (r staticResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := r[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// profile is the default profile plus this test binary, read-only, as the
// probe.
func (e *env) profile(mod func(*Profile)) *Profile {
	e.t.Helper()
	p, err := LoadProfile("default")
	if err != nil {
		e.t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		e.t.Fatal(err)
	}
	p.Filesystem.ReadOnly = append(p.Filesystem.ReadOnly, exe)
	if mod != nil {
		mod(p)
	}
	if p, err = Expand(p, nil); err != nil {
		e.t.Fatal(err)
	}
	return p
}

// run runs argv in a sandbox with profile p and returns its exit status
// and output.
func (e *env) run(p *Profile, timeout time.Duration, argv ...string) (int, string) {
	return e.runT(e.t, p, timeout, argv...)
}

func (e *env) runT(t *testing.T, p *Profile, timeout time.Duration, argv ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out bytes.Buffer
	code, err := Run(ctx, Options{
		Profile: p, Argv: argv, Env: []string{probeEnv + "=1"},
		Stdout: &out, Stderr: &out, EgressSocket: e.egress,
		Events: func(ev Event) {
			e.mu.Lock()
			e.events = append(e.events, ev)
			e.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatalf("sandbox run %v: %v\noutput:\n%s", argv, err, out.String())
	}
	return code, out.String()
}

func (e *env) probe(p *Profile, args ...string) (int, string) {
	return e.probeT(e.t, p, args...)
}

func (e *env) probeT(t *testing.T, p *Profile, args ...string) (int, string) {
	exe, _ := os.Executable()
	return e.runT(t, p, time.Minute, append([]string{exe}, args...)...)
}

// TestEscapes is the escape suite: every attempt runs inside the sandbox
// and must be blocked (probe exit 0), with the host unaffected.
func TestEscapes(t *testing.T) {
	e := newEnv(t)
	// A secret in a "home directory" on the host.
	home := t.TempDir()
	secret := filepath.Join(home, ".ssh", "id_ed25519")
	os.MkdirAll(filepath.Dir(secret), 0o700)
	if err := os.WriteFile(secret, []byte("host key"), 0o600); err != nil {
		t.Fatal(err)
	}
	roDir := t.TempDir()
	os.Chmod(roDir, 0o755)
	rwDir := t.TempDir()
	if err := os.Chown(rwDir, NobodyID, NobodyID); err != nil {
		t.Fatal(err)
	}
	p := e.profile(func(p *Profile) {
		p.Filesystem.ReadOnly = append(p.Filesystem.ReadOnly, roDir)
		p.Filesystem.ReadWrite = append(p.Filesystem.ReadWrite, rwDir)
	})
	_, hostPort, _ := net.SplitHostPort(e.hostSvc)
	// A descriptor some library of the host opened without O_CLOEXEC (as
	// go-fuse does /dev/fuse): the sandbox must not pass it on.
	// Numbered high, above the descriptors the sandbox passes on purpose.
	fd, err := syscall.Open(secret, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	const leaked = 250
	if err := syscall.Dup2(fd, leaked); err != nil { // dup2 clears O_CLOEXEC
		t.Fatal(err)
	}
	syscall.Close(fd)
	defer syscall.Close(leaked)

	cases := []struct {
		name string
		args []string
	}{
		{"read /etc/shadow", []string{"read", "/etc/shadow"}},
		{"read a host home file", []string{"read", secret}},
		{"read root's ssh keys", []string{"read", "/root/.ssh/authorized_keys"}},
		{"read a descriptor the host leaked", []string{"read-fd", strconv.Itoa(leaked)}},
		{"read the docker socket", []string{"read", "/var/run/docker.sock"}},
		{"write /etc", []string{"write", "/etc/passwd"}},
		{"write /usr", []string{"write", "/usr/bin/evil"}},
		{"write the root", []string{"write", "/evil"}},
		{"write a read-only declared dir", []string{"write", filepath.Join(roDir, "evil")}},
		{"write /proc/sys", []string{"write", "/proc/sys/kernel/hostname"}},
		{"connect to an outside address", []string{"connect", "192.0.2.1:80"}},
		{"connect out on the forwarder's port (Landlock allows it)", []string{"connect", "192.0.2.1:3128"}},
		{"connect to a host loopback service", []string{"connect", e.hostSvc}},
		{"connect to a name for host loopback", []string{"connect", "localhost:" + hostPort}},
		{"metadata through the proxy", []string{"proxy-get", "http://169.254.169.254/latest/meta-data/"}},
		{"loopback name through the proxy", []string{"proxy-get", "http://rebind.test:" + hostPort + "/"}},
		{"ptrace a sibling", []string{"ptrace"}},
		{"ptrace init", []string{"ptrace-init"}},
		{"mount", []string{"mount"}},
		{"unshare a user namespace", []string{"unshare-user"}},
		{"unshare a network namespace", []string{"unshare-net"}},
		{"clone a user namespace", []string{"clone-userns"}},
		{"setns", []string{"setns"}},
		{"raw socket", []string{"raw-socket"}},
		{"packet socket", []string{"packet-socket"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := e.probeT(t, p, c.args...)
			t.Log(strings.TrimSpace(out))
			if code != 0 {
				t.Errorf("probe %v: exit %d, want 0 (blocked)\n%s", c.args, code, out)
			}
		})
	}
	t.Run("positive controls", func(t *testing.T) {
		if code, out := e.probeT(t, p, "write-ok", filepath.Join(rwDir, "ok")); code != 0 {
			t.Fatalf("writing the read-write dir: exit %d\n%s", code, out)
		}
		if b, err := os.ReadFile(filepath.Join(rwDir, "ok")); err != nil || string(b) != "inside" {
			t.Fatalf("the write inside did not reach the host dir: %q %v", b, err)
		}
		if code, out := e.probeT(t, p, "proxy-get-ok", "http://"+strings.Replace(e.upstream, "127.0.0.1", "upstream.test", 1)+"/"); code != 0 || !strings.Contains(out, "upstream-ok") {
			t.Fatalf("allowed upstream through the proxy: exit %d\n%s", code, out)
		}
	})
	// The host is unaffected.
	if _, err := os.Stat(filepath.Join(roDir, "evil")); err == nil {
		t.Error("a file appeared in the read-only dir on the host")
	}
	if h, _ := os.Hostname(); h == "clawhold-sandbox" {
		t.Error("the host's hostname changed")
	}
}

// TestExposedPortOffLimits: the exposed port is reachable from the host
// through the expose socket (init relays), but not from the command or
// its children — they would otherwise reach a gateway that believes
// identity headers from that relay.
func TestExposedPortOffLimits(t *testing.T) {
	e := newEnv(t)
	const port = 18790
	p := e.profile(func(p *Profile) { p.Network.Expose = port })
	sock := filepath.Join(t.TempDir(), "expose.sock")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	exe, _ := os.Executable()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, Options{
			Profile: p, Argv: []string{exe, "exposed-port", strconv.Itoa(port)}, Env: []string{probeEnv + "=1"},
			Stdout: &out, Stderr: &out, EgressSocket: e.egress, ExposeSocket: sock,
		})
		done <- err
	}()
	var reply string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if reply = string(b); reply != "" {
			break
		}
	}
	cancel()
	<-done
	t.Log(out.String())
	if reply != "served code=0\n" {
		t.Fatalf("through the expose socket: got %q, want the probe's answer with code=0 (both connects blocked)\n%s", reply, out.String())
	}
}

// TestLinksWithExpose: the command's extra Landlock layer (which keeps it
// off the exposed port) still lets it link and rename across directories
// of its read-write dirs, as OpenClaw does to publish workspace files.
func TestLinksWithExpose(t *testing.T) {
	e := newEnv(t)
	rw := t.TempDir()
	if err := os.Chown(rw, NobodyID, NobodyID); err != nil {
		t.Fatal(err)
	}
	for _, expose := range []int{0, 18791} {
		p := e.profile(func(p *Profile) {
			p.Filesystem.ReadWrite = append(p.Filesystem.ReadWrite, rw)
			p.Network.Expose = expose
		})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		exe, _ := os.Executable()
		var out bytes.Buffer
		code, err := Run(ctx, Options{Profile: p, Argv: []string{exe, "link-ok", filepath.Join(rw, strconv.Itoa(expose))},
			Env: []string{probeEnv + "=1"}, Stdout: &out, Stderr: &out, EgressSocket: e.egress,
			ExposeSocket: filepath.Join(t.TempDir(), "x.sock")})
		cancel()
		if err != nil || code != 0 {
			t.Fatalf("expose %d: link across directories: exit %d, %v\n%s", expose, code, err, out.String())
		}
	}
}

// TestPreparedHostUnmount: a mount the sandbox captured stays visible
// inside after the host unmounts its own view in Prepared — how a cell's
// decrypted state reaches only the cell.
func TestPreparedHostUnmount(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755,size=1m"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	if err := os.WriteFile(filepath.Join(dir, "canary"), []byte("only-inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := e.profile(func(p *Profile) { p.Filesystem.ReadOnly = append(p.Filesystem.ReadOnly, dir) })
	exe, _ := os.Executable()
	var out bytes.Buffer
	var hostSaw error
	code, err := Run(context.Background(), Options{Profile: p, Argv: []string{exe, "read-ok", filepath.Join(dir, "canary")},
		Env: []string{probeEnv + "=1"}, Stdout: &out, Stderr: &out, EgressSocket: e.egress,
		Prepared: func() {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("unmounting the host view: %v", err)
			}
			_, hostSaw = os.Stat(filepath.Join(dir, "canary"))
		}})
	if err != nil || code != 0 || !strings.Contains(out.String(), "read:only-inside") {
		t.Fatalf("inside: exit %d, %v\n%s", code, err, out.String())
	}
	if hostSaw == nil {
		t.Fatal("the host still saw the file after unmounting its view")
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func (e *env) eventsOf(typ string) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Event
	for _, ev := range e.events {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

func TestLimits(t *testing.T) {
	e := newEnv(t)
	t.Run("fork bomb held by the pids limit", func(t *testing.T) {
		p := e.profile(func(p *Profile) { p.Limits.Pids = 64 })
		code, out := e.probeT(t, p, "fork-bomb")
		if code != 0 {
			t.Fatalf("fork bomb: exit %d\n%s", code, out)
		}
		if !strings.Contains(out, "started") {
			t.Fatalf("no report from the fork bomb:\n%s", out)
		}
		waitEvent(t, e, func(ev Event) bool { return ev.Type == EventLimit && ev.Limit.Kind == "pids_max" })
	})
	t.Run("memory bomb OOM-killed inside", func(t *testing.T) {
		p := e.profile(func(p *Profile) { p.Limits.Memory = 128 << 20 })
		code, out := e.probeT(t, p, "memory-bomb")
		if code != 128+9 {
			t.Fatalf("memory bomb: exit %d, want 137 (killed)\n%s", code, out)
		}
		waitEvent(t, e, func(ev Event) bool { return ev.Type == EventLimit && ev.Limit.Kind == "oom_kill" })
		// The host is fine: this process can still allocate and run.
		b := make([]byte, 256<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
	})
	t.Run("cpu hog held to its quota", func(t *testing.T) {
		p := e.profile(func(p *Profile) { p.Limits.CPU = 0.2 })
		code, out := e.probeT(t, p, "cpu-hog", "3")
		if code != 0 {
			t.Fatalf("cpu hog: exit %d\n%s", code, out)
		}
		var cpu, wall int64
		if _, err := fmt.Sscanf(strings.TrimSpace(out[strings.Index(out, "cpu="):]), "cpu=%d wall=%d", &cpu, &wall); err != nil {
			t.Fatalf("parsing %q: %v", out, err)
		}
		share := float64(cpu) / float64(wall)
		t.Logf("cpu hog used %.2f cores over %d ms (quota 0.2)", share, wall/1000)
		if share > 0.35 || share < 0.02 {
			t.Fatalf("cpu hog used %.2f cores, want about 0.2", share)
		}
	})
}

func waitEvent(t *testing.T, e *env, match func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for _, ev := range e.events {
			if match(ev) {
				e.mu.Unlock()
				return ev
			}
		}
		e.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	t.Fatalf("no matching event among %d", len(e.events))
	return Event{}
}

// TestExecLog: every one of 1,000 short-lived processes is logged once
// with its argv, and exit events carry exit codes and signals.
func TestExecLog(t *testing.T) {
	e := newEnv(t)
	p := e.profile(nil)
	script := `for i in $(seq 1 1000); do /bin/true arg-$i; done; sh -c 'exit 7'; sh -c 'kill -9 $$'; exit 3`
	code, out := e.run(p, 2*time.Minute, "/bin/sh", "-c", script)
	if code != 3 {
		t.Fatalf("exit %d, want 3 (propagated)\n%s", code, out)
	}
	seen := make(map[string]int)
	var exit7, killed bool
	for _, ev := range e.eventsOf(EventExec) {
		if a := ev.Process.Argv; len(a) == 2 && a[0] == "/bin/true" {
			seen[a[1]]++
		}
	}
	for _, ev := range e.eventsOf(EventProcessExit) {
		pr := ev.Process
		if len(pr.Argv) == 3 && pr.Argv[2] == "exit 7" && pr.ExitCode != nil && *pr.ExitCode == 7 {
			exit7 = true
		}
		if len(pr.Argv) == 3 && strings.Contains(pr.Argv[2], "kill -9") && pr.Signal != "" {
			killed = true
		}
	}
	for i := 1; i <= 1000; i++ {
		if n := seen[fmt.Sprintf("arg-%d", i)]; n != 1 {
			t.Errorf("/bin/true arg-%d logged %d times, want 1", i, n)
			if t.Failed() && i > 20 {
				break
			}
		}
	}
	if !exit7 {
		t.Error("no exit event with code 7 for sh -c 'exit 7'")
	}
	if !killed {
		t.Error("no exit event with a signal for the killed shell")
	}
	if n := len(e.eventsOf(EventStart)); n != 1 {
		t.Errorf("%d sandbox.start events, want 1", n)
	}
}

// TestLifecycle: exit codes propagate, orphans are reaped, ctx stops the
// sandbox, and nothing (cgroups, mounts) is left behind.
func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	p := e.profile(func(p *Profile) { p.Limits.Pids = 32 })
	mountsBefore := countMounts(t)
	if code, out := e.run(p, time.Minute, "/bin/sh", "-c", "exit 42"); code != 42 {
		t.Fatalf("exit %d, want 42\n%s", code, out)
	}
	// An orphan outliving its parent is reaped and killed with the sandbox.
	if code, out := e.run(p, time.Minute, "/bin/sh", "-c", "(sleep 30 &); exit 0"); code != 0 {
		t.Fatalf("orphan: exit %d\n%s", code, out)
	}
	var out bytes.Buffer
	// Cancelling stops the command with SIGTERM.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	code, err := Run(ctx, Options{Profile: p, Argv: []string{"/bin/sleep", "60"}, EgressSocket: e.egress})
	if err != nil {
		t.Fatal(err)
	}
	if code != 128+15 || time.Since(start) > 5*time.Second {
		t.Fatalf("cancelled sandbox: exit %d after %s, want 143 promptly", code, time.Since(start))
	}
	if n := countMounts(t); n != mountsBefore {
		t.Errorf("host mounts: %d before, %d after", mountsBefore, n)
	}
	// Every group this test's sandboxes had is gone, in every hierarchy.
	code, err = Run(context.Background(), Options{ID: "lifecycle-probe", Profile: p, Argv: []string{"/bin/sh", "-c", "cat /proc/self/cgroup"}, EgressSocket: e.egress, Stdout: &out})
	if err != nil || code != 0 {
		t.Fatalf("%d %v", code, err)
	}
	if !strings.Contains(out.String(), "sandbox-lifecycle-probe") {
		t.Fatalf("the sandbox is not in its own cgroup:\n%s", out.String())
	}
	leftovers, _ := filepath.Glob("/sys/fs/cgroup/*/clawhold/sandbox-lifecycle-probe")
	more, _ := filepath.Glob("/sys/fs/cgroup/*/*/*/clawhold/sandbox-lifecycle-probe")
	if len(leftovers)+len(more) > 0 {
		t.Errorf("cgroups left behind: %v %v", leftovers, more)
	}
}

func countMounts(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}
