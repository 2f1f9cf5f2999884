// Package preflight probes which sandboxing layers the host offers, for
// `clawhold sandbox check`, and says how to enable the missing ones.
//
// Every probe exercises the real mechanism (starting a process in a new
// namespace, creating a cgroup, calling landlock_create_ruleset and
// fanotify_init) rather than trusting config files, because distributions
// block features in many ways: sysctls, LSM policy, boot parameters,
// container runtimes' seccomp profiles.
package preflight

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/clawhold/clawhold/sandbox/cgroup"
)

// Layer is one isolation mechanism the sandbox can use.
type Layer string

const (
	UserNS        Layer = "userns"
	MountNS       Layer = "mountns"
	PidNS         Layer = "pidns"
	NetNS         Layer = "netns"
	IPCNS         Layer = "ipcns"
	UTSNS         Layer = "utsns"
	CgroupNS      Layer = "cgroupns"
	Cgroups       Layer = "cgroups"
	CPUCtl        Layer = "cgroup_cpu"
	MemoryCtl     Layer = "cgroup_memory"
	PidsCtl       Layer = "cgroup_pids"
	Landlock      Layer = "landlock"
	Seccomp       Layer = "seccomp"
	SeccompNotify Layer = "seccomp_notify"
	NoNewPrivs    Layer = "no_new_privs"
	Fanotify      Layer = "fanotify"
)

// Layers lists every layer in report order.
var Layers = []Layer{
	UserNS, MountNS, PidNS, NetNS, IPCNS, UTSNS, CgroupNS,
	Cgroups, CPUCtl, MemoryCtl, PidsCtl,
	Landlock, Seccomp, SeccompNotify, NoNewPrivs, Fanotify,
}

// Result is the verdict on one layer.
type Result struct {
	Layer  Layer  `json:"layer"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`        // what was found, e.g. "Landlock ABI 7"
	Fix    string `json:"fix,omitempty"` // when !OK: what to do about it
}

// Report is the outcome of Check.
type Report struct {
	Results      []Result          `json:"results"`
	CgroupMode   cgroup.Mode       `json:"cgroup_mode"`
	CgroupHybrid bool              `json:"cgroup_hybrid"`
	LandlockABI  int               `json:"landlock_abi"` // 0: unavailable
	Kernel       string            `json:"kernel"`
	Root         bool              `json:"root"`              // probes ran with euid 0
	Sysctls      map[string]string `json:"sysctls,omitempty"` // the relevant ones that exist
}

// Check probes every layer. It takes a few hundred milliseconds: it starts
// short-lived processes and creates (and removes) a cgroup.
func Check(ctx context.Context) Report {
	r := Report{
		Kernel:  kernelRelease(),
		Root:    os.Geteuid() == 0,
		Sysctls: readSysctls(),
	}
	r.Results = append(r.Results, checkNamespaces(ctx, &r)...)
	r.Results = append(r.Results, checkCgroups(ctx, &r, true)...)
	r.Results = append(r.Results, checkLandlock(&r))
	r.Results = append(r.Results, checkSeccomp()...)
	r.Results = append(r.Results, checkNoNewPrivs(), checkFanotify())
	return r
}

// Static reports, in microseconds, what can be read without starting a
// process or creating a cgroup: cgroup mode and controllers, Landlock,
// seccomp and no_new_privs. `sandbox run` checks it on every start; the
// namespaces and the cgroup itself are proven by building the sandbox,
// whose errors point to Check. Namespace layers are reported OK with
// Detail "not probed".
func Static(ctx context.Context) Report {
	r := Report{Kernel: kernelRelease(), Root: os.Geteuid() == 0}
	for _, l := range []Layer{UserNS, MountNS, PidNS, NetNS, IPCNS, UTSNS, CgroupNS} {
		r.Results = append(r.Results, Result{Layer: l, OK: true, Detail: "not probed"})
	}
	r.Results = append(r.Results, checkCgroups(ctx, &r, false)...)
	r.Results = append(r.Results, checkLandlock(&r))
	r.Results = append(r.Results, checkSeccomp()...)
	r.Results = append(r.Results, checkNoNewPrivs())
	return r
}

// Result returns the result for l, and whether it was probed.
func (r Report) Result(l Layer) (Result, bool) {
	for _, x := range r.Results {
		if x.Layer == l {
			return x, true
		}
	}
	return Result{}, false
}

// Missing returns what a profile requires but the host lacks, in the order
// of required. A layer the report does not cover counts as missing.
func (r Report) Missing(required []Layer) []Result {
	var out []Result
	for _, l := range required {
		res, ok := r.Result(l)
		switch {
		case !ok:
			out = append(out, Result{Layer: l, Detail: "not probed", Fix: "rerun clawhold sandbox check on this host"})
		case !res.OK:
			out = append(out, res)
		}
	}
	return out
}

// Require returns a *MissingError naming each required layer the host
// lacks, with its fix, or nil when all are present.
func (r Report) Require(required []Layer) error {
	if m := r.Missing(required); len(m) > 0 {
		return &MissingError{Missing: m}
	}
	return nil
}

// MissingError lists the required layers a host lacks.
type MissingError struct {
	Missing []Result
}

func (e *MissingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "host lacks %d required sandbox layer(s):", len(e.Missing))
	for _, m := range e.Missing {
		fmt.Fprintf(&b, "\n  %s: %s", m.Layer, oneLine(m.Detail))
		if m.Fix != "" {
			fmt.Fprintf(&b, "\n    fix: %s", oneLine(m.Fix))
		}
	}
	return b.String()
}

// Text renders r as an aligned table for people.
func (r Report) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s, cgroup %s, Landlock ABI %d, running as %s\n\n",
		r.Kernel, r.cgroupLabel(), r.LandlockABI, map[bool]string{true: "root", false: "non-root"}[r.Root])
	var t strings.Builder
	tw := tabwriter.NewWriter(&t, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LAYER\tSTATUS\tDETAIL\tFIX")
	for _, x := range r.Results {
		status := "ok"
		if !x.OK {
			status = "MISSING"
		}
		// Long details and fixes wrap onto continuation rows so the
		// table stays readable in a terminal.
		detail, fix := wrap(x.Detail, detailWidth), wrap(x.Fix, fixWidth)
		for i := range max(len(detail), len(fix), 1) {
			layer, st := string(x.Layer), status
			if i > 0 {
				layer, st = "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", layer, st, at(detail, i), at(fix, i))
		}
	}
	tw.Flush()
	for _, line := range strings.Split(strings.TrimRight(t.String(), "\n"), "\n") {
		b.WriteString(strings.TrimRight(line, " "))
		b.WriteByte('\n')
	}
	return b.String()
}

const (
	detailWidth = 64
	fixWidth    = 72
)

// wrap splits s into lines of at most width bytes at spaces (longer words
// stay whole).
func wrap(s string, width int) []string {
	var lines []string
	var cur string
	for _, w := range strings.Fields(s) {
		if cur != "" && len(cur)+1+len(w) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += w
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return ""
}

func (r Report) cgroupLabel() string {
	s := r.CgroupMode.String()
	if r.CgroupHybrid {
		s += " (hybrid)"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// JSON renders r indented, with stable lowercase keys.
func (r Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

func (l Layer) String() string { return string(l) }

func contains(list []string, s string) bool { return slices.Contains(list, s) }
