package anomaly

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/clawhold/clawhold/events"
)

// BenchmarkObserveExec is the cost of counting one process.exec event
// (the commonest) against a learned baseline, in memory.
func BenchmarkObserveExec(b *testing.B) {
	d := New(Options{})
	ctx := context.Background()
	for i := range 48 * 60 { // two learned days, one exec a minute
		d.Observe(ctx, "acme", execEv(t0.Add(time.Duration(i)*time.Minute)))
	}
	start := t0.Add(48 * time.Hour)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := d.Observe(ctx, "acme", execEv(start.Add(time.Duration(i)*time.Second))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkObserveLogin is the cost of one successful login checked
// against a learned profile (no geo lookup).
func BenchmarkObserveLogin(b *testing.B) {
	d := New(Options{})
	ctx := context.Background()
	var evs []events.Event
	for i := range 1000 {
		evs = append(evs, loginEv(fmt.Sprintf("user%d", i%100), t0.Add(time.Duration(i)*time.Hour), "203.0.113.10", "DE/Berlin", firefox120))
	}
	for _, e := range evs {
		d.Observe(ctx, "system", e)
	}
	start := t0.Add(1000 * time.Hour)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e := loginEv(fmt.Sprintf("user%d", i%100), start.Add(time.Duration(i)*time.Minute), "203.0.113.10", "DE/Berlin", firefox120)
		if _, err := d.Observe(ctx, "system", e); err != nil {
			b.Fatal(err)
		}
	}
}
