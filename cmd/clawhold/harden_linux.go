package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// harden keeps secrets out of core dumps and out of reach of other
// processes of the same user: no core file is written, and a non-dumpable
// process cannot be ptraced or have its /proc/<pid>/mem read by them (the
// provider runs as the gateway's uid, beside untrusted agent tools).
func harden() error {
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("disabling core dumps: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("marking the process non-dumpable: %w", err)
	}
	return nil
}
