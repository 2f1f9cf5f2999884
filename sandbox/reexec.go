package sandbox

import "os"

// Reexec runs the sandbox's init when os.Args[0] names it (see spec.go)
// and does not return; for any other argv[0] it returns at once.
// Call it first thing in main, after process hardening.
func Reexec() {
	switch os.Args[0] {
	case initArg0:
		initMain()
	}
}
