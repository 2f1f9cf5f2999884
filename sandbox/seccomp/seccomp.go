//go:build linux

// Package seccomp builds and installs the sandbox's seccomp filter: a deny
// list of system calls an agent never needs, plus optional user notification
// of execve and execveat so the supervisor can log every process started
// inside the sandbox (see package sandbox/execlog).
//
// The filter is a deny list rather than an allow list on purpose: agents run
// arbitrary toolchains (compilers, interpreters, package managers), and an
// allow list that breaks them gets switched off. What is denied here is the
// kernel attack surface and the escape hatches (namespaces, mounts, module
// loading, tracing, raw packets) that the other layers rely on being closed.
package seccomp

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	seccompbpf "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Filter describes the seccomp filter for one sandbox.
type Filter struct {
	// Allow lists syscall names to remove from the deny list (a profile
	// override, e.g. "ptrace" for a debugger). Each must name an entry of
	// DenyList.
	Allow []string
	// Notify makes execve and execveat raise a user notification, answered by
	// the supervisor holding the notification fd returned by Install.
	Notify bool
}

// rule kinds: most rules deny a syscall outright; a few look at arguments.
const (
	denyAll         = iota
	denyCloneNS     // clone with any CLONE_NEW* flag
	denySocketRaw   // AF_PACKET, and raw/packet sockets of AF_INET/AF_INET6
	denyPersonality // any persona other than the harmless ones Docker allows
)

// rule is one row of the deny table.
type rule struct {
	name  string
	errno unix.Errno
	kind  int
	why   string
}

// denyTable is the documented deny list. Everything not listed is allowed.
// EPERM is what the calls return without the privilege, so software already
// handles it; clone3 gets ENOSYS instead because its flags live in memory
// that BPF cannot inspect, and ENOSYS makes glibc (and Go) fall back to
// clone, whose flags we can check — Docker's default profile does the same.
var denyTable = []rule{
	// Mounts and root changes: the sandbox's view of the filesystem is fixed
	// by the supervisor and must stay that way.
	{"mount", unix.EPERM, denyAll, "change the mount table"},
	{"umount2", unix.EPERM, denyAll, "unmount, e.g. uncover masked paths"},
	{"pivot_root", unix.EPERM, denyAll, "change the root"},
	{"chroot", unix.EPERM, denyAll, "change the root"},
	{"move_mount", unix.EPERM, denyAll, "new mount API"},
	{"open_tree", unix.EPERM, denyAll, "new mount API"},
	{"fsopen", unix.EPERM, denyAll, "new mount API"},
	{"fsconfig", unix.EPERM, denyAll, "new mount API"},
	{"fsmount", unix.EPERM, denyAll, "new mount API"},
	{"fspick", unix.EPERM, denyAll, "new mount API"},
	{"mount_setattr", unix.EPERM, denyAll, "e.g. clear read-only on a bind mount"},

	// Namespaces: a nested user namespace gives back every capability and
	// reopens the kernel surface the rest of this table closes.
	{"unshare", unix.EPERM, denyAll, "new namespaces"},
	{"setns", unix.EPERM, denyAll, "enter other namespaces"},
	{"clone", unix.EPERM, denyCloneNS, "new namespaces (CLONE_NEW* flags only)"},
	{"clone3", unix.ENOSYS, denyAll, "flags are in memory; ENOSYS makes libc fall back to clone"},

	// Looking into and controlling other processes.
	{"ptrace", unix.EPERM, denyAll, "trace other processes, e.g. the gateway"},
	{"process_vm_readv", unix.EPERM, denyAll, "read other processes' memory"},
	{"process_vm_writev", unix.EPERM, denyAll, "write other processes' memory"},

	// Kernel code and kernel attack surface.
	{"kexec_load", unix.EPERM, denyAll, "load a new kernel"},
	{"kexec_file_load", unix.EPERM, denyAll, "load a new kernel"},
	{"init_module", unix.EPERM, denyAll, "load kernel modules"},
	{"finit_module", unix.EPERM, denyAll, "load kernel modules"},
	{"delete_module", unix.EPERM, denyAll, "unload kernel modules"},
	{"bpf", unix.EPERM, denyAll, "eBPF programs and maps"},
	{"perf_event_open", unix.EPERM, denyAll, "perf events: side channels, kernel bugs"},
	{"keyctl", unix.EPERM, denyAll, "kernel keyrings are not namespaced"},
	{"add_key", unix.EPERM, denyAll, "kernel keyrings are not namespaced"},
	{"request_key", unix.EPERM, denyAll, "kernel keyrings are not namespaced"},
	{"open_by_handle_at", unix.EPERM, denyAll, "open files outside the root by handle (the shocker escape)"},
	{"name_to_handle_at", unix.EPERM, denyAll, "pairs with open_by_handle_at"},
	{"userfaultfd", unix.EPERM, denyAll, "stalls kernel code at will; exploit primitive"},
	{"io_uring_setup", unix.EPERM, denyAll, "io_uring bypasses seccomp for the ops it runs"},
	{"io_uring_enter", unix.EPERM, denyAll, "io_uring"},
	{"io_uring_register", unix.EPERM, denyAll, "io_uring"},

	// Raw network access would sidestep the egress proxy.
	{"socket", unix.EPERM, denySocketRaw, "AF_PACKET, and SOCK_RAW/SOCK_PACKET of AF_INET/AF_INET6"},

	// Host-wide state.
	{"acct", unix.EPERM, denyAll, "process accounting"},
	{"swapon", unix.EPERM, denyAll, "swap"},
	{"swapoff", unix.EPERM, denyAll, "swap"},
	{"reboot", unix.EPERM, denyAll, "reboot"},
	{"settimeofday", unix.EPERM, denyAll, "system clock"},
	{"clock_settime", unix.EPERM, denyAll, "system clock"},
	{"clock_adjtime", unix.EPERM, denyAll, "system clock"},
	{"adjtimex", unix.EPERM, denyAll, "system clock"},
	{"syslog", unix.EPERM, denyAll, "kernel log: addresses, other tenants' messages"},
	{"iopl", unix.EPERM, denyAll, "I/O port access"},
	{"ioperm", unix.EPERM, denyAll, "I/O port access"},
	{"quotactl", unix.EPERM, denyAll, "disk quotas"},
	{"fanotify_init", unix.EPERM, denyAll, "watch or block other processes' file access"},
	{"personality", unix.EPERM, denyPersonality, "personas other than Linux/Linux32/UNAME26 (e.g. READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE)"},
	{"lookup_dcookie", unix.EPERM, denyAll, "obsolete profiling interface"},
	{"uselib", unix.EPERM, denyAll, "obsolete a.out loader"},
	{"vhangup", unix.EPERM, denyAll, "hang up the terminal"},
	{"nfsservctl", unix.EPERM, denyAll, "removed from Linux 3.1"},
}

// notifySyscalls are the calls forwarded to the supervisor when Notify is set.
var notifySyscalls = []string{"execve", "execveat"}

// Personas allowed by personality(2), as in Docker's default profile:
// PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and the query value.
var allowedPersonas = []uint64{0x0, 0x8, 0x20000, 0x20008, 0xffffffff}

// cloneNSFlags are the clone flags that create namespaces. CLONE_NEWTIME is
// left out: for clone(2) its bit (0x80) is part of the exit signal, and a
// time namespace can only be made with clone3 or unshare, both denied.
const cloneNSFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// DenyList returns the names of the syscalls the filter restricts, in table
// order. Some (clone, socket, personality) are restricted only for certain
// arguments.
func DenyList() []string {
	names := make([]string, len(denyTable))
	for i, r := range denyTable {
		names[i] = r.name
	}
	return names
}

// Validate reports whether every name in f.Allow is on the deny list.
func (f Filter) Validate() error {
	var errs []error
	for _, name := range f.Allow {
		if !slices.ContainsFunc(denyTable, func(r rule) bool { return r.name == name }) {
			errs = append(errs, fmt.Errorf("seccomp: allow %q: not on the deny list", name))
		}
	}
	if f.Notify && slices.ContainsFunc(f.Allow, func(n string) bool { return slices.Contains(notifySyscalls, n) }) {
		errs = append(errs, errors.New("seccomp: execve/execveat cannot be allowed and notified"))
	}
	return errors.Join(errs...)
}

// Offsets in struct seccomp_data (little-endian: the low half of each
// argument comes first).
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // low 32 bits of args[0]
	offArg1 = 24 // low 32 bits of args[1]
)

func retErrno(e unix.Errno) bpf.RetConstant {
	return bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(e)}
}

// assemble builds the BPF program for f.
//
// Layout: our own architecture check (go-seccomp-bpf's check falls through
// to the default action, which for a deny list is ALLOW, so a foreign ABI
// such as i386 via int 0x80 would skip the whole list), then the socket
// check written by hand, then the groups assembled by go-seccomp-bpf.
func (f Filter) assemble() ([]bpf.Instruction, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("seccomp: %w", err)
	}
	nr := func(name string) (uint32, error) {
		n, ok := info.SyscallNames[name]
		if !ok {
			return 0, fmt.Errorf("seccomp: syscall %q unknown on %s", name, info.Name)
		}
		return uint32(n), nil
	}

	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
	}
	if info.ID == arch.X86_64.ID {
		// x32 shares AUDIT_ARCH_X86_64 but sets bit 30 of the number.
		prog = append(prog,
			bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: uint32(arch.X32.SeccompMask), SkipFalse: 1},
			bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS})
	}

	eperm := seccompbpf.SyscallGroup{Action: seccompbpf.ActionErrno | seccompbpf.Action(unix.EPERM)}
	enosys := seccompbpf.SyscallGroup{Action: seccompbpf.ActionErrno | seccompbpf.Action(unix.ENOSYS)}
	for _, r := range denyTable {
		if slices.Contains(f.Allow, r.name) {
			continue
		}
		g := &eperm
		if r.errno == unix.ENOSYS {
			g = &enosys
		}
		switch r.kind {
		case denyAll:
			g.Names = append(g.Names, r.name)
		case denyCloneNS:
			// flags is args[0] on every arch but s390x; BitsSet on a
			// 32-bit mask only tests the low word, which is what the
			// kernel reads.
			g.NamesWithCondtions = append(g.NamesWithCondtions, seccompbpf.NameWithConditions{
				Name: r.name,
				Conditions: seccompbpf.ArgumentConditions{
					{Argument: 0, Operation: seccompbpf.BitsSet, Value: cloneNSFlags},
				},
			})
		case denyPersonality:
			// Deny unless equal to an allowed persona. The 64-bit compare
			// fails closed: garbage in the high word is denied.
			var conds seccompbpf.ArgumentConditions
			for _, v := range allowedPersonas {
				conds = append(conds, seccompbpf.Condition{Argument: 0, Operation: seccompbpf.NotEqual, Value: v})
			}
			g.NamesWithCondtions = append(g.NamesWithCondtions, seccompbpf.NameWithConditions{Name: r.name, Conditions: conds})
		case denySocketRaw:
			n, err := nr(r.name)
			if err != nil {
				return nil, err
			}
			prog = append(prog, socketCheck(n, r.errno)...)
		}
	}
	policy := seccompbpf.Policy{DefaultAction: seccompbpf.ActionAllow}
	for _, g := range []seccompbpf.SyscallGroup{eperm, enosys} {
		if len(g.Names)+len(g.NamesWithCondtions) > 0 {
			policy.Syscalls = append(policy.Syscalls, g)
		}
	}
	if f.Notify {
		policy.Syscalls = append(policy.Syscalls, seccompbpf.SyscallGroup{
			Names:  notifySyscalls,
			Action: seccompbpf.ActionUserNotify,
		})
	}
	if len(policy.Syscalls) == 0 {
		// Everything allowed and nothing notified: the library insists on
		// a group, so give it one that matches a real but harmless call.
		policy.Syscalls = append(policy.Syscalls, seccompbpf.SyscallGroup{Names: []string{"getpid"}, Action: seccompbpf.ActionAllow})
	}
	body, err := policy.Assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble: %w", err)
	}
	return append(prog, body...), nil
}

// socketCheck is written by hand because go-seccomp-bpf compares all 64 bits
// of an argument while the kernel reads domain and type as 32-bit ints: an
// Equal(AF_PACKET) condition would miss 0x1_0000_0011. It expects the
// syscall number in A and leaves it there when the call is not socket.
func socketCheck(nr uint32, errno unix.Errno) []bpf.Instruction {
	return []bpf.Instruction{
		/* 0 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipFalse: 10},
		/* 1 */ bpf.LoadAbsolute{Off: offArg0, Size: 4},
		/* 2 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_PACKET, SkipTrue: 6},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET, SkipTrue: 1},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AF_INET6, SkipFalse: 5},
		/* 5 */ bpf.LoadAbsolute{Off: offArg1, Size: 4},
		// SOCK_NONBLOCK and SOCK_CLOEXEC share the type argument.
		/* 6 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SOCK_RAW, SkipTrue: 1},
		// The kernel turns socket(AF_INET, SOCK_PACKET) into AF_PACKET.
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SOCK_PACKET, SkipFalse: 1},
		/* 9 */ retErrno(errno),
		/* 10 */ bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
	}
}

// Describe returns the deny table as "name: errno (why)" lines, for docs.
func Describe() string {
	var b strings.Builder
	for _, r := range denyTable {
		fmt.Fprintf(&b, "%-18s %-6s %s\n", r.name, unix.ErrnoName(r.errno), r.why)
	}
	return b.String()
}
