package alert

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// memSink records alerts; fail decides per attempt whether Send fails.
type memSink struct {
	name  string
	mu    sync.Mutex
	got   []Alert
	tries int
	fail  func(try int) error
	block chan struct{} // if set, Send waits for it (or ctx)
	recv  chan Alert
}

func newMem(name string) *memSink { return &memSink{name: name, recv: make(chan Alert, 1000)} }

func (m *memSink) Name() string { return m.name }
func (m *memSink) Send(ctx context.Context, a Alert) error {
	if m.block != nil {
		select {
		case <-m.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	m.mu.Lock()
	m.tries++
	try := m.tries
	m.mu.Unlock()
	if m.fail != nil {
		if err := m.fail(try); err != nil {
			return err
		}
	}
	m.mu.Lock()
	m.got = append(m.got, a)
	m.mu.Unlock()
	m.recv <- a
	return nil
}

func (m *memSink) alerts() []Alert {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Alert(nil), m.got...)
}

func (m *memSink) wait(t *testing.T) Alert {
	t.Helper()
	select {
	case a := <-m.recv:
		return a
	case <-time.After(10 * time.Second):
		t.Fatalf("sink %s received nothing", m.name)
		return Alert{}
	}
}

func closeOK(t *testing.T, d *Dispatcher) {
	t.Helper()
	if err := d.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestRouting(t *testing.T) {
	all, high, cmds := newMem("all"), newMem("high"), newMem("cmds")
	d := NewDispatcher(Options{Routes: []Route{
		{Sink: all, MinSeverity: Info},
		{Sink: high, MinSeverity: High},
		{Sink: cmds, MinSeverity: Low, Rules: []string{"cmd.*", "file.unexpected_access"}},
	}})
	for _, a := range []Alert{
		{Rule: "cmd.download-exec", Severity: Critical},
		{Rule: "cmd.chmod-777", Severity: Info},
		{Rule: "login.new_country", Severity: Medium},
		{Rule: "file.unexpected_access", Severity: High},
		{Rule: "file.other", Severity: Low},
	} {
		d.Dispatch(a)
	}
	closeOK(t, d)
	rules := func(m *memSink) (r []string) {
		for _, a := range m.alerts() {
			r = append(r, a.Rule)
		}
		return r
	}
	for _, tt := range []struct {
		m    *memSink
		want string
	}{
		{all, "[cmd.download-exec cmd.chmod-777 login.new_country file.unexpected_access file.other]"},
		{high, "[cmd.download-exec file.unexpected_access]"},
		{cmds, "[cmd.download-exec file.unexpected_access]"},
	} {
		if got := fmt.Sprint(rules(tt.m)); got != tt.want {
			t.Errorf("%s got %s, want %s", tt.m.name, got, tt.want)
		}
	}
}

func TestDispatchNeverBlocksAndCountsDrops(t *testing.T) {
	slow := newMem("slow")
	slow.block = make(chan struct{})
	var mu sync.Mutex
	var errs []error
	d := NewDispatcher(Options{Routes: []Route{{Sink: slow}}, QueueSize: 2, OnError: func(sink string, a Alert, err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}})
	done := make(chan struct{})
	go func() {
		for i := range 10 {
			d.Dispatch(Alert{Rule: fmt.Sprint("r", i), Severity: High})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Dispatch blocked on a stuck sink")
	}
	// One in the worker, two queued, the rest dropped.
	st := d.Stats().Sinks["slow"]
	if st.Dropped < 7 || st.Dropped > 8 {
		t.Fatalf("dropped %d, want 7 or 8", st.Dropped)
	}
	mu.Lock()
	for _, e := range errs {
		if !errors.Is(e, ErrQueueFull) {
			t.Errorf("OnError got %v", e)
		}
	}
	n := len(errs)
	mu.Unlock()
	if uint64(n) != st.Dropped {
		t.Fatalf("OnError called %d times for %d drops", n, st.Dropped)
	}
	close(slow.block)
	closeOK(t, d)
	if got := d.Stats().Sinks["slow"]; got.Sent+got.Dropped != 10 {
		t.Fatalf("stats %+v", got)
	}
}

func TestDedupeFoldsRepeatsIntoOneSummary(t *testing.T) {
	m := newMem("m")
	d := NewDispatcher(Options{Routes: []Route{{Sink: m}}, DedupeWindow: time.Hour})
	t0 := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	for i := range 5 {
		d.Dispatch(Alert{Tenant: "acme", Rule: "login.brute_force", User: "bob", Severity: Medium, Title: "brute force", Time: t0.Add(time.Duration(i) * time.Minute)})
	}
	sev := High
	d.Dispatch(Alert{Tenant: "acme", Rule: "login.brute_force", User: "bob", Severity: sev, Title: "brute force", Time: t0.Add(9 * time.Minute)})
	// Other keys are not folded.
	d.Dispatch(Alert{Tenant: "acme", Rule: "login.brute_force", User: "alice", Severity: Medium, Time: t0})
	d.Dispatch(Alert{Tenant: "other", Rule: "login.brute_force", User: "bob", Severity: Medium, Time: t0})
	first := m.wait(t)
	if first.Count != 1 || first.User != "bob" || !first.Time.Equal(t0) {
		t.Fatalf("first = %+v", first)
	}
	// The escalation to high is not held back.
	if esc := m.wait(t); esc.Severity != High || esc.Count != 1 || esc.User != "bob" {
		t.Fatalf("escalation = %+v", esc)
	}
	if got := d.Stats().Deduped; got != 4 {
		t.Fatalf("deduped %d", got)
	}
	closeOK(t, d)
	got := m.alerts()
	if len(got) != 5 {
		t.Fatalf("got %d alerts: %+v", len(got), got)
	}
	s := got[4]
	if s.Count != 6 || s.User != "bob" || s.Tenant != "acme" || !s.FirstSeen.Equal(t0) || !s.LastSeen.Equal(t0.Add(9*time.Minute)) || s.Severity != High || s.ID == first.ID {
		t.Fatalf("summary = %+v", s)
	}
}

func TestDedupeWindowEnds(t *testing.T) {
	m := newMem("m")
	d := NewDispatcher(Options{Routes: []Route{{Sink: m}}, DedupeWindow: 50 * time.Millisecond})
	defer d.Close(context.Background())
	a := Alert{Rule: "cmd.x", Severity: High, Subject: "cell web"}
	d.Dispatch(a)
	d.Dispatch(a)
	d.Dispatch(a)
	if got := m.wait(t); got.Count != 1 {
		t.Fatalf("first %+v", got)
	}
	if got := m.wait(t); got.Count != 3 {
		t.Fatalf("summary %+v", got)
	}
	// After the window a repeat goes out at once again; a lone alert in a
	// window makes no summary.
	d.Dispatch(a)
	if got := m.wait(t); got.Count != 1 {
		t.Fatalf("after window %+v", got)
	}
	time.Sleep(150 * time.Millisecond)
	if n := len(m.alerts()); n != 3 {
		t.Fatalf("%d alerts, want 3", n)
	}
}

func TestRateLimitFoldsExcess(t *testing.T) {
	limited, other := newMem("limited"), newMem("other")
	d := NewDispatcher(Options{Routes: []Route{{Sink: limited}, {Sink: other, MinSeverity: Critical}}, RateLimit: 3})
	for i := range 10 {
		sev := Medium
		if i == 7 {
			sev = Critical
		}
		d.Dispatch(Alert{Tenant: "acme", Rule: fmt.Sprint("cmd.r", i%2), Severity: sev, Subject: fmt.Sprint(i)})
	}
	closeOK(t, d)
	got := limited.alerts()
	if len(got) != 4 {
		t.Fatalf("limited sink got %d alerts", len(got))
	}
	s := got[3]
	if s.Rule != SuppressedRule || s.Count != 7 || s.Severity != Critical || s.Tenant != "acme" ||
		s.Title != "7 alerts suppressed by sink limited's rate limit" {
		t.Fatalf("summary = %+v", s)
	}
	if r := s.Evidence["rules"].(map[string]int); r["cmd.r0"] != 3 || r["cmd.r1"] != 4 {
		t.Fatalf("evidence = %v", s.Evidence)
	}
	if st := d.Stats().Sinks["limited"]; st.Suppressed != 7 || st.Sent != 4 {
		t.Fatalf("stats %+v", st)
	}
	// The limit is per sink: the other sink saw its one critical alert.
	if o := other.alerts(); len(o) != 1 || o[0].Severity != Critical {
		t.Fatalf("other sink %+v", o)
	}
}

func TestRetries(t *testing.T) {
	transient := errors.New("connection reset")
	for _, tt := range []struct {
		name      string
		fail      func(int) error
		tries     int
		delivered bool
	}{
		{"transient then ok", func(try int) error {
			if try < 3 {
				return transient
			}
			return nil
		}, 3, true},
		{"always transient", func(int) error { return transient }, 3, false},
		{"permanent", func(int) error { return Permanent(errors.New("400 bad request")) }, 1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := newMem("m")
			m.fail = tt.fail
			var failures []error
			d := NewDispatcher(Options{Routes: []Route{{Sink: m}}, Backoff: time.Millisecond, OnError: func(_ string, _ Alert, err error) {
				failures = append(failures, err)
			}})
			d.Dispatch(Alert{Rule: "r", Severity: High})
			closeOK(t, d)
			if m.tries != tt.tries || (len(m.alerts()) == 1) != tt.delivered {
				t.Fatalf("tries %d, delivered %d", m.tries, len(m.alerts()))
			}
			if tt.delivered != (len(failures) == 0) {
				t.Fatalf("OnError: %v", failures)
			}
			st := d.Stats().Sinks["m"]
			if tt.delivered && st.Sent != 1 || !tt.delivered && st.Failed != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestCloseGivesUpWithContext(t *testing.T) {
	stuck := newMem("stuck")
	stuck.block = make(chan struct{})
	var dropped []error
	var mu sync.Mutex
	d := NewDispatcher(Options{Routes: []Route{{Sink: stuck}}, OnError: func(_ string, _ Alert, err error) {
		mu.Lock()
		dropped = append(dropped, err)
		mu.Unlock()
	}})
	d.Dispatch(Alert{Rule: "a", Severity: High})
	d.Dispatch(Alert{Rule: "b", Severity: High})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dropped) != 2 {
		t.Fatalf("OnError %v", dropped)
	}
	// Dispatch after Close is ignored, not a panic.
	d.Dispatch(Alert{Rule: "late"})
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTestSendsToEverySink(t *testing.T) {
	ok, bad := newMem("ok"), newMem("bad")
	bad.fail = func(int) error { return errors.New("boom") }
	d := NewDispatcher(Options{Routes: []Route{{Sink: ok, MinSeverity: Critical}, {Sink: bad}}, RateLimit: 1, DedupeWindow: time.Hour})
	defer d.Close(context.Background())
	for range 2 {
		res := d.Test(t.Context(), Alert{Rule: "alert.test", Severity: Info, Title: "test"})
		if len(res) != 2 || res["ok"] != nil || res["bad"] == nil {
			t.Fatalf("Test = %v", res)
		}
	}
	if got := ok.alerts(); len(got) != 2 || got[0].ID == "" || got[0].ID == got[1].ID {
		t.Fatalf("ok sink got %+v", got)
	}
}
