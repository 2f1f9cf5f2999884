package cgroup

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSweep: an empty group left by a killed clawhold is removed, a group
// holding a process and a group younger than minAge are not.
func TestSweep(t *testing.T) {
	requireRoot(t)
	prefix := fmt.Sprintf("sweep%d-", os.Getpid())
	empty, err := New(context.Background(), "clawhold-sweeptest/"+prefix+"empty", Limits{Pids: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Delete()
	busy, err := New(context.Background(), "clawhold-sweeptest/"+prefix+"busy", Limits{Pids: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		busy.Delete()
		for _, d := range busy.uniqueDirs() {
			os.Remove(filepath.Dir(d)) // the shared parent this test made
		}
	}()
	sleeper := exec.Command("sleep", "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	if err := busy.Add(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}

	if n, err := Sweep("clawhold-sweeptest", prefix, time.Hour); err != nil || n != 0 {
		t.Fatalf("young groups: swept %d, %v; want 0", n, err)
	}
	n, err := Sweep("clawhold-sweeptest", prefix, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(empty.uniqueDirs()); n != want {
		t.Errorf("swept %d directories, want %d (the empty group in each hierarchy)", n, want)
	}
	for _, d := range empty.uniqueDirs() {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("empty group %s still there: %v", d, err)
		}
	}
	for _, d := range busy.uniqueDirs() {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("busy group %s was removed: %v", d, err)
		}
	}
	if err := empty.Delete(); err != nil {
		t.Errorf("Delete after a sweep: %v", err)
	}
}
