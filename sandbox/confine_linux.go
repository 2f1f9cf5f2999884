package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/clawhold/clawhold/sandbox/seccomp"
)

// confine gives up every privilege and confines the calling process with
// Landlock and seccomp, all of which its children inherit, and hands the
// seccomp notification fd to the host over notify. The caller must hold
// its OS thread (runtime.LockOSThread) from here to starting the command:
// capabilities, securebits and no_new_privs belong to the thread, and the
// command is forked from it.
func confine(spec *execSpec, notify *os.File) error {
	if err := dropPrivileges(); err != nil {
		return err
	}
	if spec.Landlock {
		if err := landlockSelf(spec); err != nil {
			return fmt.Errorf("landlock: %w", err)
		}
		if spec.InitOnlyPort != 0 {
			if err := landlockThreadNet(spec); err != nil {
				return fmt.Errorf("landlock: %w", err)
			}
		}
	}
	nfd, err := seccomp.Install(seccomp.Filter{Allow: spec.SeccompAllow, Notify: spec.Notify})
	if err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	if nfd == nil {
		return nil
	}
	defer nfd.Close()
	c, err := net.FileConn(notify)
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	defer c.Close()
	if err := seccomp.SendFD(c.(*net.UnixConn), nfd); err != nil {
		return fmt.Errorf("sending the notification fd: %w", err)
	}
	return nil
}

// dropPrivileges leaves the process, which is root of its user namespace,
// with no capabilities now or after execve: securebits stop root from
// regaining them, the bounding and ambient sets are emptied, and
// no_new_privs stops setuid and file capabilities.
func dropPrivileges() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	// linux/securebits.h: NOROOT, NO_SETUID_FIXUP, KEEP_CAPS (off) and
	// NO_CAP_AMBIENT_RAISE, each with its lock bit.
	const (
		noRoot, noRootLocked             = 1 << 0, 1 << 1
		noSetuidFixup, noSetuidFixupLock = 1 << 2, 1 << 3
		keepCapsLocked                   = 1 << 5
		noAmbientRaise, noAmbientLocked  = 1 << 6, 1 << 7
	)
	bits := noRoot | noRootLocked | noSetuidFixup | noSetuidFixupLock | keepCapsLocked | noAmbientRaise | noAmbientLocked
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits), 0, 0, 0); err != nil {
		return fmt.Errorf("securebits: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	// Landlock and seccomp need only no_new_privs, so the effective,
	// permitted and inheritable sets can go now.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clearing capabilities: %w", err)
	}
	return nil
}

// landlockSelf applies the same filesystem view as the mounts, as an
// independent second layer, plus TCP connect only to the listed ports and
// no signals or abstract sockets out of the sandbox's domain.
func landlockSelf(spec *execSpec) error {
	cfg, err := landlock.NewConfig(landlock.V7.HandledAccessFS, landlock.AccessNetSet(llsys.AccessNetConnectTCP), landlock.V7.Scoped)
	if err != nil {
		return err
	}
	rules := []landlock.Rule{
		landlock.RODirs(spec.RODirs...).IgnoreIfMissing(),
		landlock.RWDirs(spec.RWDirs...).WithRefer(), // links and renames across directories (OpenClaw publishes files by hard link)
		landlock.ROFiles(spec.ROFiles...).IgnoreIfMissing(),
		landlock.RWFiles(spec.RWFiles...).WithIoctlDev().IgnoreIfMissing(),
	}
	for _, p := range spec.ConnectPorts {
		rules = append(rules, landlock.ConnectTCP(p))
	}
	return cfg.BestEffort().Restrict(rules...)
}

// landlockThreadNet adds a Landlock layer to the calling thread only —
// the one the command is forked from — that drops TCP connect to
// InitOnlyPort. Init's other threads keep the outer layer and can still
// relay to the exposed port; the command, and every process it starts,
// cannot reach it, so none of them can speak to the gateway with forged
// identity headers.
func landlockThreadNet(spec *execSpec) error {
	abi, err := llsys.LandlockGetABIVersion()
	if err != nil || abi < 4 {
		// Fail closed: without it the exposed port's identity headers
		// could be forged from inside.
		return fmt.Errorf("keeping the command off the exposed port %d needs Landlock TCP rules (ABI 4, Linux 6.7); this kernel has ABI %d", spec.InitOnlyPort, abi)
	}
	// A layer denies REFER (links and renames across directories) unless
	// it grants it, even when it does not handle it: so this layer handles
	// REFER and grants it where the outer layer does.
	fd, err := llsys.LandlockCreateRuleset(&llsys.RulesetAttr{
		HandledAccessFS: llsys.AccessFSRefer, HandledAccessNet: llsys.AccessNetConnectTCP}, 0)
	if err != nil {
		return fmt.Errorf("creating the command's network ruleset: %w", err)
	}
	defer unix.Close(fd)
	for _, dir := range spec.RWDirs {
		d, err := unix.Open(dir, unix.O_PATH|unix.O_CLOEXEC|unix.O_DIRECTORY, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", dir, err)
		}
		err = llsys.LandlockAddPathBeneathRule(fd, &llsys.PathBeneathAttr{AllowedAccess: llsys.AccessFSRefer, ParentFd: d}, 0)
		unix.Close(d)
		if err != nil {
			return fmt.Errorf("allowing links and renames under %s: %w", dir, err)
		}
	}
	for _, p := range spec.ConnectPorts {
		if p == spec.InitOnlyPort {
			continue
		}
		if err := llsys.LandlockAddNetPortRule(fd, &llsys.NetPortAttr{AllowedAccess: llsys.AccessNetConnectTCP, Port: uint64(p)}, 0); err != nil {
			return fmt.Errorf("allowing port %d: %w", p, err)
		}
	}
	// The raw syscall, not the library's all-threads variant: only this
	// thread (and so only the command) is restricted.
	if err := llsys.LandlockRestrictSelf(fd, 0); err != nil {
		return fmt.Errorf("restricting the command's thread: %w", err)
	}
	return nil
}

// lookPath finds file in the PATH of env (the sandbox's, not ours).
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in the sandbox's PATH (%s)", file, path)
}
