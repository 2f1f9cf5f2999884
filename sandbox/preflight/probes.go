package preflight

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawhold/clawhold/sandbox/cgroup"
)

// sysctls that decide whether unprivileged user namespaces work.
const (
	sysctlAppArmorUserNS = "kernel.apparmor_restrict_unprivileged_userns" // Ubuntu 23.10+
	sysctlUserNSClone    = "kernel.unprivileged_userns_clone"             // Debian, older kernels
	sysctlMaxUserNS      = "user.max_user_namespaces"
)

func readSysctls() map[string]string {
	m := map[string]string{}
	for _, k := range []string{sysctlAppArmorUserNS, sysctlUserNSClone, sysctlMaxUserNS} {
		b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
		if err == nil {
			m[k] = strings.TrimSpace(string(b))
		}
	}
	return m
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// trueBinary is a plain executable to start in new namespaces.
// /proc/self/exe is not used: the calling binary may be large, or a test.
func trueBinary() string {
	for _, p := range []string{"/bin/true", "/usr/bin/true"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("true"); err == nil {
		return p
	}
	return "/bin/true"
}

// probeTimeout bounds each process a probe starts.
const probeTimeout = 5 * time.Second

// runIn starts true with the clone flags, mapping the caller to root in a
// new user namespace when CLONE_NEWUSER is among them.
func runIn(ctx context.Context, flags uintptr) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, trueBinary())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags}
	if flags&syscall.CLONE_NEWUSER != 0 {
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if s := strings.TrimSpace(stderr.String()); s != "" {
			return fmt.Errorf("%w: %s", err, s)
		}
		return err
	}
	return nil
}

var namespaces = []struct {
	layer Layer
	flag  uintptr
	name  string
}{
	{MountNS, syscall.CLONE_NEWNS, "mount"},
	{PidNS, syscall.CLONE_NEWPID, "pid"},
	{NetNS, syscall.CLONE_NEWNET, "network"},
	{IPCNS, syscall.CLONE_NEWIPC, "ipc"},
	{UTSNS, syscall.CLONE_NEWUTS, "uts"},
	{CgroupNS, syscall.CLONE_NEWCGROUP, "cgroup"},
}

// checkNamespaces probes the user namespace and then each other namespace:
// alone when root, inside a new user namespace otherwise (as an
// unprivileged sandbox would create them).
func checkNamespaces(ctx context.Context, r *Report) []Result {
	userErr := runIn(ctx, syscall.CLONE_NEWUSER)
	user := Result{Layer: UserNS, OK: userErr == nil}
	unpriv := r.unprivilegedUserNS(ctx)
	switch {
	case userErr == nil && r.Root && unpriv != "":
		user.Detail = "available to root; " + unpriv
	case userErr == nil:
		user.Detail = "uid " + strconv.Itoa(os.Getuid()) + " mapped to 0 in a new user namespace"
	default:
		user.Detail = "clone(CLONE_NEWUSER): " + errText(userErr)
		user.Fix = r.userNSFix()
	}
	out := []Result{user}
	for _, ns := range namespaces {
		flags := ns.flag
		how := "unshared as root"
		if !r.Root {
			flags |= syscall.CLONE_NEWUSER
			how = "unshared inside a user namespace"
		}
		err := runIn(ctx, flags)
		res := Result{Layer: ns.layer, OK: err == nil, Detail: how}
		if err != nil {
			res.Detail = fmt.Sprintf("clone(%s namespace): %s", ns.name, errText(err))
			switch {
			case !r.Root && userErr != nil:
				res.Fix = "needs a user namespace first: " + r.userNSFix()
			case errors.Is(err, syscall.EINVAL) && ns.layer != MountNS:
				res.Fix = fmt.Sprintf("kernel lacks %s namespaces: rebuild or install a kernel with CONFIG_%s_NS=y", ns.name, nsConfig(ns.layer))
			default:
				res.Fix = "blocked by a seccomp profile or LSM (running in a container? allow unshare/clone, e.g. docker run --security-opt seccomp=unconfined, or run on the host)"
			}
		}
		if _, err := os.Stat("/proc/self/ns/" + nsFile(ns.layer)); err != nil && res.OK {
			res.Detail += " (no /proc/self/ns entry)"
		}
		out = append(out, res)
	}
	return out
}

func nsConfig(l Layer) string {
	return map[Layer]string{PidNS: "PID", NetNS: "NET", IPCNS: "IPC", UTSNS: "UTS", CgroupNS: "CGROUP"}[l]
}

func nsFile(l Layer) string {
	return map[Layer]string{MountNS: "mnt", PidNS: "pid", NetNS: "net", IPCNS: "ipc", UTSNS: "uts", CgroupNS: "cgroup"}[l]
}

// unprivilegedUserNS says, when probing as root, whether an ordinary user
// could create a user namespace too: root is exempt from the restrictions
// that usually break rootless sandboxes. Empty when it cannot tell.
func (r *Report) unprivilegedUserNS(ctx context.Context) string {
	if !r.Root {
		return ""
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return r.userNSSysctlNote()
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "--user", "--map-root-user", trueBinary())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		s := "unprivileged users (uid 65534) cannot: " + oneLine(string(out))
		if note := r.userNSSysctlNote(); note != "" {
			s += "; " + note
		}
		return s + "; to fix for them: " + r.userNSFix()
	}
	return "unprivileged users can create them too"
}

// userNSSysctlNote names the sysctls that restrict user namespaces.
func (r *Report) userNSSysctlNote() string {
	var notes []string
	if r.Sysctls[sysctlAppArmorUserNS] == "1" {
		notes = append(notes, sysctlAppArmorUserNS+"=1")
	}
	if r.Sysctls[sysctlUserNSClone] == "0" {
		notes = append(notes, sysctlUserNSClone+"=0")
	}
	if r.Sysctls[sysctlMaxUserNS] == "0" {
		notes = append(notes, sysctlMaxUserNS+"=0")
	}
	return strings.Join(notes, ", ")
}

// userNSFix names the concrete cause found in the sysctls.
func (r *Report) userNSFix() string {
	var fixes []string
	if r.Sysctls[sysctlAppArmorUserNS] == "1" {
		fixes = append(fixes, "AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+/24.04): "+
			"sysctl -w "+sysctlAppArmorUserNS+"=0 (persist in /etc/sysctl.d/60-clawhold.conf), "+
			"or install an AppArmor profile for clawhold granting \"userns,\" in /etc/apparmor.d/")
	}
	if r.Sysctls[sysctlUserNSClone] == "0" {
		fixes = append(fixes, "sysctl -w "+sysctlUserNSClone+"=1 (Debian kernels before 6.x disable them)")
	}
	if r.Sysctls[sysctlMaxUserNS] == "0" {
		fixes = append(fixes, "sysctl -w "+sysctlMaxUserNS+"=15000 (it is 0, which disables user namespaces)")
	}
	if _, err := os.Stat("/proc/self/ns/user"); errors.Is(err, fs.ErrNotExist) {
		fixes = append(fixes, "kernel built without CONFIG_USER_NS=y: install a kernel with user namespaces")
	}
	if len(fixes) == 0 {
		return "user namespaces are blocked by a seccomp profile or LSM (in a container? run with --security-opt seccomp=unconfined " +
			"or on the host), or run clawhold as root"
	}
	return strings.Join(fixes, "; ")
}

func errText(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return "probe exited with " + ee.ProcessState.String()
	}
	return err.Error()
}

// checkCgroups reports the mode and controllers, and creates and deletes a
// real cgroup to prove the caller may.
// checkCgroups reports the cgroup mode and controllers; with create it
// also proves this process can create a group.
func checkCgroups(ctx context.Context, r *Report, create bool) []Result {
	r.CgroupMode = cgroup.DetectMode()
	r.CgroupHybrid = cgroup.IsHybrid()
	res := Result{Layer: Cgroups}
	var ctrls []string
	var ctrlErr error
	switch r.CgroupMode {
	case cgroup.V1:
		var m map[string]string
		m, ctrlErr = cgroup.V1Controllers()
		for _, c := range []string{"cpu", "cpuacct", "memory", "pids", "freezer"} {
			if _, ok := m[c]; ok {
				ctrls = append(ctrls, c)
			}
		}
	case cgroup.V2:
		_, _, ctrls, ctrlErr = cgroup.V2Root()
	default:
		res.Detail = "no cgroup filesystem under /sys/fs/cgroup"
		res.Fix = "mount cgroup2: mount -t cgroup2 none /sys/fs/cgroup (or boot with systemd, which mounts it)"
		return []Result{res, ctlMissing(CPUCtl, "cpu", r), ctlMissing(MemoryCtl, "memory", r), ctlMissing(PidsCtl, "pids", r)}
	}
	res.Detail = fmt.Sprintf("cgroup %s: %s", r.cgroupLabel(), strings.Join(ctrls, " "))
	if ctrlErr != nil {
		res.Detail += " (" + ctrlErr.Error() + ")"
	}
	// The real test: can this process create a group for a sandbox?
	var err error
	if create {
		name := fmt.Sprintf("clawhold-preflight-%d", os.Getpid())
		var g *cgroup.Group
		if g, err = cgroup.New(ctx, name, cgroup.Limits{}); err == nil {
			err = g.Delete()
		}
	}
	if err != nil {
		msg, _, _ := strings.Cut(err.Error(), "; fix:") // the fix goes in its own column
		res.Detail += "; creating a cgroup failed: " + msg
		switch {
		case errors.Is(err, syscall.EBUSY):
			// v2 "no internal processes": our cgroup holds us.
			res.Fix = "clawhold's own cgroup holds processes, so v2 cannot delegate controllers from it: " +
				"run clawhold in a cgroup subtree it owns (systemd-run -p Delegate=yes, or a service with Delegate=yes) " +
				"and let it move itself into a leaf (cgroup.Config.SelfLeaf)"
		case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
			res.Fix = cgroup.PermissionFix(r.CgroupMode)
		default:
			res.Fix = "see the error; check that /sys/fs/cgroup is mounted read-write"
		}
	} else {
		res.OK = true
	}
	out := []Result{res}
	for _, c := range []struct {
		layer Layer
		name  string
	}{{CPUCtl, "cpu"}, {MemoryCtl, "memory"}, {PidsCtl, "pids"}} {
		if !contains(ctrls, c.name) {
			out = append(out, ctlMissing(c.layer, c.name, r))
			continue
		}
		x := Result{Layer: c.layer, OK: res.OK, Detail: c.name + " controller (" + r.CgroupMode.String() + ")"}
		if c.name == "memory" && r.CgroupMode == cgroup.V1 {
			if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
				x.Detail += ", swap accounted"
			} else {
				x.Detail += ", swap NOT accounted (boot with swapaccount=1 so swap cannot extend the limit)"
			}
		}
		if !res.OK {
			x.Fix = "see " + string(Cgroups) + ": cannot create cgroups"
		}
		out = append(out, x)
	}
	return out
}

func ctlMissing(l Layer, name string, r *Report) Result {
	fix := "enable the " + name + " controller"
	switch r.CgroupMode {
	case cgroup.V1:
		fix = fmt.Sprintf("mount it: mkdir -p /sys/fs/cgroup/%s && mount -t cgroup -o %s cgroup /sys/fs/cgroup/%s", name, name, name)
	case cgroup.V2:
		fix = fmt.Sprintf("enable it for your cgroup: as root, echo +%s > the parent's cgroup.subtree_control, or use systemd delegation (Delegate=yes)", name)
	}
	return Result{Layer: l, Detail: name + " controller not available", Fix: fix}
}

// checkLandlock asks the kernel for its Landlock ABI version.
func checkLandlock(r *Report) Result {
	abi, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	res := Result{Layer: Landlock}
	lsm := "unknown (securityfs not mounted)"
	if b, err := os.ReadFile("/sys/kernel/security/lsm"); err == nil {
		lsm = strings.TrimSpace(string(b))
	}
	switch errno {
	case 0:
		r.LandlockABI = int(abi)
		res.OK = true
		res.Detail = fmt.Sprintf("Landlock ABI %d", abi)
		if abi < 4 {
			res.Detail += " (no TCP port rules before ABI 4, Linux 6.7)"
		}
	case unix.EOPNOTSUPP:
		res.Detail = "compiled in but not enabled; active LSMs: " + lsm
		res.Fix = "add landlock to the lsm= boot parameter (e.g. lsm=landlock,lockdown,yama,integrity,apparmor), update-grub and reboot"
	case unix.ENOSYS:
		res.Detail = "landlock_create_ruleset: not implemented (kernel " + r.Kernel + ")"
		res.Fix = "use Linux 5.13+ built with CONFIG_SECURITY_LANDLOCK=y and landlock in lsm= (or a seccomp profile in a container blocks it)"
	default:
		res.Detail = "landlock_create_ruleset: " + errno.Error()
		res.Fix = "unexpected error; check dmesg and the container's seccomp profile"
	}
	return res
}

// checkSeccomp reads the available filter actions and the current mode.
func checkSeccomp() []Result {
	sec := Result{Layer: Seccomp}
	notify := Result{Layer: SeccompNotify}
	mode, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0)
	if err != nil {
		sec.Detail = "prctl(PR_GET_SECCOMP): " + err.Error()
		sec.Fix = "use a kernel built with CONFIG_SECCOMP=y and CONFIG_SECCOMP_FILTER=y"
		notify.Detail = "no seccomp"
		notify.Fix = sec.Fix
		return []Result{sec, notify}
	}
	b, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	actions := strings.Fields(string(b))
	switch {
	case err != nil:
		// actions_avail appeared in 4.14; filters predate it.
		sec.OK = true
		sec.Detail = "seccomp available (actions_avail unreadable: " + err.Error() + ")"
	default:
		sec.OK = contains(actions, "errno")
		sec.Detail = "filter actions: " + strings.Join(actions, " ")
		if !sec.OK {
			sec.Fix = "kernel lacks SECCOMP_RET_ERRNO; use a kernel built with CONFIG_SECCOMP_FILTER=y"
		}
	}
	if mode == 2 {
		sec.Detail += "; this process is already filtered (in a container?), new filters stack on top"
	}
	notify.OK = contains(actions, "user_notif")
	if notify.OK {
		notify.Detail = "SECCOMP_RET_USER_NOTIF available"
	} else {
		notify.Detail = "user_notif not in actions_avail"
		notify.Fix = "needs Linux 5.0+ (5.9+ for SECCOMP_IOCTL_NOTIF_ADDFD); upgrade the kernel"
	}
	return []Result{sec, notify}
}

// checkNoNewPrivs reads the flag, which proves prctl knows it, without
// setting it: PR_SET_NO_NEW_PRIVS is irreversible for this process.
func checkNoNewPrivs() Result {
	v, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	if err != nil {
		return Result{Layer: NoNewPrivs, Detail: "prctl(PR_GET_NO_NEW_PRIVS): " + err.Error(), Fix: "needs Linux 3.5+"}
	}
	return Result{Layer: NoNewPrivs, OK: true, Detail: fmt.Sprintf("PR_SET_NO_NEW_PRIVS supported (set on this process: %v)", v == 1)}
}

// checkFanotify opens and closes a fanotify group. Permission events
// (FAN_CLASS_CONTENT) are what the sandbox uses to gate file access.
func checkFanotify() Result {
	res := Result{Layer: Fanotify}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_CLOEXEC)
	if err == nil {
		unix.Close(fd)
		res.OK = true
		res.Detail = "fanotify_init(FAN_CLASS_CONTENT) ok: permission events available"
		return res
	}
	res.Detail = "fanotify_init(FAN_CLASS_CONTENT): " + err.Error()
	switch {
	case errors.Is(err, unix.EPERM):
		res.Fix = "needs CAP_SYS_ADMIN: run clawhold as root (unprivileged fanotify, Linux 5.13+, has no permission events)"
	case errors.Is(err, unix.ENOSYS):
		res.Fix = "kernel built without CONFIG_FANOTIFY=y"
	case errors.Is(err, unix.EINVAL):
		res.Fix = "kernel built without CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y"
	default:
		res.Fix = "blocked by a seccomp profile or LSM (in a container?)"
	}
	return res
}
