package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// The sandbox is two processes deep:
//
//	clawhold sandbox run  (host: cgroup, exec log, signals, cleanup)
//	└─ clawhold-sandbox-init  (PID 1 inside: mounts and network relays, then
//	   │                       no_new_privs, no capabilities, Landlock, seccomp)
//	   └─ the command         (PID 2, inherits every layer)
//
// Init is this binary re-executed (argv[0] selects it, see Reexec); its
// instructions arrive as JSON on a pipe, never in argv or the environment.
const initArg0 = "clawhold-sandbox-init"

// Descriptors the stages inherit (ExtraFiles start at 3).
const (
	fdSpec   = 3 // JSON spec, read to EOF
	fdStatus = 4 // JSON status lines back to the host
	fdNotify = 5 // unix socket to send the seccomp notification fd on
	fdExe    = 6 // this binary, which the host executes through the descriptor
	fdExpose = 7 // optional: the host's unix listener for network.expose
	fdMounts = 8 // detached mounts of the bind sources, from here on
)

// mountSpec is one bind mount into the new root.
type mountSpec struct {
	Source string `json:"source"` // host path
	Target string `json:"target"` // path inside
	RW     bool   `json:"rw,omitempty"`
	Dev    bool   `json:"dev,omitempty"` // a device node: keep it usable
	// Link, when set, makes Target a symlink to Link instead of a mount
	// (/bin -> usr/bin on merged-/usr systems).
	Link string `json:"link,omitempty"`

	fd *os.File // host side: the detached mount passed to init as Source
}

// initSpec tells init how to build the sandbox.
type initSpec struct {
	Root     string      `json:"root"`   // host directory the new root's tmpfs is mounted on
	Mounts   []mountSpec `json:"mounts"` // one descriptor each, from fdMounts on
	Links    []mountSpec `json:"links"`  // symlinks, made after the mounts
	TmpSize  int64       `json:"tmp_size"`
	Hostname string      `json:"hostname"`
	// ProxyPort, when non-zero, is the forwarder's port on 127.0.0.1;
	// it relays to EgressSocket (a host path bound in at egressInside).
	ProxyPort    int    `json:"proxy_port,omitempty"`
	EgressSocket string `json:"egress_socket,omitempty"`
	// Expose is the port inside that fdExpose's connections go to.
	Expose int      `json:"expose,omitempty"`
	Exec   execSpec `json:"exec"`
}

// execSpec tells init how to confine and start the command.
type execSpec struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env"`
	Cwd  string   `json:"cwd"`
	// Landlock rules, in paths inside the sandbox.
	Landlock     bool     `json:"landlock"`
	RODirs       []string `json:"ro_dirs"`
	RWDirs       []string `json:"rw_dirs"`
	ROFiles      []string `json:"ro_files"`
	RWFiles      []string `json:"rw_files"`
	ConnectPorts []uint16 `json:"connect_ports"`
	// InitOnlyPort is the exposed port: init relays to it, but the command
	// and everything it starts may not connect to it (the gateway behind
	// it believes identity headers from init's relay).
	InitOnlyPort uint16 `json:"init_only_port,omitempty"`
	// Seccomp
	SeccompAllow []string `json:"seccomp_allow"`
	Notify       bool     `json:"notify"`
}

// egressInside is where the egress proxy's socket appears in the sandbox.
const egressInside = "/run/clawhold/egress.sock"

// status is one line init or exec writes to the host on fdStatus.
type status struct {
	Error string `json:"error,omitempty"`
}

func readSpec(fd int, v any) error {
	f := os.NewFile(uintptr(fd), "spec")
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return fmt.Errorf("reading spec: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding spec: %w", err)
	}
	return nil
}

func writeStatus(w io.Writer, s status) {
	b, _ := json.Marshal(s)
	w.Write(append(b, '\n'))
}
