//go:build unix

package cmdrule

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time the process has used, so a benchmark can
// report a rate that does not depend on how busy the machine is.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
