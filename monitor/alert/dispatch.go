package alert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Route sends the alerts at or above MinSeverity whose rule matches one of
// Rules (path.Match globs; empty matches every rule) to Sink.
type Route struct {
	Sink        Sink
	MinSeverity Severity
	Rules       []string
}

// Matches reports whether the route takes a.
func (r Route) Matches(a Alert) bool {
	if a.Severity < r.MinSeverity {
		return false
	}
	if len(r.Rules) == 0 {
		return true
	}
	for _, g := range r.Rules {
		if ok, _ := path.Match(g, a.Rule); ok {
			return true
		}
	}
	return false
}

// Options configures a Dispatcher.
type Options struct {
	Routes []Route
	// DedupeWindow folds repeats (same tenant, rule, user and subject):
	// the first goes out at once, the rest are counted and one summary
	// (Count = all occurrences in the window, highest severity) goes out
	// when the window ends. A repeat of higher severity than any before
	// it in the window goes out at once too. 0 sends every repeat.
	DedupeWindow time.Duration
	// RateLimit is the most alerts per minute one sink sends (with a burst
	// of as many); the excess is folded into one "N alerts suppressed"
	// summary per minute. 0 is no limit.
	RateLimit int
	// Now is the clock for alert times (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
	// OnError is told about every alert a sink did not deliver (after the
	// last try, or dropped because its queue was full or the dispatcher
	// closed). It is called from the sinks' goroutines and must not block
	// for long.
	OnError func(sink string, a Alert, err error)
	// QueueSize bounds each sink's queue (default 256).
	QueueSize int
	// MaxTries bounds the attempts per alert and sink (default 3); Backoff
	// is the first retry's delay, doubling each time (default 1s).
	MaxTries int
	Backoff  time.Duration
	// SendTimeout bounds one attempt (default 30s).
	SendTimeout time.Duration
}

// Errors given to OnError for alerts never attempted.
var (
	ErrQueueFull = errors.New("sink queue full: alert dropped")
	ErrClosed    = errors.New("dispatcher closed: alert dropped")
)

// SuppressedRule is the rule of a rate-limit summary.
const SuppressedRule = "alert.suppressed"

// rateWindow is how often a sink's rate-limit summary goes out.
const rateWindow = time.Minute

// Dispatcher routes alerts to sinks without blocking the caller.
type Dispatcher struct {
	opts   Options
	now    func() time.Time
	log    *slog.Logger
	queues []*queue
	ctx    context.Context // cancelled when Close gives up
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	pending map[dedupeKey]*pending
	deduped atomic.Uint64
}

type dedupeKey struct{ tenant, rule, user, subject string }

// pending is one open dedupe window.
type pending struct {
	first   Alert
	count   int // occurrences, the first included
	last    time.Time
	max     Severity
	timer   *time.Timer
	repeats bool
}

// queue is one sink's queue, worker and rate limit.
type queue struct {
	route   Route
	ch      chan Alert
	limiter *rate.Limiter // nil: no limit

	// Guarded by Dispatcher.mu.
	supp *suppressed

	sent, failed, dropped, suppressed atomic.Uint64
}

// suppressed accumulates what one sink's rate limit held back.
type suppressed struct {
	n           int
	max         Severity
	first, last time.Time
	rules       map[string]int
	tenants     map[string]bool
	timer       *time.Timer
}

// NewDispatcher starts one worker per route.
func NewDispatcher(opts Options) *Dispatcher {
	if opts.QueueSize <= 0 {
		opts.QueueSize = 256
	}
	if opts.MaxTries <= 0 {
		opts.MaxTries = 3
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 30 * time.Second
	}
	d := &Dispatcher{opts: opts, now: opts.Now, log: opts.Logger, pending: map[dedupeKey]*pending{}}
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	for _, r := range opts.Routes {
		q := &queue{route: r, ch: make(chan Alert, opts.QueueSize)}
		if opts.RateLimit > 0 {
			q.limiter = rate.NewLimiter(rate.Every(time.Minute/time.Duration(opts.RateLimit)), opts.RateLimit)
		}
		d.queues = append(d.queues, q)
		d.wg.Add(1)
		go d.work(q)
	}
	return d
}

// delivery is an alert for one sink: to queue, or (err set) one it will
// not get, reported outside the lock.
type delivery struct {
	q   *queue
	a   Alert
	err error
}

// Dispatch routes a to the sinks; it never blocks. Missing ID, Time,
// Tenant, Count, FirstSeen and LastSeen are filled in.
func (d *Dispatcher) Dispatch(a Alert) {
	a.fill(d.now())
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		d.log.Warn("alert after the dispatcher closed", "rule", a.Rule, "id", a.ID)
		return
	}
	if d.opts.DedupeWindow > 0 {
		k := dedupeKey{a.Tenant, a.Rule, a.User, a.Subject}
		if p, ok := d.pending[k]; ok {
			p.count += a.Count
			p.last = a.LastSeen
			p.repeats = true
			if a.Severity <= p.max {
				d.mu.Unlock()
				d.deduped.Add(uint64(a.Count))
				return
			}
			// An escalation is not held back for the window: it goes
			// out now (and still counts towards the summary).
			p.max = a.Severity
		} else {
			p := &pending{first: a, count: a.Count, last: a.LastSeen, max: a.Severity}
			p.timer = time.AfterFunc(d.opts.DedupeWindow, func() { d.endWindow(k, p) })
			d.pending[k] = p
		}
	}
	drops := d.route(a, nil)
	d.mu.Unlock()
	d.report(drops)
}

// route sends a to every matching sink, through its rate limit. With out
// nil the alert is queued without blocking (the caller holds d.mu); else
// the deliveries are appended to *out for the caller to queue.
func (d *Dispatcher) route(a Alert, out *[]delivery) []delivery {
	var drops []delivery
	for _, q := range d.queues {
		if !q.route.Matches(a) {
			continue
		}
		if q.limiter != nil && !q.limiter.Allow() {
			d.suppress(q, a)
			continue
		}
		if out != nil {
			*out = append(*out, delivery{q: q, a: a})
			continue
		}
		if err := q.offer(a); err != nil {
			drops = append(drops, delivery{q, a, err})
		}
	}
	return drops
}

func (q *queue) offer(a Alert) error {
	select {
	case q.ch <- a:
		return nil
	default:
		q.dropped.Add(1)
		return ErrQueueFull
	}
}

// suppress folds a into q's rate-limit summary (d.mu held).
func (d *Dispatcher) suppress(q *queue, a Alert) {
	q.suppressed.Add(uint64(a.Count))
	s := q.supp
	if s == nil {
		s = &suppressed{first: a.FirstSeen, max: a.Severity, rules: map[string]int{}, tenants: map[string]bool{}}
		s.timer = time.AfterFunc(rateWindow, func() { d.flushSuppressed(q, s) })
		q.supp = s
	}
	s.n += a.Count
	s.max = max(s.max, a.Severity)
	s.last = a.LastSeen
	s.rules[a.Rule] += a.Count
	s.tenants[a.Tenant] = true
}

func (d *Dispatcher) flushSuppressed(q *queue, s *suppressed) {
	d.mu.Lock()
	if d.closed || q.supp != s {
		d.mu.Unlock()
		return
	}
	q.supp = nil
	a := d.suppressedSummary(q, s)
	err := q.offer(a) // the summary itself is not rate limited
	d.mu.Unlock()
	if err != nil {
		d.report([]delivery{{q, a, err}})
	}
}

func (d *Dispatcher) suppressedSummary(q *queue, s *suppressed) Alert {
	tenant := SystemTenant
	if len(s.tenants) == 1 {
		for t := range s.tenants {
			tenant = t
		}
	}
	rules := slices.Sorted(maps.Keys(s.rules))
	slices.SortStableFunc(rules, func(a, b string) int { return s.rules[b] - s.rules[a] })
	parts := make([]string, len(rules))
	for i, r := range rules {
		parts[i] = fmt.Sprintf("%s ×%d", r, s.rules[r])
	}
	a := Alert{
		Tenant:   tenant,
		Rule:     SuppressedRule,
		Severity: s.max,
		Title:    fmt.Sprintf("%d alerts suppressed by sink %s's rate limit", s.n, q.route.Sink.Name()),
		Description: fmt.Sprintf("Sink %s sends at most %d alerts a minute; these were held back: %s. Each one is in the audit log.",
			q.route.Sink.Name(), d.opts.RateLimit, strings.Join(parts, ", ")),
		Evidence:  map[string]any{"sink": q.route.Sink.Name(), "rules": s.rules},
		Count:     s.n,
		FirstSeen: s.first,
		LastSeen:  s.last,
	}
	a.fill(d.now())
	return a
}

func (d *Dispatcher) endWindow(k dedupeKey, p *pending) {
	d.mu.Lock()
	if d.closed || d.pending[k] != p {
		d.mu.Unlock()
		return
	}
	delete(d.pending, k)
	var drops []delivery
	if p.repeats {
		drops = d.route(d.summary(p), nil)
	}
	d.mu.Unlock()
	d.report(drops)
}

// summary is the alert standing for a dedupe window's occurrences.
func (d *Dispatcher) summary(p *pending) Alert {
	s := p.first
	s.ID = NewID()
	s.Time = d.now()
	s.Severity = p.max
	s.Count = p.count
	s.LastSeen = p.last
	return s
}

func (d *Dispatcher) report(drops []delivery) {
	for _, x := range drops {
		d.log.Warn("alert not delivered", "sink", x.q.route.Sink.Name(), "rule", x.a.Rule, "id", x.a.ID, "err", x.err)
		if d.opts.OnError != nil {
			d.opts.OnError(x.q.route.Sink.Name(), x.a, x.err)
		}
	}
}

func (d *Dispatcher) work(q *queue) {
	defer d.wg.Done()
	for a := range q.ch {
		if err := d.ctx.Err(); err != nil {
			q.dropped.Add(1)
			d.report([]delivery{{q, a, ErrClosed}})
			continue
		}
		if err := d.send(q, a); err != nil {
			q.failed.Add(1)
			d.report([]delivery{{q, a, err}})
			continue
		}
		q.sent.Add(1)
	}
}

// send tries a bounded number of times, backing off between tries;
// permanent errors are not retried.
func (d *Dispatcher) send(q *queue, a Alert) error {
	wait := d.opts.Backoff
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(d.ctx, d.opts.SendTimeout)
		err := q.route.Sink.Send(ctx, a)
		cancel()
		if err == nil || IsPermanent(err) || try >= d.opts.MaxTries {
			if err != nil && try > 1 {
				err = fmt.Errorf("after %d tries: %w", try, err)
			}
			return err
		}
		d.log.Debug("alert send failed, retrying", "sink", q.route.Sink.Name(), "id", a.ID, "try", try, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-d.ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %v)", ErrClosed, err)
		}
		wait *= 2
	}
}

// Close stops accepting alerts, sends the pending dedupe and rate-limit
// summaries, and waits for the queues to drain. When ctx ends first, the
// sends in flight are abandoned and ctx's error returned.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	var out []delivery
	for _, k := range slices.SortedFunc(maps.Keys(d.pending), func(a, b dedupeKey) int {
		return d.pending[a].first.Time.Compare(d.pending[b].first.Time)
	}) {
		p := d.pending[k]
		p.timer.Stop()
		if p.repeats {
			d.route(d.summary(p), &out)
		}
	}
	clear(d.pending)
	for _, q := range d.queues {
		if s := q.supp; s != nil {
			s.timer.Stop()
			q.supp = nil
			out = append(out, delivery{q: q, a: d.suppressedSummary(q, s)})
		}
	}
	d.mu.Unlock()

	// Nothing else queues once closed is set: the summaries may wait for
	// room.
	var drops []delivery
	for _, x := range out {
		select {
		case x.q.ch <- x.a:
		case <-ctx.Done():
			x.q.dropped.Add(1)
			drops = append(drops, delivery{x.q, x.a, ErrClosed})
		}
	}
	d.report(drops)
	for _, q := range d.queues {
		close(q.ch)
	}
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
		d.cancel()
		return nil
	case <-ctx.Done():
		d.cancel()
		<-done
		return ctx.Err()
	}
}

// Test sends a to every sink at once, synchronously and without routing,
// dedupe, rate limit or retries, and returns each sink's error (nil: it
// went out). For `clawhold alerts test`.
func (d *Dispatcher) Test(ctx context.Context, a Alert) map[string]error {
	a.fill(d.now())
	res := make(map[string]error, len(d.queues))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, q := range d.queues {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, d.opts.SendTimeout)
			defer cancel()
			err := q.route.Sink.Send(sctx, a)
			mu.Lock()
			res[q.route.Sink.Name()] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return res
}

// SinkStats counts one sink's alerts.
type SinkStats struct {
	Sent       uint64 `json:"sent"`
	Failed     uint64 `json:"failed"`     // every try failed
	Dropped    uint64 `json:"dropped"`    // queue full, or closed before sending
	Suppressed uint64 `json:"suppressed"` // folded by the rate limit
}

// Stats are the dispatcher's counters.
type Stats struct {
	// Deduped counts repeats folded into dedupe summaries.
	Deduped uint64               `json:"deduped"`
	Sinks   map[string]SinkStats `json:"sinks"`
}

// Stats returns the counters so far.
func (d *Dispatcher) Stats() Stats {
	s := Stats{Deduped: d.deduped.Load(), Sinks: map[string]SinkStats{}}
	for _, q := range d.queues {
		s.Sinks[q.route.Sink.Name()] = SinkStats{Sent: q.sent.Load(), Failed: q.failed.Load(), Dropped: q.dropped.Load(), Suppressed: q.suppressed.Load()}
	}
	return s
}
