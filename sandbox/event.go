package sandbox

import (
	"encoding/json"
	"time"

	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/events"
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

// Record turns e into a stored event record (package events).
func (e Event) Record() events.Event {
	var detail map[string]any
	b, _ := json.Marshal(e)
	json.Unmarshal(b, &detail)
	delete(detail, "time")
	delete(detail, "type")
	subject := ""
	switch {
	case e.Process != nil:
		subject = e.Process.Path
	case len(e.Argv) > 0:
		subject = e.Argv[0]
	case e.Limit != nil:
		subject = e.Limit.Kind
	}
	return events.Event{Time: e.Time, Type: e.Type, Actor: "sandbox:" + e.Sandbox, Subject: subject, Detail: detail}
}
