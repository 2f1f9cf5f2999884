package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHarden runs harden in a child process (it changes process-wide
// state) and reads the result back from the kernel.
func TestHarden(t *testing.T) {
	if os.Getenv("CLAWHOLD_HARDEN_CHILD") == "1" {
		if err := harden(); err != nil {
			fmt.Println("error:", err)
			return
		}
		dumpable, err := unix.PrctlRetInt(unix.PR_GET_DUMPABLE, 0, 0, 0, 0)
		var lim unix.Rlimit
		unix.Getrlimit(unix.RLIMIT_CORE, &lim)
		fmt.Printf("dumpable=%d err=%v core=%d/%d\n", dumpable, err, lim.Cur, lim.Max)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHarden$")
	cmd.Env = append(os.Environ(), "CLAWHOLD_HARDEN_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "dumpable=0 err=<nil> core=0/0") {
		t.Fatalf("after harden: %v\n%s", err, out)
	}
}

// TestBinaryHardens checks that the real binary applies harden at start:
// a running `secrets provider` (waiting on stdin) has a zero core limit.
func TestBinaryHardens(t *testing.T) {
	bin := buildBinary(t)
	cmd := exec.Command(bin, "--data-dir", t.TempDir(), "secrets", "provider")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	limits := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/limits"
	var line string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(limits)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Max core file size") {
				line = l
			}
		}
		if f := strings.Fields(line); len(f) > 5 && f[4] == "0" && f[5] == "0" {
			return
		}
	}
	t.Fatalf("core limit of the running binary: %q, want 0 0", line)
}
