package config

import (
	"fmt"
	"math"
	"path"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// SandboxProfile is one sandbox profile file (docs/sandbox.md): what a
// command run by `clawhold sandbox run` may see, use and reach.
type SandboxProfile struct {
	// Path is the file the profile was read from ("builtin:NAME" for the
	// built-in ones); not a key.
	Path string `yaml:"-"`

	Description string `yaml:"description"`
	// Degraded names host layers the profile may run without (see
	// `clawhold sandbox check`); every other layer it uses is required.
	Degraded   []string          `yaml:"degraded"`
	Filesystem SandboxFilesystem `yaml:"filesystem"`
	Limits     SandboxLimits     `yaml:"limits"`
	Network    SandboxNetwork    `yaml:"network"`
	Seccomp    SandboxSeccomp    `yaml:"seccomp"`
	// ExecLog logs every execve inside the sandbox (default true).
	ExecLog bool `yaml:"exec_log"`
	// Env is added to the command's environment, which otherwise holds only
	// PATH, HOME, TMPDIR and the proxy variables.
	Env      map[string]string `yaml:"env"`
	Hostname string            `yaml:"hostname"`
	// Cwd is the command's working directory inside (default /).
	Cwd string `yaml:"cwd"`
	// Home is $HOME inside (default /tmp).
	Home string `yaml:"home"`
}

// SandboxFilesystem lists what the sandbox's otherwise empty root holds.
// Paths may use ${NAME} variables given by `sandbox run --var NAME=VALUE`.
type SandboxFilesystem struct {
	// ReadOnly host paths, bound read-only at the same place. A listed
	// path that does not exist on this host is skipped when it ends in "?"
	// (for /lib64 and the like), and is an error otherwise.
	ReadOnly []string `yaml:"read_only"`
	// ReadWrite host directories (state, workspace), bound read-write.
	ReadWrite []string `yaml:"read_write"`
	// Etc names the entries of /etc exposed read-only. Secrets of the host
	// (shadow, gshadow, sudoers, ssh, …) are refused.
	Etc []string `yaml:"etc"`
	// TmpSize caps the private tmpfs at /tmp (default 256MiB).
	TmpSize ByteSize `yaml:"tmp_size"`
}

// SandboxLimits are the sandbox's cgroup limits; 0 is no limit.
type SandboxLimits struct {
	CPU    float64  `yaml:"cpu"`    // cores, e.g. 0.5
	Memory ByteSize `yaml:"memory"` // swap cannot extend it
	Pids   int      `yaml:"pids"`
}

// SandboxNetwork configures the sandbox's own network namespace, which has
// loopback only.
type SandboxNetwork struct {
	// Mode is "proxy" (default: a forwarder on 127.0.0.1:proxy_port relays
	// to the egress proxy, and HTTP(S)_PROXY point at it) or "none".
	Mode      string `yaml:"mode"`
	ProxyPort int    `yaml:"proxy_port"` // default 3128
	// Expose is a port inside that the host reaches through a unix socket
	// clawhold owns (the OpenClaw gateway's); 0: none.
	Expose int `yaml:"expose"`
	// Policy is the egress policy clawhold serves the sandbox with when it
	// starts the proxy itself (default "default").
	Policy string `yaml:"policy"`
}

// SandboxSeccomp adjusts the syscall filter.
type SandboxSeccomp struct {
	// Allow removes syscalls from the deny list (e.g. "ptrace" for a
	// debugger profile).
	Allow []string `yaml:"allow"`
}

// DegradableLayers are the host layers (as named by `clawhold sandbox
// check`) a profile may list under degraded. The namespaces, seccomp and
// no_new_privs are the sandbox itself and cannot be left out.
var DegradableLayers = []string{"cgroups", "cgroup_cpu", "cgroup_memory", "cgroup_pids", "landlock", "seccomp_notify"}

// refusedEtc are /etc entries no profile may expose: the host's password
// hashes, privilege rules and SSH keys.
var refusedEtc = []string{"shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "ssh", "security/opasswd", "ssl/private", "credstore", "credstore.encrypted"}

// DefaultSandboxProfile returns the defaults every profile starts from.
func DefaultSandboxProfile() SandboxProfile {
	return SandboxProfile{
		ExecLog:    true,
		Filesystem: SandboxFilesystem{TmpSize: 256 << 20},
		Network:    SandboxNetwork{Mode: "proxy", ProxyPort: 3128, Policy: "default"},
		Hostname:   "clawhold-sandbox",
		Cwd:        "/",
		Home:       "/tmp",
	}
}

// LoadSandboxProfile parses and validates a profile. file names it in
// errors.
func LoadSandboxProfile(file string, data []byte) (*SandboxProfile, error) {
	p := DefaultSandboxProfile()
	p.Path = file
	lines, err := decodeDocument(file, data, &p)
	if err != nil {
		return nil, err
	}
	if err := p.validate(lines); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks p as LoadSandboxProfile does.
func (p *SandboxProfile) Validate() error { return p.validate(nil) }

func (p *SandboxProfile) validate(lines map[string]int) error {
	v := &validator{file: p.Path, lines: lines}
	for i, l := range p.Degraded {
		v.oneOf(fmt.Sprintf("degraded[%d]", i), l, DegradableLayers...)
	}
	fs := p.Filesystem
	for i, d := range fs.ReadOnly {
		v.sandboxPath(fmt.Sprintf("filesystem.read_only[%d]", i), strings.TrimSuffix(d, "?"))
	}
	for i, d := range fs.ReadWrite {
		key := fmt.Sprintf("filesystem.read_write[%d]", i)
		v.sandboxPath(key, d)
		if c := path.Clean(d); !strings.HasPrefix(d, "${") && systemDir(c) {
			v.errorf(key, "%s is %q: a system directory cannot be writable in a sandbox; list it under filesystem.read_only", key, d)
		}
	}
	for i, e := range fs.Etc {
		key := fmt.Sprintf("filesystem.etc[%d]", i)
		c := path.Clean(e)
		switch {
		case e == "" || path.IsAbs(e) || c != e || strings.HasPrefix(c, ".."):
			v.errorf(key, "%s is %q: name an entry of /etc relative to it, e.g. \"resolv.conf\" or \"ssl/certs\"", key, e)
		case refused(c):
			v.errorf(key, "%s is %q: /etc/%s holds host secrets (password hashes, privilege rules or keys) and is never exposed to a sandbox; remove it", key, e, c)
		}
	}
	if fs.TmpSize < 1<<20 {
		v.errorf("filesystem.tmp_size", "filesystem.tmp_size is %s: it must be at least 1MiB (default 256MiB)", fs.TmpSize)
	}
	l := p.Limits
	if l.CPU < 0 || math.IsNaN(l.CPU) || l.CPU > 1024 {
		v.errorf("limits.cpu", "limits.cpu is %v: give cores as a positive number, e.g. 0.5 or 2 (0: no limit)", l.CPU)
	}
	if l.Memory != 0 && l.Memory < 4<<20 {
		v.errorf("limits.memory", "limits.memory is %s: at least 4MiB, e.g. 1GiB (0: no limit)", l.Memory)
	}
	if l.Pids < 0 || (l.Pids > 0 && l.Pids < 4) {
		v.errorf("limits.pids", "limits.pids is %d: at least 4 (0: no limit)", l.Pids)
	}
	n := p.Network
	v.oneOf("network.mode", n.Mode, "proxy", "none")
	for _, port := range []struct {
		key string
		val int
	}{{"network.proxy_port", n.ProxyPort}, {"network.expose", n.Expose}} {
		if port.val < 0 || port.val > 65535 || (port.key == "network.proxy_port" && port.val == 0) {
			v.errorf(port.key, "%s is %d: it must be a port from 1 to 65535", port.key, port.val)
		}
	}
	if n.Expose != 0 && n.Expose == n.ProxyPort && n.Mode == "proxy" {
		v.errorf("network.expose", "network.expose is %d, the same port as network.proxy_port; pick another", n.Expose)
	}
	if !isPolicyName(n.Policy) {
		v.errorf("network.policy", "network.policy %q: use letters, digits, - and _ (e.g. default)", n.Policy)
	}
	for k := range p.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.errorf("env."+k, "env key %q: a variable name must be non-empty without = or NUL", k)
		}
	}
	if len(p.Hostname) == 0 || len(p.Hostname) > 64 {
		v.errorf("hostname", "hostname %q: 1 to 64 characters", p.Hostname)
	}
	v.sandboxPath("cwd", p.Cwd)
	v.sandboxPath("home", p.Home)
	return v.err()
}

func (v *validator) sandboxPath(key, p string) {
	if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "${") {
		v.errorf(key, "%s is %q: use an absolute path or a ${VARIABLE} given with --var", key, p)
	}
}

func refused(etcEntry string) bool {
	for _, r := range refusedEtc {
		if etcEntry == r || strings.HasPrefix(etcEntry, r+"/") || strings.HasPrefix(r, etcEntry+"/") {
			return true
		}
	}
	return false
}

// systemDir reports whether p is a system directory or above one.
func systemDir(p string) bool {
	for _, s := range []string{"/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/boot", "/proc", "/sys", "/dev", "/var", "/root", "/home"} {
		if p == s {
			return true
		}
	}
	return strings.HasPrefix(p, "/usr/") || strings.HasPrefix(p, "/etc/") || strings.HasPrefix(p, "/boot/") ||
		strings.HasPrefix(p, "/proc/") || strings.HasPrefix(p, "/sys/") || strings.HasPrefix(p, "/dev/")
}

// ByteSize is a size in bytes that the files may write with a binary unit:
// "512MiB", "1GiB", "64KiB", or a plain integer of bytes.
type ByteSize int64

var byteSizeType = reflect.TypeFor[ByteSize]()

// ParseByteSize parses s as described on ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}, {"", 1}}
	for _, u := range units {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
		if err != nil || n < 0 || n > math.MaxInt64/u.mult {
			break
		}
		return ByteSize(n * u.mult), nil
	}
	return 0, fmt.Errorf("invalid size %q: write a whole number with KiB, MiB, GiB or TiB, e.g. \"512MiB\"", s)
}

func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size such as \"512MiB\", got %s", describe(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}
