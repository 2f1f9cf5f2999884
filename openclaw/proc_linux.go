package openclaw

import (
	"errors"
	"os/exec"
	"syscall"
)

const terminateSignal = syscall.SIGTERM

// setProcessGroup puts the gateway in a new process group (so Stop can kill
// its workers too) and has the kernel send it SIGTERM if the thread that
// started it dies, so a crashed caller (say, a test binary hitting its
// timeout) does not leave a ~1 GB gateway behind.
func setProcessGroup(cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	return nil
}

// killGroup sends SIGKILL to every process in group pgid.
func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// groupAlive reports whether process group pgid has any member left.
func groupAlive(pgid int) bool {
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
