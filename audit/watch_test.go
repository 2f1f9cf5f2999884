package audit

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestWatchDrift: a critical that appears is reported once, its repair is
// reported, and a config change triggers a run without waiting for the
// interval.
func TestWatchDrift(t *testing.T) {
	f := newFixture(t)
	f.run() // writes the (clean) config
	cfgPath := f.stateDir + "/openclaw.json"
	var mu sync.Mutex
	var events []string
	note := func(kind string) func(string, Finding) {
		return func(target string, fd Finding) {
			mu.Lock()
			events = append(events, kind+" "+target+" "+fd.ID)
			mu.Unlock()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, WatchOptions{
			Interval: time.Hour, Poll: 20 * time.Millisecond,
			Targets: func() []WatchTarget {
				return []WatchTarget{{Name: "cell-a", Files: []string{cfgPath}, Target: func() (*Target, error) {
					return NewTarget(f.stateDir, "", f.env)
				}}}
			},
			OnNew: note("new"), OnResolved: note("resolved"),
		})
	}()
	wait := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			mu.Lock()
			for _, e := range events {
				if e == want {
					mu.Unlock()
					return
				}
			}
			mu.Unlock()
		}
		t.Fatalf("no %q; events: %v", want, events)
	}
	time.Sleep(100 * time.Millisecond) // the first run: clean
	// Drift: the gateway exposed without auth. The file's mtime must move.
	time.Sleep(10 * time.Millisecond)
	f.set("gateway.bind", "lan")
	f.set("gateway.auth", map[string]any{"mode": "none"})
	f.run()
	wait("new cell-a " + ruleAuthNone.ID)
	f.config = baselineConfig()
	f.run()
	wait("resolved cell-a " + ruleAuthNone.ID)
	mu.Lock()
	n := 0
	for _, e := range events {
		if e == "new cell-a "+ruleAuthNone.ID {
			n++
		}
	}
	mu.Unlock()
	if n != 1 {
		t.Errorf("the drift was reported %d times: %v", n, events)
	}
	cancel()
	<-done
}
