package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// initMain is PID 1 of the sandbox. It builds the root, starts the relays,
// confines itself and starts the command, reaps every orphan, forwards
// signals to the command and exits with its status. Setup errors go to the
// host on fdStatus and exit 125.
func initMain() {
	st := os.NewFile(fdStatus, "status")
	fail := func(err error) {
		writeStatus(st, status{Error: err.Error()})
		os.Exit(125)
	}
	var spec initSpec
	if err := readSpec(fdSpec, &spec); err != nil {
		fail(fmt.Errorf("init: %w", err))
	}
	unix.Close(fdExe) // this binary: already running
	if err := buildRoot(&spec); err != nil {
		fail(fmt.Errorf("init: %w", err))
	}
	// The bind sources are descriptors of host directories: none may
	// outlive the mounts made from them.
	n := len(spec.Mounts)
	if spec.EgressSocket != "" {
		n++
	}
	if err := unix.CloseRange(fdMounts, uint(fdMounts+n-1), 0); n > 0 && err != nil {
		fail(fmt.Errorf("init: closing the mount sources: %w", err))
	}
	// Anything above is a descriptor the host leaked (a library opened it
	// without O_CLOEXEC): it must not reach the command. Marked rather
	// than closed, as the runtime's own descriptors may sit among them.
	if err := unix.CloseRange(uint(fdMounts+n), math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		fail(fmt.Errorf("init: marking inherited descriptors close-on-exec: %w", err))
	}
	if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
		fail(fmt.Errorf("init: hostname: %w", err))
	}
	if err := loopbackUp(); err != nil {
		fail(fmt.Errorf("init: %w", err))
	}
	ctx := context.Background()
	if spec.ProxyPort != 0 {
		ln, err := listenTCP(ctx, "127.0.0.1:"+strconv.Itoa(spec.ProxyPort))
		if err != nil {
			fail(fmt.Errorf("init: proxy forwarder: %w", err))
		}
		go relay(ctx, ln, "unix", egressInside)
	}
	if spec.Expose != 0 {
		f := os.NewFile(fdExpose, "expose")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			fail(fmt.Errorf("init: expose listener: %w", err))
		}
		go relay(ctx, ln, "tcp", "127.0.0.1:"+strconv.Itoa(spec.Expose))
	}

	// Signals for the command; SIGCHLD to reap.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)

	pid, err := startCommand(&spec.Exec)
	if err != nil {
		fail(fmt.Errorf("init: %w", err))
	}
	st.Close()
	code := reap(pid, sigs)
	// Whatever the command left behind dies with the sandbox.
	unix.Kill(-1, unix.SIGKILL)
	os.Exit(code)
}

// startCommand confines init itself (the command inherits every layer;
// init needs no privilege once the root is built) and starts the command
// from the same OS thread.
func startCommand(spec *execSpec) (int, error) {
	runtime.LockOSThread() // never unlocked: the thread's credentials are the command's
	notify := os.NewFile(fdNotify, "notify")
	defer notify.Close()
	path, err := lookPath(spec.Argv[0], spec.Env)
	if err != nil {
		return 0, err
	}
	if err := confine(spec, notify); err != nil {
		return 0, err
	}
	unix.Umask(0o022) // clawhold's own 077 is not the command's business
	proc, err := os.StartProcess(path, spec.Argv, &os.ProcAttr{
		Dir:   spec.Cwd,
		Env:   spec.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
		Sys: &syscall.SysProcAttr{
			Setsid:    true, // no controlling terminal: no TIOCSTI into the host's
			Pdeathsig: syscall.SIGKILL,
		},
	})
	if err != nil {
		return 0, fmt.Errorf("starting %s: %w", path, err)
	}
	return proc.Pid, nil
}

// reap waits for main, reaping every other child on the way, and returns
// main's exit status in the shell's convention (128+signal).
func reap(main int, sigs <-chan os.Signal) int {
	for sig := range sigs {
		if sig != unix.SIGCHLD {
			unix.Kill(main, sig.(syscall.Signal))
			continue
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			if pid == main {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
	}
	return 125
}

// buildRoot mounts a tmpfs on spec.Root, binds what the profile lists into
// it, adds /tmp, /dev and /proc, and makes it the root.
func buildRoot(spec *initSpec) error {
	// Nothing done here may reach the host's mount table.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	root := spec.Root
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=4m"); err != nil {
		return fmt.Errorf("mounting the root tmpfs on %s: %w", root, err)
	}
	in := func(p string) string { return filepath.Join(root, p) }
	// /tmp first: declared directories under /tmp are bound into it.
	if err := mkdirMount("tmpfs", in("/tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("mode=1777,size=%d", spec.TmpSize)); err != nil {
		return err
	}
	for _, m := range append(spec.Mounts, spec.Links...) {
		if err := bind(root, m); err != nil {
			return err
		}
	}
	if err := buildDev(root); err != nil {
		return err
	}
	if err := mkdirMount("proc", in("/proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	// Kernel interfaces a sandbox has no business writing to.
	for _, p := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"} {
		if _, err := os.Stat(in(p)); err != nil {
			continue
		}
		if err := unix.Mount(in(p), in(p), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("binding %s: %w", p, err)
		}
		if err := readOnly(in(p), false); err != nil {
			return fmt.Errorf("%s read-only: %w", p, err)
		}
	}
	if spec.EgressSocket != "" {
		if err := bind(root, mountSpec{Source: spec.EgressSocket, Target: egressInside, RW: true}); err != nil {
			return err
		}
	}
	// pivot_root(".", ".") stacks the old root on the new one; detaching it
	// leaves only the new root (as runc does).
	if err := unix.Chdir(root); err != nil {
		return fmt.Errorf("chdir %s: %w", root, err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	// The root itself holds only mount points: nothing may be added to it.
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("root read-only: %w", err)
	}
	return nil
}

// bind mounts m.Source at m.Target under root, read-only unless m.RW,
// never with setuid programs or (but for device nodes) devices.
func bind(root string, m mountSpec) error {
	target := filepath.Join(root, m.Target)
	if m.Link != "" {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return fmt.Errorf("link %s: %w", m.Target, err)
		}
		if err := os.Symlink(m.Link, target); err != nil {
			return fmt.Errorf("link %s: %w", m.Target, err)
		}
		return nil
	}
	fi, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("bind %s: %w", m.Source, err)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("bind %s: %w", m.Target, err)
	}
	if fi.IsDir() {
		err = os.Mkdir(target, 0o755)
	} else {
		var f *os.File
		f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.Close()
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("bind %s: creating the mount point: %w", m.Target, err)
	}
	if fd, ok := strings.CutPrefix(m.Source, "/proc/self/fd/"); ok {
		// A detached mount the host prepared, flags and all.
		n, _ := strconv.Atoi(fd)
		if err := unix.MoveMount(n, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("attaching %s on %s: %w", m.Source, m.Target, err)
		}
		return nil
	}
	if err := unix.Mount(m.Source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", m.Source, m.Target, err)
	}
	if m.RW {
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID}
		if !m.Dev {
			attr.Attr_set |= unix.MOUNT_ATTR_NODEV
		}
		if err := unix.MountSetattr(-1, target, unix.AT_RECURSIVE, attr); err != nil {
			return fmt.Errorf("bind %s: nosuid,nodev: %w", m.Target, err)
		}
		return nil
	}
	if err := readOnly(target, m.Dev); err != nil {
		return fmt.Errorf("bind %s read-only: %w", m.Target, err)
	}
	return nil
}

// readOnly makes the mount at target and every mount below it read-only
// (and nosuid; nodev unless dev).
func readOnly(target string, dev bool) error {
	set := uint64(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID)
	if !dev {
		set |= unix.MOUNT_ATTR_NODEV
	}
	return unix.MountSetattr(-1, target, unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: set})
}

func mkdirMount(source, target, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", target, err)
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

// buildDev makes a minimal /dev: the harmless character devices bound from
// the host, the standard links and a private /dev/shm.
func buildDev(root string) error {
	dev := filepath.Join(root, "dev")
	if err := mkdirMount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return err
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if _, err := os.Stat("/dev/" + d); err != nil {
			continue
		}
		if err := bind(root, mountSpec{Source: "/dev/" + d, Target: "/dev/" + d, RW: true, Dev: true}); err != nil {
			return err
		}
	}
	for link, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, link)); err != nil {
			return fmt.Errorf("/dev/%s: %w", link, err)
		}
	}
	if err := mkdirMount("tmpfs", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=64m"); err != nil {
		return err
	}
	return unix.MountSetattr(-1, dev, 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
}

// loopbackUp brings lo up in the new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}
