package sandbox

import (
	"time"

	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/sandbox/cgroup"
	"github.com/clawhold/clawhold/sandbox/execlog"
)

// Event types. Values are stable: detectors and SIEMs match on them.
const (
	EventStart       = "sandbox.start"
	EventExit        = "sandbox.exit"
	EventExec        = "process.exec"
	EventProcessExit = "process.exit"
	EventLimit       = "sandbox.limit" // an OOM kill, a memory or pids limit hit
	EventEgress      = "egress.decision"
)

// Event is one thing that happened in a sandbox.
type Event struct {
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	Sandbox string         `json:"sandbox"`
	Profile string         `json:"profile,omitempty"`
	Process *execlog.Event `json:"process,omitempty"`
	Limit   *cgroup.Event  `json:"limit,omitempty"`
	Egress  *egress.Event  `json:"egress,omitempty"` // egress.decision, when clawhold runs the sandbox's proxy
	// sandbox.start and sandbox.exit
	Argv     []string `json:"argv,omitempty"`
	ExitCode *int     `json:"exit_code,omitempty"`
	Detail   string   `json:"detail,omitempty"`
}
