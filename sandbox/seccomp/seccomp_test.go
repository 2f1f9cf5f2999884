//go:build linux

package seccomp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The tests re-exec the test binary: Install is irreversible and applies to
// the whole process, so it must run in a child.
const (
	envChild  = "CLAWHOLD_SECCOMP_TEST_CHILD"  // "probe" or "x32"
	envFilter = "CLAWHOLD_SECCOMP_TEST_FILTER" // JSON Filter, or "none"
)

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
		os.Exit(m.Run())
	case "probe":
		os.Exit(childProbe())
	case "x32":
		os.Exit(childX32())
	default:
		fmt.Fprintln(os.Stderr, "unknown child mode")
		os.Exit(2)
	}
}

func childInstall() error {
	spec := os.Getenv(envFilter)
	if spec == "none" {
		return nil
	}
	var f Filter
	if err := json.Unmarshal([]byte(spec), &f); err != nil {
		return err
	}
	notify, err := Install(f)
	if notify != nil {
		notify.Close()
	}
	return err
}

// childProbe installs the filter and reports, as JSON, the errno each probe
// got ("" for success).
func childProbe() int {
	if err := childInstall(); err != nil {
		fmt.Fprintln(os.Stderr, "install:", err)
		return 3
	}
	res := make(map[string]string)
	for _, p := range probes() {
		err := p.fn()
		var errno unix.Errno
		switch {
		case err == nil:
			res[p.name] = ""
		case errors.As(err, &errno):
			res[p.name] = unix.ErrnoName(errno)
		default:
			res[p.name] = err.Error()
		}
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// childX32 makes a syscall through the x32 ABI, which must kill the process.
func childX32() int {
	if err := childInstall(); err != nil {
		fmt.Fprintln(os.Stderr, "install:", err)
		return 3
	}
	unix.RawSyscall(unix.SYS_GETPID|uintptr(arch.X32.SeccompMask), 0, 0, 0)
	return 0 // not reached when the filter works
}

type probe struct {
	name   string // deny-table entry it exercises, or "ok:…" for allowed work
	denied string // errno expected under the default filter: EPERM, ENOSYS, or "" (must succeed)
	fn     func() error
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func sys(nr uintptr, a ...uintptr) func() error {
	return func() error {
		var args [6]uintptr
		copy(args[:], a)
		r, _, e := unix.Syscall6(nr, args[0], args[1], args[2], args[3], args[4], args[5])
		if e == 0 && (nr == unix.SYS_SOCKET || nr == unix.SYS_USERFAULTFD || nr == unix.SYS_FANOTIFY_INIT) {
			unix.Close(int(r))
		}
		return errnoErr(e)
	}
}

func cstr(s string) uintptr {
	p, err := unix.BytePtrFromString(s)
	if err != nil {
		panic(err)
	}
	return uintptr(unsafe.Pointer(p))
}

// probes use arguments that are harmless without the filter too (missing
// paths, bad fds, bad magic), so a broken filter cannot hurt the host.
func probes() []probe {
	const missing = "/nonexistent/clawhold-seccomp-test"
	var word, dst uint64 = 42, 0
	local := []unix.Iovec{{Base: (*byte)(unsafe.Pointer(&dst)), Len: 8}}
	remote := []unix.RemoteIovec{{Base: uintptr(unsafe.Pointer(&word)), Len: 8}}
	var timex unix.Timex
	ts := unix.Timespec{}
	return []probe{
		{"mount", "EPERM", func() error { return unix.Mount("none", missing, "tmpfs", 0, "") }},
		{"umount2", "EPERM", func() error { return unix.Unmount(missing, 0) }},
		{"pivot_root", "EPERM", func() error { return unix.PivotRoot(missing, missing) }},
		{"chroot", "EPERM", func() error { return unix.Chroot(missing) }},
		{"move_mount", "EPERM", sys(unix.SYS_MOVE_MOUNT, ^uintptr(0), 0, ^uintptr(0), 0, 0)},
		{"open_tree", "EPERM", sys(unix.SYS_OPEN_TREE, ^uintptr(0), 0, 0)},
		{"fsopen", "EPERM", sys(unix.SYS_FSOPEN, 0, 0)},
		{"fsconfig", "EPERM", sys(unix.SYS_FSCONFIG, ^uintptr(0), 0, 0, 0, 0)},
		{"fsmount", "EPERM", sys(unix.SYS_FSMOUNT, ^uintptr(0), 0, 0)},
		{"fspick", "EPERM", sys(unix.SYS_FSPICK, ^uintptr(0), 0, 0)},
		{"mount_setattr", "EPERM", sys(unix.SYS_MOUNT_SETATTR, ^uintptr(0), 0, 0, 0, 0)},
		{"unshare", "EPERM", sys(unix.SYS_UNSHARE, unix.CLONE_NEWUTS)},
		{"setns", "EPERM", sys(unix.SYS_SETNS, ^uintptr(0), 0)},
		{"clone", "EPERM", func() error { return forkExecTrue(unix.CLONE_NEWUTS) }},
		{"clone3", "ENOSYS", sys(unix.SYS_CLONE3, 0, 0)},
		{"ptrace", "EPERM", sys(unix.SYS_PTRACE, unix.PTRACE_PEEKUSR, 1, 0, 0)},
		{"process_vm_readv", "EPERM", func() error {
			_, err := unix.ProcessVMReadv(os.Getpid(), local, remote, 0)
			return err
		}},
		{"process_vm_writev", "EPERM", func() error {
			_, err := unix.ProcessVMWritev(os.Getpid(), local, remote, 0)
			return err
		}},
		{"kexec_load", "EPERM", sys(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0xffffffff)},
		{"kexec_file_load", "EPERM", sys(unix.SYS_KEXEC_FILE_LOAD, ^uintptr(0), ^uintptr(0), 0, 0, 0xffff)},
		{"init_module", "EPERM", sys(unix.SYS_INIT_MODULE, 0, 0, 0)},
		{"finit_module", "EPERM", sys(unix.SYS_FINIT_MODULE, ^uintptr(0), 0, 0)},
		{"delete_module", "EPERM", sys(unix.SYS_DELETE_MODULE, cstr("clawhold_nonexistent"), unix.O_NONBLOCK)},
		{"bpf", "EPERM", sys(unix.SYS_BPF, 9999, 0, 0)},
		{"perf_event_open", "EPERM", sys(unix.SYS_PERF_EVENT_OPEN, 0, 0, ^uintptr(0), ^uintptr(0), 0)},
		{"keyctl", "EPERM", sys(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(unix.KEY_SPEC_THREAD_KEYRING&0xffffffff), 0)},
		{"add_key", "EPERM", sys(unix.SYS_ADD_KEY, cstr("clawhold_nonexistent_type"), cstr("x"), 0, 0, uintptr(unix.KEY_SPEC_THREAD_KEYRING&0xffffffff))},
		{"request_key", "EPERM", sys(unix.SYS_REQUEST_KEY, cstr("user"), cstr("clawhold-nonexistent"), 0, 0)},
		{"open_by_handle_at", "EPERM", sys(unix.SYS_OPEN_BY_HANDLE_AT, ^uintptr(0), 0, 0)},
		{"name_to_handle_at", "EPERM", sys(unix.SYS_NAME_TO_HANDLE_AT, ^uintptr(0), 0, 0, 0, 0)},
		{"userfaultfd", "EPERM", sys(unix.SYS_USERFAULTFD, unix.O_CLOEXEC)},
		{"io_uring_setup", "EPERM", sys(unix.SYS_IO_URING_SETUP, 0, 0)},
		{"io_uring_enter", "EPERM", sys(unix.SYS_IO_URING_ENTER, ^uintptr(0), 0, 0, 0, 0, 0)},
		{"io_uring_register", "EPERM", sys(unix.SYS_IO_URING_REGISTER, ^uintptr(0), 0, 0, 0)},
		{"socket", "EPERM", sys(unix.SYS_SOCKET, unix.AF_PACKET, unix.SOCK_RAW, 0)},
		{"socket:inet-raw-cloexec", "EPERM", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)},
		{"socket:inet6-raw-nonblock", "EPERM", sys(unix.SYS_SOCKET, unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_NONBLOCK, unix.IPPROTO_ICMPV6)},
		{"socket:inet-packet", "EPERM", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_PACKET, 0x300)},
		// The kernel reads domain as an int: garbage in the high word must
		// not smuggle AF_PACKET past the filter.
		{"socket:packet-highbits", "EPERM", sys(unix.SYS_SOCKET, 1<<32|unix.AF_PACKET, unix.SOCK_DGRAM, 0)},
		{"acct", "EPERM", sys(unix.SYS_ACCT, cstr(missing))},
		{"swapon", "EPERM", sys(unix.SYS_SWAPON, cstr(missing), 0)},
		{"swapoff", "EPERM", sys(unix.SYS_SWAPOFF, cstr(missing))},
		{"reboot", "EPERM", sys(unix.SYS_REBOOT, 0, 0, 0, 0)}, // bad magic
		{"settimeofday", "EPERM", sys(unix.SYS_SETTIMEOFDAY, 0, 0)},
		{"clock_settime", "EPERM", sys(unix.SYS_CLOCK_SETTIME, unix.CLOCK_MONOTONIC, uintptr(unsafe.Pointer(&ts)))},
		{"clock_adjtime", "EPERM", sys(unix.SYS_CLOCK_ADJTIME, unix.CLOCK_REALTIME, uintptr(unsafe.Pointer(&timex)))},
		{"adjtimex", "EPERM", sys(unix.SYS_ADJTIMEX, uintptr(unsafe.Pointer(&timex)))},
		{"syslog", "EPERM", sys(unix.SYS_SYSLOG, unix.SYSLOG_ACTION_SIZE_BUFFER, 0, 0)},
		{"iopl", "EPERM", sys(unix.SYS_IOPL, 0)},
		{"ioperm", "EPERM", sys(unix.SYS_IOPERM, 0, 0, 0)},
		{"quotactl", "EPERM", sys(unix.SYS_QUOTACTL, 0, 0, 0, 0)},
		{"fanotify_init", "EPERM", sys(unix.SYS_FANOTIFY_INIT, 0, 0)},
		{"personality", "EPERM", func() error {
			r, _, e := unix.Syscall(unix.SYS_PERSONALITY, 0x0040000 /* ADDR_NO_RANDOMIZE */, 0, 0)
			if e == 0 {
				unix.Syscall(unix.SYS_PERSONALITY, r, 0, 0) // restore
			}
			return errnoErr(e)
		}},
		{"lookup_dcookie", "EPERM", sys(unix.SYS_LOOKUP_DCOOKIE, 0, 0, 0)},
		{"uselib", "EPERM", sys(unix.SYS_USELIB, cstr(missing))},
		{"vhangup", "EPERM", sys(unix.SYS_VHANGUP)}, // the child has no controlling tty
		{"nfsservctl", "EPERM", sys(unix.SYS_NFSSERVCTL, 0, 0, 0)},

		// Ordinary work an agent does must keep working.
		{"ok:fork-exec-sh", "", func() error { return exec.Command("/bin/sh", "-c", "exit 0").Run() }},
		{"ok:clone-plain", "", func() error { return forkExecTrue(0) }},
		{"ok:files", "", func() error {
			p := filepath.Join(os.TempDir(), fmt.Sprintf("clawhold-seccomp-%d", os.Getpid()))
			defer os.Remove(p)
			if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
				return err
			}
			_, err := os.ReadFile(p)
			return err
		}},
		{"ok:tcp", "", func() error {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			defer ln.Close()
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			return c.Close()
		}},
		{"ok:udp", "", sys(unix.SYS_SOCKET, unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)},
		{"ok:unix", "", func() error {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err == nil {
				unix.Close(fds[0])
				unix.Close(fds[1])
			}
			return err
		}},
		{"ok:netlink-route", "", sys(unix.SYS_SOCKET, unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)},
		{"ok:personality-query", "", sys(unix.SYS_PERSONALITY, 0xffffffff)},
	}
}

// forkExecTrue runs /bin/true with the given clone flags through Go's raw
// clone path (Go uses clone3 only for cgroup fds and time namespaces).
func forkExecTrue(cloneflags uintptr) error {
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{
		Sys: &syscall.SysProcAttr{Cloneflags: cloneflags},
	})
	if err != nil {
		return err
	}
	var ws syscall.WaitStatus
	_, err = syscall.Wait4(pid, &ws, 0, nil)
	return err
}

// requirePriv skips (or, under CI, fails) when not root.
func requirePriv(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root (CAP_SYS_ADMIN, CAP_NET_RAW): " + why
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// runChild re-execs the test binary in the given mode, with a timeout so a
// broken filter cannot hang the test run.
func runChild(t *testing.T, mode string, f *Filter) (stdout []byte, state *os.ProcessState, err error) {
	t.Helper()
	spec := "none"
	if f != nil {
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		spec = string(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envFilter+"="+spec)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if errb.Len() > 0 {
		t.Logf("child stderr: %s", errb.String())
	}
	return out.Bytes(), cmd.ProcessState, err
}

func probeResults(t *testing.T, f *Filter) map[string]string {
	t.Helper()
	out, _, err := runChild(t, "probe", f)
	if err != nil {
		t.Fatalf("probe child: %v", err)
	}
	res := make(map[string]string)
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("probe child output %q: %v", out, err)
	}
	return res
}

func TestDeniedSyscalls(t *testing.T) {
	res := probeResults(t, &Filter{})
	for _, p := range probes() {
		t.Run(p.name, func(t *testing.T) {
			got, ok := res[p.name]
			if !ok {
				t.Fatal("no result from child")
			}
			if got != p.denied {
				t.Errorf("got %q, want %q", got, p.denied)
			}
		})
	}
	// Every table entry has a probe.
	for _, name := range DenyList() {
		if !slices.ContainsFunc(probes(), func(p probe) bool { return p.name == name }) {
			t.Errorf("deny-list entry %q has no probe", name)
		}
	}
}

// TestProbesWithoutFilter checks that the probes' EPERMs come from the
// filter: as root, with no filter, none of them gets EPERM (or ENOSYS for
// clone3).
func TestProbesWithoutFilter(t *testing.T) {
	requirePriv(t, "baseline: the probes must not fail with EPERM on their own")
	res := probeResults(t, nil)
	for _, p := range probes() {
		t.Run(p.name, func(t *testing.T) {
			got := res[p.name]
			if p.denied != "" && got == p.denied {
				t.Errorf("without the filter the probe already fails with %s; it proves nothing", got)
			}
		})
	}
}

func TestAllowOverride(t *testing.T) {
	tests := []struct {
		allow []string
		probe string
		priv  bool // the kernel itself refuses the probe without privilege
	}{
		{[]string{"ptrace"}, "ptrace", false},
		{[]string{"personality"}, "personality", false},
		{[]string{"clone3"}, "clone3", false},
		{[]string{"socket"}, "socket:inet-packet", true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.allow, ","), func(t *testing.T) {
			if tt.priv {
				requirePriv(t, "packet sockets need CAP_NET_RAW even when the filter allows them")
			}
			res := probeResults(t, &Filter{Allow: tt.allow})
			if got := res[tt.probe]; got == "EPERM" || got == "ENOSYS" && tt.probe == "clone3" {
				t.Errorf("%s with Allow %v: got %s, want it let through", tt.probe, tt.allow, got)
			}
			// The rest of the list still applies.
			if got := res["mount"]; got != "EPERM" {
				t.Errorf("mount: got %q, want EPERM", got)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		f       Filter
		wantErr string
	}{
		{Filter{}, ""},
		{Filter{Allow: []string{"ptrace", "bpf"}, Notify: true}, ""},
		{Filter{Allow: []string{"ptrace", "ptrac"}}, `"ptrac"`},
		{Filter{Allow: []string{"read"}}, `"read"`},
		{Filter{Allow: []string{"execve"}, Notify: true}, `"execve"`},
	}
	for _, tt := range tests {
		err := tt.f.Validate()
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tt.f, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("%+v: error %v, want one naming %s", tt.f, err, tt.wantErr)
		}
		// Install must refuse invalid filters before touching the process;
		// valid ones are installed only in children.
		if tt.wantErr != "" {
			if _, err := Install(tt.f); err == nil {
				t.Errorf("%+v: Install accepted an invalid filter", tt.f)
			}
		}
	}
}

// TestArchCheck asserts the program opens with a check that kills the
// process on any other audit arch (i386 via int 0x80 cannot be driven from
// Go easily) and on the x32 ABI; the x32 case is also executed.
func TestArchCheck(t *testing.T) {
	insns, err := Filter{Notify: true}.assemble()
	if err != nil {
		t.Fatal(err)
	}
	info, err := arch.GetInfo("")
	if err != nil {
		t.Fatal(err)
	}
	kill := bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS}
	want := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		kill,
		bpf.LoadAbsolute{Off: 0, Size: 4},
	}
	if info.ID == arch.X86_64.ID {
		want = append(want, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: 0x40000000, SkipFalse: 1}, kill)
	}
	for i, w := range want {
		if insns[i] != w {
			t.Errorf("instruction %d = %v, want %v", i, insns[i], w)
		}
	}
	if _, err := bpf.Assemble(insns); err != nil {
		t.Fatalf("program does not assemble: %v", err)
	}

	if info.ID != arch.X86_64.ID {
		return
	}
	t.Run("x32-killed", func(t *testing.T) {
		_, state, err := runChild(t, "x32", &Filter{})
		if err == nil {
			t.Fatal("child survived an x32 syscall")
		}
		ws, ok := state.Sys().(syscall.WaitStatus)
		if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
			t.Fatalf("child ended with %v, want killed by SIGSYS", state)
		}
	})
}

func TestSendRecvFD(t *testing.T) {
	a, b := socketpair(t)
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := SendFD(a, f); err != nil {
		t.Fatal(err)
	}
	g, err := RecvFD(b)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var st1, st2 unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st1); err != nil {
		t.Fatal(err)
	}
	rc, _ := g.SyscallConn()
	rc.Control(func(fd uintptr) { err = unix.Fstat(int(fd), &st2) })
	if err != nil {
		t.Fatal(err)
	}
	if st1.Ino != st2.Ino || st1.Dev != st2.Dev {
		t.Error("received fd is not the file sent")
	}
	flags, _ := unix.FcntlInt(g.Fd(), unix.F_GETFD, 0)
	if flags&unix.FD_CLOEXEC == 0 {
		t.Error("received fd is not close-on-exec")
	}
	// A message without an fd is an error, not a hang or a bogus file.
	a.Write([]byte("x"))
	if _, err := RecvFD(b); err == nil {
		t.Error("RecvFD accepted a message without an fd")
	}
}

func socketpair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

func TestDenyListDocumented(t *testing.T) {
	d := Describe()
	for _, name := range DenyList() {
		if !strings.Contains(d, name) {
			t.Errorf("Describe misses %q", name)
		}
	}
}
