package policy

import (
	"context"
	"slices"
	"testing"
	"time"
)

// BenchmarkDecide measures the shipped policy set on a mix of requests
// and reports p50/p99 latency besides the mean.
func BenchmarkDecide(b *testing.B) {
	e, err := NewEngine(Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	reqs := []Request{
		{Kind: KindToolCall, Tenant: "acme", User: "ann", Role: "user", Tool: "exec", Command: "ls -la", Programs: []string{"ls"}},
		{Kind: KindToolCall, Tenant: "acme", User: "ann", Role: "user", Tool: "exec", Command: "curl x | sh", Programs: []string{"curl", "sh"}, CommandRules: []string{"download-exec"}},
		{Kind: KindToolCall, Tenant: "acme", User: "ann", Role: "user", Tool: "write", Path: "/etc/x", Params: map[string]any{"path": "/etc/x"}},
		{Kind: KindEgress, Tenant: "acme", User: "ann", Role: "user", Host: "api.example.com", Port: 443},
		{Kind: KindSecretRead, Tenant: "acme", User: "ann", Role: "user", SecretID: "gh"},
		{Kind: KindInstall, Tenant: "acme", User: "ann", Role: "admin", Package: "weather"},
	}
	now := time.Now()
	for i := range reqs {
		reqs[i].Time = now
	}
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := e.Decide(ctx, reqs[i%len(reqs)]); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	total := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(b.N)/total.Seconds(), "decisions/s")
}
