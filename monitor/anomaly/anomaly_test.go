package anomaly

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/store"
	"github.com/clawhold/clawhold/store/storetest"
)

// t0 is a Monday, 00:00 UTC.
var t0 = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

const (
	firefox120 = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
	firefox121 = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
	chromeWin  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)

func at(day, hour, minute int) time.Time {
	return t0.Add(time.Duration(day)*24*time.Hour + time.Duration(hour)*time.Hour + time.Duration(minute)*time.Minute)
}

func loginEv(user string, t time.Time, ip, country, ua string) events.Event {
	return events.Event{Time: t, Type: "auth.login", Actor: "frontdoor", Subject: user,
		Detail: map[string]any{"ip": ip, "country": country, "user_agent": ua, "mfa": "totp"}}
}

func failEv(user string, t time.Time, ip string) events.Event {
	return events.Event{Time: t, Type: "auth.login_failed", Actor: "frontdoor", Subject: user,
		Detail: map[string]any{"ip": ip, "reason": "bad_password"}}
}

func sessionEv(user, tenant string, t time.Time) events.Event {
	return events.Event{Time: t, Type: "session.create", Actor: "frontdoor", Subject: "sess",
		Detail: map[string]any{"user": user, "tenant": tenant, "role": "operator", "ip": "203.0.113.10", "user_agent": firefox120}}
}

func execEv(t time.Time) events.Event {
	return events.Event{Time: t, Type: "process.exec", Actor: "cell:acme", Subject: "/usr/bin/true"}
}

type fed struct {
	tenant string
	ev     events.Event
}

// officeWeeks is alice's normal: weekdays at 09:10 and 14:05 UTC from
// Berlin, Firefox on Linux, a session with each login, for weeks weeks.
func officeWeeks(weeks int) []fed {
	var out []fed
	for w := range weeks {
		for d := range 5 {
			for _, h := range []int{9, 14} {
				t := at(7*w+d, h, 5+h/9*5)
				out = append(out, fed{"system", loginEv("alice", t, "203.0.113.10", "DE/Berlin", firefox120)},
					fed{"system", sessionEv("alice", "acme", t.Add(time.Second))})
			}
		}
	}
	return out
}

// cities places the test addresses.
var cities = map[string]Location{
	"203.0.113.10": {Country: "DE", City: "Berlin", Lat: 52.52, Lon: 13.405, Coords: true},
	"203.0.113.11": {Country: "DE", City: "Potsdam", Lat: 52.39, Lon: 13.065, Coords: true}, // 27 km: geo-IP noise
	"203.0.113.20": {Country: "DE", City: "Munich", Lat: 48.137, Lon: 11.575, Coords: true},
	"198.51.100.7": {Country: "US", City: "New York", Lat: 40.713, Lon: -74.006, Coords: true},
	"192.0.2.30":   {Country: "GB", City: "London", Lat: 51.507, Lon: -0.128, Coords: true},
}

func locate(ip string) (Location, bool) { l, ok := cities[ip]; return l, ok }

func feed(t *testing.T, d *Detector, evs []fed) []Detection {
	t.Helper()
	var out []Detection
	for _, f := range evs {
		dets, err := d.Observe(t.Context(), f.tenant, f.ev)
		if err != nil {
			t.Fatalf("Observe %s at %s: %v", f.ev.Type, f.ev.Time, err)
		}
		out = append(out, dets...)
	}
	return out
}

func rules(ds []Detection) []string {
	var r []string
	for _, d := range ds {
		r = append(r, d.Rule)
	}
	return r
}

func sys(evs ...events.Event) []fed {
	out := make([]fed, len(evs))
	for i, e := range evs {
		out[i] = fed{"system", e}
	}
	return out
}

func TestLoginAnomalies(t *testing.T) {
	// Three normal weeks, then the case's events in week 4.
	history := officeWeeks(3)
	w4 := 21
	fails := func(user string, n int, ip func(i int) string) []fed {
		var out []fed
		for i := range n {
			out = append(out, fed{"system", failEv(user, at(w4+1, 3, 0).Add(time.Duration(i)*12*time.Second), ip(i))})
		}
		return out
	}
	tests := []struct {
		name   string
		locate bool
		events []fed
		want   []string // exactly these rules, in order
	}{
		{"new country", false, sys(loginEv("alice", at(w4+1, 9, 10), "198.51.100.7", "BR", firefox120)), []string{RuleNewCountry}},
		{"country change within window without coordinates", false, sys(
			loginEv("alice", at(w4+1, 9, 10), "203.0.113.10", "DE/Berlin", firefox120),
			loginEv("alice", at(w4+1, 10, 0), "198.51.100.7", "US", firefox120)),
			[]string{RuleNewCountry, RuleImpossibleTravel}},
		{"impossible travel with coordinates", true, sys(
			loginEv("alice", at(w4+1, 9, 10), "203.0.113.10", "", firefox120),
			loginEv("alice", at(w4+1, 10, 0), "198.51.100.7", "", firefox120)),
			[]string{RuleNewCountry, RuleImpossibleTravel}},
		{"off hours", false, sys(loginEv("alice", at(w4+6, 3, 0), "203.0.113.10", "DE/Berlin", firefox120)), []string{RuleOffHours}},
		{"new device", false, sys(loginEv("alice", at(w4+1, 9, 10), "203.0.113.10", "DE/Berlin", chromeWin)), []string{RuleNewDevice}},
		{"brute force alerts once per window", false, fails("alice", 25, func(int) string { return "198.51.100.7" }), []string{RuleBruteForce}},
		{"distributed brute force", false, fails("alice", 10, func(i int) string { return fmt.Sprintf("198.51.100.%d", i) }), []string{RuleBruteForce}},
		{"credential stuffing", false, func() []fed {
			var out []fed
			for i := range 8 {
				out = append(out, fed{"system", failEv(fmt.Sprintf("user%d", i), at(w4+1, 3, i), "198.51.100.99")})
			}
			return out
		}(), []string{RuleCredentialStuffing}},
		{"session spike per user and tenant", false, func() []fed {
			var out []fed
			for i := range 40 {
				out = append(out, fed{"system", sessionEv("alice", "acme", at(w4+1, 10, i))})
			}
			return out
		}(), []string{RuleSessionSpike, RuleSessionSpike}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{}
			if tt.locate {
				opts.Locate = locate
			}
			d := New(opts)
			if got := feed(t, d, history); len(got) != 0 {
				t.Fatalf("normal history alerted: %+v", got)
			}
			got := feed(t, d, tt.events)
			if !slices.Equal(rules(got), tt.want) {
				t.Fatalf("rules = %v, want %v\n%+v", rules(got), tt.want, got)
			}
			for _, g := range got {
				if g.Severity == "" || g.Title == "" || g.Technique == "" || g.Evidence == nil {
					t.Errorf("incomplete detection %+v", g)
				}
			}
		})
	}
}

func TestDetectionDetails(t *testing.T) {
	d := New(Options{Locate: locate})
	feed(t, d, officeWeeks(3))
	got := feed(t, d, sys(
		loginEv("alice", at(22, 9, 10), "203.0.113.10", "", firefox120),
		loginEv("alice", at(22, 10, 0), "198.51.100.7", "", firefox120)))
	i := slices.IndexFunc(got, func(d Detection) bool { return d.Rule == RuleImpossibleTravel })
	if i < 0 {
		t.Fatalf("no impossible travel: %+v", got)
	}
	ev := got[i].Evidence
	// Berlin–New York is ~6,385 km; in 50 min that is ~7,660 km/h.
	if km := ev["km"].(float64); km < 6300 || km > 6450 {
		t.Errorf("km = %v", km)
	}
	if s := ev["speed_kmh"].(float64); s < 7600 || s > 7720 {
		t.Errorf("speed = %v", s)
	}
	if got[i].User != "alice" || got[i].Tenant != "acme" || got[i].Severity != "high" {
		t.Errorf("detection = %+v", got[i])
	}
}

func TestNormalBehaviourIsQuiet(t *testing.T) {
	tests := []struct {
		name   string
		locate bool
		events []fed
	}{
		{"office hours for weeks, browser updated", false, append(officeWeeks(5),
			sys(loginEv("alice", at(35, 9, 10), "203.0.113.10", "DE/Berlin", firefox121),
				loginEv("alice", at(36, 14, 5), "203.0.113.10", "DE", firefox121))...)},
		{"traveller flies Berlin to Munich", true, append(officeWeeks(3),
			sys(loginEv("alice", at(22, 9, 10), "203.0.113.10", "", firefox120),
				loginEv("alice", at(22, 14, 5), "203.0.113.20", "", firefox120))...)},
		{"geo-IP error between neighbouring cities", true, append(officeWeeks(3),
			sys(loginEv("alice", at(22, 9, 10), "203.0.113.10", "", firefox120),
				loginEv("alice", at(22, 9, 11), "203.0.113.11", "", firefox120))...)},
		{"new user at new hours, places and devices while learning", false, sys(
			loginEv("bob", at(0, 9, 0), "203.0.113.10", "DE", firefox120),
			loginEv("bob", at(0, 23, 30), "198.51.100.7", "US", chromeWin),
			loginEv("bob", at(0, 23, 45), "203.0.113.10", "DE", firefox120))},
		{"a few failures are typos", false, sys(
			failEv("alice", at(0, 9, 0), "203.0.113.10"), failEv("alice", at(0, 9, 1), "203.0.113.10"),
			failEv("bob", at(0, 9, 2), "203.0.113.10"), loginEv("alice", at(0, 9, 3), "203.0.113.10", "DE", firefox120))},
		{"failures spread out over the day", false, func() []fed {
			var out []fed
			for i := range 48 {
				out = append(out, fed{"system", failEv("alice", t0.Add(time.Duration(i)*30*time.Minute), "203.0.113.10")})
			}
			return out
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := Options{}
			if tt.locate {
				opts.Locate = locate
			}
			if got := feed(t, New(opts), tt.events); len(got) != 0 {
				t.Fatalf("alerted: %+v", got)
			}
		})
	}
}

func TestTravellerToNewCountryIsNotImpossible(t *testing.T) {
	d := New(Options{Locate: locate})
	feed(t, d, officeWeeks(3))
	// Berlin → London, 930 km in 5 h.
	got := feed(t, d, sys(loginEv("alice", at(22, 9, 10), "203.0.113.10", "", firefox120),
		loginEv("alice", at(22, 14, 5), "192.0.2.30", "", firefox120)))
	if !slices.Equal(rules(got), []string{RuleNewCountry}) {
		t.Fatalf("rules = %v", rules(got))
	}
}

// cronTenant is a tenant whose agent runs a job of 200 execs every night
// at 02:00 and a handful of commands through the day.
func cronTenant(days int) []fed {
	var out []fed
	for day := range days {
		for i := range 200 {
			out = append(out, fed{"acme", execEv(at(day, 2, 0).Add(time.Duration(i) * time.Second))})
		}
		for h := 9; h < 18; h++ {
			for i := range 3 + (day+h)%4 {
				out = append(out, fed{"acme", execEv(at(day, h, 10*i))})
			}
		}
	}
	return out
}

func TestBaselines(t *testing.T) {
	t.Run("nightly job is quiet", func(t *testing.T) {
		if got := feed(t, New(Options{}), cronTenant(21)); len(got) != 0 {
			t.Fatalf("alerted: %+v", got)
		}
	})
	t.Run("daytime burst alerts once", func(t *testing.T) {
		d := New(Options{})
		feed(t, d, cronTenant(21))
		var burst []fed
		for i := range 500 {
			burst = append(burst, fed{"acme", execEv(at(21, 15, 0).Add(time.Duration(i) * time.Second))})
		}
		got := feed(t, d, burst)
		if !slices.Equal(rules(got), []string{"baseline.process.exec"}) {
			t.Fatalf("rules = %v", rules(got))
		}
		if got[0].Tenant != "acme" || got[0].Evidence["count"].(float64) > 40 {
			t.Fatalf("detection = %+v", got[0])
		}
		// The next hour starts afresh, and alerts again if still bursting.
		got = feed(t, d, []fed{{"acme", execEv(at(21, 16, 0))}})
		if len(got) != 0 {
			t.Fatalf("one exec alerted: %+v", got)
		}
	})
	t.Run("learning series is quiet", func(t *testing.T) {
		d := New(Options{})
		var burst []fed
		for i := range 1000 {
			burst = append(burst, fed{"acme", execEv(at(0, 15, 0).Add(time.Duration(i) * time.Second))})
		}
		if got := feed(t, d, burst); len(got) != 0 {
			t.Fatalf("alerted while learning: %+v", got)
		}
	})
	t.Run("tiny baseline floor", func(t *testing.T) {
		d := New(Options{})
		var evs []fed
		for day := range 7 {
			evs = append(evs, fed{"acme", events.Event{Time: at(day, 12, 0), Type: "secret.read"}})
		}
		for i := range 5 {
			evs = append(evs, fed{"acme", events.Event{Time: at(7, 12, i), Type: "secret.read"}})
		}
		if got := feed(t, d, evs); len(got) != 0 {
			t.Fatalf("alerted under the floor: %+v", got)
		}
	})
	t.Run("metric mapping", func(t *testing.T) {
		d := New(Options{Thresholds: map[string]float64{"egress.deny": 2, "tool.call": 2}})
		evs := []fed{
			{"acme", events.Event{Time: at(0, 1, 0), Type: "egress.decision", Detail: map[string]any{"action": "allow"}}},
			{"acme", events.Event{Time: at(0, 1, 1), Type: "egress.decision", Detail: map[string]any{"action": "allow"}}},
			{"acme", events.Event{Time: at(0, 1, 2), Type: "egress.decision", Detail: map[string]any{"action": "allow"}}},
			{"acme", events.Event{Time: at(0, 1, 3), Type: "tool.call", Detail: map[string]any{"phase": "before"}}},
			{"acme", events.Event{Time: at(0, 1, 3), Type: "tool.call", Detail: map[string]any{"phase": "after"}}},
			{"acme", events.Event{Time: at(0, 1, 4), Type: "tool.call", Detail: map[string]any{"phase": "before"}}},
			{"acme", events.Event{Time: at(0, 1, 4), Type: "tool.call", Detail: map[string]any{"phase": "after"}}},
		}
		if got := feed(t, d, evs); len(got) != 0 {
			t.Fatalf("alerted: %+v", got)
		}
		evs = []fed{
			{"acme", events.Event{Time: at(0, 1, 5), Type: "tool.call", Detail: map[string]any{"phase": "before"}}},
			{"acme", events.Event{Time: at(0, 1, 6), Type: "egress.decision", Detail: map[string]any{"action": "deny"}}},
			{"acme", events.Event{Time: at(0, 1, 7), Type: "egress.decision", Detail: map[string]any{"action": "deny"}}},
			{"acme", events.Event{Time: at(0, 1, 8), Type: "egress.decision", Detail: map[string]any{"action": "deny"}}},
		}
		if got := rules(feed(t, d, evs)); !slices.Equal(got, []string{"baseline.tool.call", "baseline.egress.deny"}) {
			t.Fatalf("rules = %v", got)
		}
	})
}

func TestSeriesStatistics(t *testing.T) {
	var e ewma
	for _, x := range []float64{4, 6} {
		e.add(x, 0.01)
	}
	if e.Mean != 5 || e.Var != 1 {
		t.Fatalf("mean, var = %v, %v; want 5, 1", e.Mean, e.Var)
	}
	// A constant series: σ = 0, so the Poisson floor √mean holds.
	var c ewma
	for range 100 {
		c.add(100, alphaHour)
	}
	if b := c.bound(3); b < 129.9 || b > 130.1 {
		t.Fatalf("bound = %v, want 130", b)
	}
	// A silence far longer than maxGap costs maxGap iterations.
	s := &series{Hour: 1000, Count: 5}
	s.advance(1000 + 100*maxGap)
	if s.Hour != 1000+100*maxGap || s.samples() != maxGap+1 {
		t.Fatalf("hour %d samples %d", s.Hour, s.samples())
	}
}

func TestDevice(t *testing.T) {
	for _, tt := range []struct{ ua, want string }{
		{firefox120, "Firefox on Linux"},
		{chromeWin, "Chrome on Windows"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86", "Edge on Windows"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15", "Safari on macOS"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1", "Safari on iOS"},
		{"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome on Android"},
		{"curl/8.5.0", "curl"},
		{"python-requests/2.31.0", "python-requests"},
		{"", ""},
	} {
		if got := Device(tt.ua); got != tt.want {
			t.Errorf("Device(%q) = %q, want %q", tt.ua, got, tt.want)
		}
	}
}

func TestHelpers(t *testing.T) {
	// Berlin–London: 930 km.
	if km := haversineKm(52.52, 13.405, 51.507, -0.128); km < 925 || km > 935 {
		t.Errorf("haversine = %v", km)
	}
	if h := hourOfWeek(t0.UnixMilli()); h != 0 {
		t.Errorf("Monday 00:00 = hour %d", h)
	}
	if h := hourOfWeek(at(6, 23, 59).UnixMilli()); h != 167 {
		t.Errorf("Sunday 23:59 = hour %d", h)
	}
}

// backend opens the test databases of one storetest backend, as a fresh
// process would.
func dbFunc(t *testing.T, b storetest.Backend) func(context.Context, string) (*store.DB, error) {
	s := b.Open(t)
	return func(ctx context.Context, tenant string) (*store.DB, error) {
		if tenant == SystemTenant {
			return s.System(ctx)
		}
		return s.Tenant(ctx, tenant)
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	storetest.ForEach(t, "anomaly", func(t *testing.T, b storetest.Backend) {
		ctx := t.Context()
		history := append(officeWeeks(3), cronTenant(21)...)
		later := append(sys(
			loginEv("alice", at(22, 9, 10), "198.51.100.7", "BR", chromeWin),
			loginEv("alice", at(22, 14, 5), "203.0.113.10", "DE", firefox120)),
			cronTenant(23)[len(cronTenant(22)):]...)
		for i := range 500 {
			later = append(later, fed{"acme", execEv(at(22, 15, 0).Add(time.Duration(i) * time.Second))})
		}
		for i := range 40 {
			later = append(later, fed{"system", sessionEv("alice", "acme", at(22, 16, i))})
		}

		// Uninterrupted, in memory.
		want := feed(t, New(Options{}), append(slices.Clone(history), later...))

		now := func() time.Time { return at(30, 0, 0) }
		d1 := New(Options{DB: dbFunc(t, b), Now: now})
		if got := feed(t, d1, history); len(got) != 0 {
			t.Fatalf("history alerted: %+v", got)
		}
		if err := d1.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		d2 := New(Options{DB: dbFunc(t, b), Now: now})
		got := feed(t, d2, later)
		if !slices.Equal(rules(got), rules(want)) || len(got) < 4 {
			t.Fatalf("after restart: %v, uninterrupted: %v", rules(got), rules(want))
		}
		for i := range got {
			if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
				t.Errorf("detection %d after restart:\n%+v\nuninterrupted:\n%+v", i, got[i], want[i])
			}
		}
		if err := d2.Flush(ctx); err != nil {
			t.Fatal(err)
		}

		db, err := dbFunc(t, b)(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		sum, err := Summary(ctx, db, Options{})
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(sum, func(b Baseline) bool { return b.Metric == MetricExec && b.Key == KeyAll })
		if i < 0 || sum[i].Learning || sum[i].Samples < 22*24 || sum[i].Mean < 5 || sum[i].Threshold <= sum[i].Mean || sum[i].Pinned {
			t.Fatalf("summary = %+v", sum)
		}
		if !sum[i].UpdatedAt.Equal(now()) {
			t.Errorf("updated_at = %v", sum[i].UpdatedAt)
		}
		if !slices.ContainsFunc(sum, func(b Baseline) bool { return b.Metric == MetricSessions && b.Key == KeyAll }) {
			t.Errorf("no tenant session series: %+v", sum)
		}
		sysdb, _ := dbFunc(t, b)(ctx, SystemTenant)
		sum, err = Summary(ctx, sysdb, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(sum, func(b Baseline) bool {
			return b.Metric == "login" && b.Key == "alice" && b.Samples == 32 && !b.Learning
		}) ||
			!slices.ContainsFunc(sum, func(b Baseline) bool { return b.Metric == MetricSessions && b.Key == "alice" }) {
			t.Errorf("system summary = %+v", sum)
		}
	})
}

func TestPinnedThreshold(t *testing.T) {
	storetest.ForEach(t, "anomaly_pin", func(t *testing.T, b storetest.Backend) {
		ctx := t.Context()
		open := dbFunc(t, b)
		d := New(Options{DB: open})
		// Steady 100 execs an hour for two weeks: the learned threshold is ~130.
		var evs []fed
		for h := range 14 * 24 {
			for i := range 100 {
				evs = append(evs, fed{"acme", execEv(t0.Add(time.Duration(h)*time.Hour + time.Duration(i)*30*time.Second))})
			}
		}
		if got := feed(t, d, evs); len(got) != 0 {
			t.Fatalf("steady rate alerted: %+v", got)
		}
		hour := func(h, n int) []fed {
			var out []fed
			for i := range n {
				out = append(out, fed{"acme", execEv(t0.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Second))})
			}
			return out
		}
		if got := feed(t, d, hour(14*24, 120)); len(got) != 0 {
			t.Fatalf("120 under the learned threshold alerted: %+v", got)
		}
		db, err := open(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if err := Pin(ctx, db, MetricExec, KeyAll, 50, t0); err != nil {
			t.Fatal(err)
		}
		if err := d.Flush(ctx); err != nil { // picks up the pin
			t.Fatal(err)
		}
		got := feed(t, d, hour(14*24+1, 120))
		if len(got) != 1 || got[0].Evidence["threshold"] != 50.0 || got[0].Evidence["pinned"] != true || got[0].Evidence["count"] != 51.0 {
			t.Fatalf("pinned at 50: %+v", got)
		}
		sum, err := Summary(ctx, db, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if i := slices.IndexFunc(sum, func(b Baseline) bool { return b.Metric == MetricExec }); i < 0 || !sum[i].Pinned || sum[i].Threshold != 50 {
			t.Fatalf("summary = %+v", sum)
		}
		if ok, err := Unpin(ctx, db, MetricExec, KeyAll); err != nil || !ok {
			t.Fatalf("Unpin = %v, %v", ok, err)
		}
		if ok, _ := Unpin(ctx, db, MetricExec, KeyAll); ok {
			t.Fatal("second Unpin reported a pin")
		}
		if err := d.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if got := feed(t, d, hour(14*24+2, 120)); len(got) != 0 {
			t.Fatalf("unpinned still alerts: %+v", got)
		}

		// Pinned before the first event: alerts even while learning.
		if err := Pin(ctx, db, MetricSecretRead, KeyAll, 3, t0); err != nil {
			t.Fatal(err)
		}
		d2 := New(Options{DB: open})
		var reads []fed
		for i := range 5 {
			reads = append(reads, fed{"acme", events.Event{Time: at(20, 3, i), Type: "secret.read"}})
		}
		if got := rules(feed(t, d2, reads)); !slices.Equal(got, []string{"baseline.secret.read"}) {
			t.Fatalf("pinned new series: %v", got)
		}
		if err := Pin(ctx, db, "login", "alice", 3, t0); err == nil {
			t.Error("pinned a login profile")
		}
	})
}

func TestConfiguredThresholds(t *testing.T) {
	// "metric/key" wins over "metric".
	d := New(Options{Thresholds: map[string]float64{"session.create": 100, "session.create/alice": 2}})
	got := feed(t, d, sys(sessionEv("alice", "acme", at(0, 1, 0)), sessionEv("alice", "acme", at(0, 1, 1)), sessionEv("alice", "acme", at(0, 1, 2))))
	if len(got) != 1 || got[0].User != "alice" || got[0].Evidence["key"] != "alice" {
		t.Fatalf("got %+v", got)
	}
}
