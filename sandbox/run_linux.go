package sandbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawhold/clawhold/sandbox/cgroup"
	"github.com/clawhold/clawhold/sandbox/execlog"
	"github.com/clawhold/clawhold/sandbox/seccomp"
)

// NobodyID is the host uid and gid that root inside a sandbox maps to when
// clawhold runs as root: a sandbox escape lands on an unprivileged user,
// never on host root. (Not root, clawhold maps its own uid, as bubblewrap
// does.)
const NobodyID = 65534

// StopGrace is how long a stopped sandbox's command has between SIGTERM
// and SIGKILL.
const StopGrace = 10 * time.Second

// Options configure Run.
type Options struct {
	// ID names the sandbox in events and its cgroup (default: random).
	ID string
	// Profile, with its variables expanded (Expand).
	Profile *Profile
	// Argv is the command; Argv[0] is looked up in the sandbox's PATH.
	Argv []string
	// Env entries (KEY=VALUE) override the profile's.
	Env            []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// EgressSocket is the egress proxy's unix socket on the host; required
	// when the profile's network.mode is proxy.
	EgressSocket string
	// ExposeSocket is the unix socket clawhold creates on the host for the
	// profile's network.expose port (mode 0600). Required with expose.
	ExposeSocket string
	// Events receives the sandbox's events (nil: none).
	Events func(Event)
	// UID and GID are the host ids root inside maps to (-1 or 0: NobodyID
	// when clawhold is root, else its own).
	UID, GID int
	// Exe is this binary (default os.Executable); it is re-executed as the
	// sandbox's init.
	Exe string
	// Prepared, when set, is called once the bind sources have been
	// captured as detached mounts, before anything starts: a host mount
	// that only the sandbox should see (a cell's decrypted state) can be
	// unmounted from the host's view then.
	Prepared func()
	Logger   *slog.Logger
}

// Run runs o.Argv in a new sandbox and returns its exit status (128+n for
// signal n). It returns an error, and no status, when the sandbox cannot be
// built. When ctx ends the command gets SIGTERM, then SIGKILL after
// StopGrace.
func Run(ctx context.Context, o Options) (int, error) {
	r, err := prepare(&o)
	if err != nil {
		return -1, err
	}
	defer r.cleanup()
	if o.Prepared != nil {
		o.Prepared()
	}
	return r.run(ctx)
}

type runner struct {
	o       Options
	p       *Profile
	log     *slog.Logger
	emit    func(Event)
	files   []*os.File // closed by cleanup
	cg      *cgroup.Group
	expose  net.Listener
	spec    initSpec
	egress  *os.File // detached mount of the egress proxy's socket
	cleanup func()
}

func prepare(o *Options) (*runner, error) {
	p := o.Profile
	if p == nil {
		return nil, errors.New("sandbox: no profile")
	}
	if len(o.Argv) == 0 || o.Argv[0] == "" {
		return nil, errors.New("sandbox: no command to run")
	}
	if o.ID == "" {
		o.ID = NewID()
	}
	o.UID, o.GID = HostIDs(o.UID, o.GID)
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("sandbox: finding this binary: %w", err)
		}
		o.Exe = exe
	}
	if p.Network.Mode == "proxy" && o.EgressSocket == "" {
		return nil, errors.New("sandbox: network.mode is proxy but no egress proxy socket was given")
	}
	if p.Network.Expose != 0 && o.ExposeSocket == "" {
		return nil, fmt.Errorf("sandbox: network.expose is %d but no socket path to expose it on was given", p.Network.Expose)
	}
	r := &runner{o: *o, p: p, log: o.Logger, emit: o.Events}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.emit == nil {
		r.emit = func(Event) {}
	}
	r.cleanup = func() {
		for _, f := range r.files {
			f.Close()
		}
	}
	if err := r.planMounts(); err != nil {
		r.cleanup()
		return nil, err
	}
	return r, nil
}

// planMounts resolves the profile's filesystem into bind mounts, each made
// here as a detached copy of the source (see detachedMount) that init
// attaches to the new root: init runs as the sandbox's unprivileged host
// uid and needs no access to the path leading to a source.
func (r *runner) planMounts() error {
	fs := r.p.Filesystem
	add := func(source, target string, rw bool) error {
		f, err := detachedMount(source, rw)
		if err != nil {
			return err
		}
		r.files = append(r.files, f)
		r.spec.Mounts = append(r.spec.Mounts, mountSpec{Source: source, Target: target, RW: rw, fd: f})
		return nil
	}
	x := &r.spec.Exec
	var links []mountSpec
	for _, ro := range fs.ReadOnly {
		src, optional := strings.CutSuffix(ro, "?")
		src = filepath.Clean(src)
		// A top-level symlink within the view (/bin -> usr/bin) is
		// recreated, not bound: one mount fewer, same layout as the host.
		if link, err := os.Readlink(src); err == nil && filepath.Dir(src) == "/" && !strings.HasPrefix(link, "/") && !strings.Contains(link, "..") {
			links = append(links, mountSpec{Target: src, Link: link})
			continue
		}
		fi, err := os.Stat(src)
		if err != nil {
			if optional && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("sandbox profile %s: filesystem.read_only %s: %w", r.p.Path, src, err)
		}
		if err := add(src, src, false); err != nil {
			return fmt.Errorf("sandbox: opening %s: %w", src, err)
		}
		if fi.IsDir() {
			x.RODirs = append(x.RODirs, src)
		} else {
			x.ROFiles = append(x.ROFiles, src)
		}
	}
	for _, rw := range fs.ReadWrite {
		src := filepath.Clean(rw)
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("sandbox profile %s: filesystem.read_write %s: %w (create it, owned by uid %d)", r.p.Path, src, err, r.o.UID)
		}
		if !fi.IsDir() {
			return fmt.Errorf("sandbox profile %s: filesystem.read_write %s is not a directory", r.p.Path, src)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != r.o.UID {
			return fmt.Errorf("sandbox: %s is owned by uid %d, but the sandbox runs as uid %d on the host and could not write it: chown -R %d:%d %s",
				src, st.Uid, r.o.UID, r.o.UID, r.o.GID, src)
		}
		if err := add(src, src, true); err != nil {
			return fmt.Errorf("sandbox: opening %s: %w", src, err)
		}
		x.RWDirs = append(x.RWDirs, src)
	}
	for _, e := range fs.Etc {
		src := filepath.Join("/etc", e)
		fi, err := os.Stat(src)
		if err != nil {
			continue // optional by nature: hosts differ
		}
		if err := add(src, src, false); err != nil {
			return fmt.Errorf("sandbox: opening %s: %w", src, err)
		}
		if fi.IsDir() {
			x.RODirs = append(x.RODirs, src)
		} else {
			x.ROFiles = append(x.ROFiles, src)
		}
	}
	// Binds nest in order: a parent directory before what is bound under it.
	sort.SliceStable(r.spec.Mounts, func(a, b int) bool {
		return strings.Count(r.spec.Mounts[a].Target, "/") < strings.Count(r.spec.Mounts[b].Target, "/")
	})
	r.spec.Links = links
	x.RWDirs = append(x.RWDirs, "/tmp", "/dev/shm")
	x.RWFiles = append(x.RWFiles, "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
	x.RODirs = append(x.RODirs, "/proc")
	return nil
}

// env is the command's environment: a minimal base, the proxy settings,
// the profile's env and the caller's.
func (r *runner) env() []string {
	p := r.p
	m := map[string]string{
		"PATH":   "/usr/local/bin:/usr/bin:/bin",
		"HOME":   p.Home,
		"TMPDIR": "/tmp",
		"LANG":   "C.UTF-8",
	}
	if t := os.Getenv("TERM"); t != "" {
		m["TERM"] = t
	}
	if p.Network.Mode == "proxy" {
		u := "http://127.0.0.1:" + strconv.Itoa(p.Network.ProxyPort)
		for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"} {
			m[k] = u
		}
		m["NO_PROXY"], m["no_proxy"] = "localhost,127.0.0.1,::1", "localhost,127.0.0.1,::1"
	}
	for k, v := range p.Env {
		m[k] = v
	}
	for _, kv := range r.o.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

func (r *runner) run(ctx context.Context) (int, error) {
	p, o := r.p, &r.o
	r.spec.TmpSize = int64(p.Filesystem.TmpSize)
	r.spec.Hostname = p.Hostname
	r.spec.Root = "/tmp" // inside init's own mount namespace; sources come from descriptors
	x := &r.spec.Exec
	x.Argv, x.Env, x.Cwd = o.Argv, r.env(), p.Cwd
	x.Landlock = !slices.Contains(p.Degraded, "landlock") || landlockABI() > 0
	x.SeccompAllow = p.Seccomp.Allow
	x.Notify = p.ExecLog
	if err := (seccomp.Filter{Allow: x.SeccompAllow}).Validate(); err != nil {
		return -1, fmt.Errorf("sandbox profile %s: seccomp.allow: %w", p.Path, err)
	}
	var extra []*os.File // fd 3 onwards
	if p.Network.Mode == "proxy" {
		f, err := detachedMount(o.EgressSocket, true)
		if err != nil {
			return -1, fmt.Errorf("sandbox: egress proxy socket: %w", err)
		}
		r.files = append(r.files, f)
		r.spec.ProxyPort = p.Network.ProxyPort
		x.ConnectPorts = append(x.ConnectPorts, uint16(p.Network.ProxyPort))
		x.RWFiles = append(x.RWFiles, egressInside)
		r.egress = f
	}
	if p.Network.Expose != 0 {
		os.Remove(o.ExposeSocket)
		ln, err := net.Listen("unix", o.ExposeSocket)
		if err != nil {
			return -1, fmt.Errorf("sandbox: exposing port %d: %w", p.Network.Expose, err)
		}
		ln.(*net.UnixListener).SetUnlinkOnClose(true)
		r.expose = ln
		if err := os.Chmod(o.ExposeSocket, 0o600); err != nil {
			ln.Close()
			return -1, fmt.Errorf("sandbox: %w", err)
		}
		defer ln.Close()
		r.spec.Expose = p.Network.Expose
		x.ConnectPorts = append(x.ConnectPorts, uint16(p.Network.Expose))
		x.InitOnlyPort = uint16(p.Network.Expose)
	}

	// Pipes and sockets to init.
	specR, specW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("sandbox: %w", err)
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("sandbox: %w", err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("sandbox: %w", err)
	}
	notifyHost, notifyChild := os.NewFile(uintptr(pair[0]), "notify"), os.NewFile(uintptr(pair[1]), "notify-child")
	exe, err := os.Open(o.Exe)
	if err != nil {
		return -1, fmt.Errorf("sandbox: opening %s: %w", o.Exe, err)
	}
	r.files = append(r.files, specR, specW, statusR, statusW, notifyHost, notifyChild, exe)
	var exposeFile *os.File
	if r.expose != nil {
		if exposeFile, err = r.expose.(*net.UnixListener).File(); err != nil {
			return -1, fmt.Errorf("sandbox: %w", err)
		}
		r.files = append(r.files, exposeFile)
	} else {
		exposeFile = specR // a placeholder to keep the numbering; init ignores it
	}
	extra = append(extra, specR, statusW, notifyChild, exe, exposeFile)
	for i := range r.spec.Mounts {
		r.spec.Mounts[i].Source = fdPath(len(extra) + 3)
		extra = append(extra, r.spec.Mounts[i].fd)
	}
	if r.egress != nil {
		r.spec.EgressSocket = fdPath(len(extra) + 3)
		extra = append(extra, r.egress)
	}

	limits := cgroup.Limits{CPU: p.Limits.CPU, Memory: int64(p.Limits.Memory), Pids: int64(p.Limits.Pids)}
	if limits != (cgroup.Limits{}) && !slices.Contains(p.Degraded, "cgroups") {
		if n, err := cgroup.Sweep("clawhold", "sandbox-", time.Minute); n > 0 || err != nil {
			r.log.Info("sandbox: removed stale cgroups of killed sandboxes", "count", n, "err", err)
		}
		cg, err := cgroup.New(ctx, "clawhold/sandbox-"+o.ID, limits)
		if err != nil {
			return -1, fmt.Errorf("sandbox: %w", err)
		}
		r.cg = cg
		defer func() {
			if err := cg.Delete(); err != nil {
				r.log.Warn("sandbox: removing cgroup", "sandbox", o.ID, "err", err)
			}
		}()
	}

	cmd := &exec.Cmd{
		// Through the descriptor: the sandbox's uid may not be able to
		// reach the binary by its path.
		Path:       fdPath(fdExe),
		Args:       []string{initArg0},
		Env:        []string{},
		Stdin:      o.Stdin,
		Stdout:     o.Stdout,
		Stderr:     o.Stderr,
		ExtraFiles: extra,
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET |
				unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
			UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: o.UID, Size: 1}},
			GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: o.GID, Size: 1}},
			GidMappingsEnableSetgroups: false,
			// Become root of the new namespace, i.e. o.UID on the host: the
			// mapping alone leaves the child the (unmapped) caller's uid.
			Credential: &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
			Pdeathsig:  syscall.SIGKILL, // the sandbox dies with clawhold
		},
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("sandbox: starting init (user, mount, pid, net, ipc and uts namespaces; run `clawhold sandbox check`): %w", err)
	}
	start := time.Now()
	// Init waits for its spec: it is in the cgroup before anything runs.
	if r.cg != nil {
		if err := r.cg.Add(cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return -1, fmt.Errorf("sandbox: %w", err)
		}
	}
	specR.Close()
	statusW.Close()
	notifyChild.Close()
	err = json.NewEncoder(specW).Encode(r.spec)
	specW.Close()
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return -1, fmt.Errorf("sandbox: sending the spec: %w", err)
	}
	r.emit(Event{Time: start, Type: EventStart, Sandbox: o.ID, Profile: p.Path, Argv: o.Argv})

	var wg sync.WaitGroup
	bg, stopBG := context.WithCancel(context.Background())
	defer func() { stopBG(); wg.Wait() }()
	if r.cg != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ev := range r.cg.Events(bg) {
				ev := ev
				r.emit(Event{Time: ev.Time, Type: EventLimit, Sandbox: o.ID, Limit: &ev})
			}
		}()
	}
	execDone := make(chan struct{})
	if p.ExecLog {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(execDone)
			r.serveExecLog(bg, notifyHost)
		}()
	} else {
		close(execDone)
	}
	var setupErr string
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		sc := bufio.NewScanner(statusR)
		for sc.Scan() {
			var s status
			if json.Unmarshal(sc.Bytes(), &s) == nil && s.Error != "" {
				setupErr = s.Error
			}
		}
	}()
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waitDone:
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case werr = <-waitDone:
		case <-time.After(StopGrace):
			cmd.Process.Kill()
			werr = <-waitDone
		}
	}
	<-statusDone
	// The exec log ends by itself once no process uses the filter, after
	// the proc connector has delivered their exits; bounded, in case.
	select {
	case <-execDone:
	case <-time.After(2 * time.Second):
	}
	stopBG() // the last limit hits and exits are reported before sandbox.exit
	wg.Wait()
	code := cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	if setupErr != "" {
		return -1, fmt.Errorf("sandbox: %s", setupErr)
	}
	if werr != nil && code < 0 {
		return -1, fmt.Errorf("sandbox: waiting for init: %w", werr)
	}
	r.emit(Event{Time: time.Now(), Type: EventExit, Sandbox: o.ID, Profile: p.Path, ExitCode: &code,
		Detail: "ran " + time.Since(start).Round(time.Millisecond).String()})
	return code, nil
}

// serveExecLog receives the seccomp notification fd from the exec stage
// and logs every execve through it.
func (r *runner) serveExecLog(ctx context.Context, sock *os.File) {
	c, err := net.FileConn(sock)
	if err != nil {
		r.log.Warn("sandbox: exec log socket", "err", err)
		return
	}
	defer c.Close()
	nfd, err := seccomp.RecvFD(c.(*net.UnixConn))
	if err != nil {
		if !errors.Is(err, io.EOF) {
			r.log.Warn("sandbox: receiving the exec log descriptor", "err", err)
		}
		return
	}
	defer nfd.Close()
	l := execlog.New(func(e execlog.Event) {
		e.Sandbox = r.o.ID
		typ := EventExec
		if e.Kind == "exit" {
			typ = EventProcessExit
		}
		r.emit(Event{Time: e.Time, Type: typ, Sandbox: r.o.ID, Process: &e})
	})
	if err := l.Serve(ctx, nfd); err != nil && ctx.Err() == nil {
		r.log.Warn("sandbox: exec log", "err", err)
	}
}

// NewID returns a random sandbox name.
func NewID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// HostIDs returns the host uid and gid that root inside a sandbox maps to,
// given the requested ones (0 or less: the default, see NobodyID).
func HostIDs(uid, gid int) (int, int) {
	if uid <= 0 {
		uid = os.Getuid()
		if uid == 0 {
			uid = NobodyID
		}
	}
	if gid <= 0 {
		gid = os.Getgid()
		if gid == 0 || uid == NobodyID {
			gid = NobodyID
		}
	}
	return uid, gid
}

// detachedMount returns a detached, recursive copy of the mount tree at
// path (open_tree OPEN_TREE_CLONE), already nosuid and nodev, and read-only
// unless rw: init only has to move it into place (move_mount), from
// another mount namespace, as runc does with its mount descriptors.
func detachedMount(path string, rw bool) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return nil, fmt.Errorf("sandbox: cloning the mount of %s: %w", path, err)
	}
	set := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if !rw {
		set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: set}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("sandbox: restricting the mount of %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// landlockABI returns the host's Landlock ABI version, 0 without Landlock.
func landlockABI() int {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, 1 /* LANDLOCK_CREATE_RULESET_VERSION */)
	if errno != 0 {
		return 0
	}
	return int(v)
}
