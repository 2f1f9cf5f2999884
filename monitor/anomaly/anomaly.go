// Package anomaly detects login anomalies and deviations from learned
// baselines in clawhold's event stream.
//
// A [Detector] is fed events one at a time, in order, and returns
// detections. Time comes from the events, never the clock, so replaying a
// stream gives the same detections. What it learns is kept in the
// baselines table of the database it concerns: per-user login profiles and
// per-user session series in the system database, per-tenant series in
// the tenant's database. [Detector.Flush] saves it; a new Detector loads
// it on the first event for each database and continues where the last
// one stopped.
//
// Events read (as stored by package events):
//
//   - auth.login (system DB): Subject = user; detail ip, user_agent,
//     country ("CC" or "CC/City") → login.new_country,
//     login.impossible_travel, login.off_hours, login.new_device.
//   - auth.login_failed (system DB): Subject = attempted user; detail ip →
//     login.brute_force (per user), login.credential_stuffing (per ip).
//   - session.create (system DB): detail user, tenant → session.spike on
//     series "session.create" keyed by user (system DB) and keyed "*" in
//     the tenant's DB.
//   - process.exec, tool.call (phase "before" only, one per call),
//     egress.decision with detail.action "deny" (metric "egress.deny"),
//     secret.read → baseline.<metric> on the series keyed "*" in the DB
//     the event came from.
package anomaly

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/store"
)

// Rules.
const (
	RuleNewCountry         = "login.new_country"
	RuleImpossibleTravel   = "login.impossible_travel"
	RuleOffHours           = "login.off_hours"
	RuleNewDevice          = "login.new_device"
	RuleBruteForce         = "login.brute_force"
	RuleCredentialStuffing = "login.credential_stuffing"
	RuleSessionSpike       = "session.spike"
	RuleBaselinePrefix     = "baseline." // + metric
)

// Metrics of the count series.
const (
	MetricSessions   = "session.create"
	MetricExec       = "process.exec"
	MetricToolCall   = "tool.call"
	MetricEgressDeny = "egress.deny"
	MetricSecretRead = "secret.read"
)

// KeyAll keys a tenant-wide series.
const KeyAll = "*"

// SystemTenant names the system database (instance.SystemTenant).
const SystemTenant = "system"

// Detection is one anomaly.
type Detection struct {
	Rule      string         `json:"rule"`
	Severity  string         `json:"severity"` // low, medium, high, critical
	Tenant    string         `json:"tenant,omitempty"`
	User      string         `json:"user,omitempty"`
	Title     string         `json:"title"`
	Evidence  map[string]any `json:"evidence,omitempty"`
	Technique string         `json:"technique,omitempty"` // MITRE ATT&CK
}

// Options configure a Detector. Zero values take defaults.
type Options struct {
	// DB opens the database of a tenant ("system" for the system
	// database). Nil keeps everything in memory.
	DB func(ctx context.Context, tenant string) (*store.DB, error)
	// Locate places an address; nil or not found falls back to the
	// event's detail.country (no coordinates).
	Locate func(ip string) (Location, bool)
	// Now stamps updated_at when saving (default time.Now).
	Now func() time.Time

	LearningPeriod      time.Duration // default 24h
	TravelSpeedKmh      float64       // default 1000
	MinTravelKm         float64       // default 100: below, geo-IP error, not travel
	CountryChangeWindow time.Duration // default 6h
	BruteForceFailures  int           // default 10
	StuffingAccounts    int           // default 5
	FailureWindow       time.Duration // default 10m
	// OffHoursShare: a login whose hour of week (±1 h) holds less than
	// this share of the user's login mass is off hours (default 0.01).
	OffHoursShare float64
	// OffHoursMinLogins: fewer logins than this is too little to know a
	// user's hours (default 10).
	OffHoursMinLogins int

	Sensitivity float64 // k in mean + k·σ, default 3
	// Floor is the lowest learned threshold, per hour (default 10).
	Floor float64
	// Thresholds pin thresholds by configuration: "metric/key" or
	// "metric" → events per hour. A pin in the database wins.
	Thresholds map[string]float64
}

func (o Options) withDefaults() Options {
	def := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LearningPeriod <= 0 {
		o.LearningPeriod = 24 * time.Hour
	}
	def(&o.TravelSpeedKmh, 1000)
	def(&o.MinTravelKm, 100)
	if o.CountryChangeWindow <= 0 {
		o.CountryChangeWindow = 6 * time.Hour
	}
	if o.BruteForceFailures <= 0 {
		o.BruteForceFailures = 10
	}
	if o.StuffingAccounts <= 0 {
		o.StuffingAccounts = 5
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = 10 * time.Minute
	}
	def(&o.OffHoursShare, 0.01)
	if o.OffHoursMinLogins <= 0 {
		o.OffHoursMinLogins = 10
	}
	def(&o.Sensitivity, 3)
	def(&o.Floor, 10)
	return o
}

// pinned returns the hand-set threshold of metric/key: the database's
// pin, else configuration's "metric/key", else "metric".
func (o Options) pinned(metric, key string, db *float64) (float64, bool) {
	if db != nil {
		return *db, true
	}
	if v, ok := o.Thresholds[metric+"/"+key]; ok {
		return v, true
	}
	v, ok := o.Thresholds[metric]
	return v, ok
}

// Detector turns events into detections. Its methods are safe for
// concurrent use; events must arrive in time order per database.
type Detector struct {
	opts Options

	mu     sync.Mutex
	scopes map[string]*scope
	fails  failures
}

// scope is what the detector knows about one database.
type scope struct {
	db     *store.DB // nil: in memory
	users  map[string]*profile
	series map[skey]*series
	pinned map[skey]float64
	dirty  map[skey]bool // login profiles under {metricLogin, user}
}

type skey struct{ metric, key string }

// New returns a Detector.
func New(opts Options) *Detector {
	return &Detector{opts: opts.withDefaults(), scopes: map[string]*scope{}, fails: newFailures()}
}

// Observe feeds one event read from tenant's database ("system" for the
// system database). An error means state could not be loaded; the event
// is then not counted, and loading is retried with the next event.
func (d *Detector) Observe(ctx context.Context, tenant string, ev events.Event) ([]Detection, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch ev.Type {
	case "auth.login":
		sc, err := d.scope(ctx, SystemTenant)
		if err != nil {
			return nil, err
		}
		return d.login(sc, ev), nil
	case "auth.login_failed":
		return d.failed(ev), nil
	case "session.create":
		return d.session(ctx, ev)
	}
	metric := ""
	switch ev.Type {
	case MetricExec, MetricSecretRead:
		metric = ev.Type
	case "tool.call":
		if p := str(ev.Detail, "phase"); p == "" || p == "before" {
			metric = MetricToolCall
		}
	case "egress.decision":
		if str(ev.Detail, "action") == "deny" {
			metric = MetricEgressDeny
		}
	}
	if metric == "" {
		return nil, nil
	}
	sc, err := d.scope(ctx, tenant)
	if err != nil {
		return nil, err
	}
	if det, ok := d.count(sc, metric, KeyAll, ev.Time); ok {
		det.Rule = RuleBaselinePrefix + metric
		det.Tenant = tenant
		det.Technique = techniques[metric]
		det.Title = fmt.Sprintf("%s: %s rate %.0f/h above its baseline (threshold %.1f/h)", tenant, metric, det.Evidence["count"], det.Evidence["threshold"])
		return []Detection{det}, nil
	}
	return nil, nil
}

var techniques = map[string]string{
	MetricExec:       "T1059", // Command and Scripting Interpreter
	MetricToolCall:   "T1059",
	MetricEgressDeny: "T1041", // Exfiltration Over C2 Channel
	MetricSecretRead: "T1555", // Credentials from Password Stores
	MetricSessions:   "T1078", // Valid Accounts
}

func (d *Detector) scope(ctx context.Context, tenant string) (*scope, error) {
	if sc, ok := d.scopes[tenant]; ok {
		return sc, nil
	}
	sc := &scope{users: map[string]*profile{}, series: map[skey]*series{}, pinned: map[skey]float64{}, dirty: map[skey]bool{}}
	if d.opts.DB != nil {
		db, err := d.opts.DB(ctx, tenant)
		if err != nil {
			return nil, fmt.Errorf("anomaly: opening %s database: %w", tenant, err)
		}
		rows, err := loadRows(ctx, db)
		if err != nil {
			return nil, fmt.Errorf("anomaly: %w", err)
		}
		if err := sc.load(rows); err != nil {
			return nil, fmt.Errorf("anomaly: %s: %w", tenant, err)
		}
		sc.db = db
	}
	d.scopes[tenant] = sc
	return sc, nil
}

func (sc *scope) load(rows []row) error {
	for _, r := range rows {
		k := skey{r.metric, r.key}
		if r.metric == metricLogin {
			p := &profile{}
			if err := json.Unmarshal(r.state, p); err != nil {
				return fmt.Errorf("baseline %s/%s: %w", r.metric, r.key, err)
			}
			p.firstSeen = r.firstSeen
			sc.users[r.key] = p
			continue
		}
		if r.pinned != nil {
			sc.pinned[k] = *r.pinned
		}
		s := &series{}
		if len(r.state) > 0 && string(r.state) != "{}" {
			if err := json.Unmarshal(r.state, s); err != nil {
				return fmt.Errorf("baseline %s/%s: %w", r.metric, r.key, err)
			}
		} else {
			continue // pinned before any event: created on the first one
		}
		s.firstSeen = r.firstSeen
		sc.series[k] = s
	}
	return nil
}

// Flush saves what changed since the last Flush, and picks up thresholds
// pinned or unpinned in the databases meanwhile.
func (d *Detector) Flush(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.opts.Now().UnixMilli()
	var errs []error
	names := make([]string, 0, len(d.scopes))
	for n := range d.scopes {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		sc := d.scopes[n]
		if sc.db == nil {
			clear(sc.dirty)
			continue
		}
		var rows []row
		for k := range sc.dirty {
			var v any
			first := int64(0)
			if k.metric == metricLogin {
				p := sc.users[k.key]
				v, first = p, p.firstSeen
			} else {
				s := sc.series[k]
				v, first = s, s.firstSeen
			}
			b, err := json.Marshal(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("anomaly: encoding %s/%s: %w", k.metric, k.key, err))
				continue
			}
			rows = append(rows, row{metric: k.metric, key: k.key, state: b, firstSeen: first, updatedAt: now})
		}
		if err := saveRows(ctx, sc.db, rows); err != nil {
			errs = append(errs, fmt.Errorf("anomaly: %w", err))
			continue // still dirty: retried next time
		}
		clear(sc.dirty)
		stored, err := loadPins(ctx, sc.db)
		if err != nil {
			errs = append(errs, fmt.Errorf("anomaly: %w", err))
			continue
		}
		sc.pinned = stored
	}
	return errors.Join(errs...)
}

// count adds one event at t to metric/key and returns a detection (Rule,
// Tenant, Title to be filled in) when the open hour went over threshold.
func (d *Detector) count(sc *scope, metric, key string, t time.Time) (Detection, bool) {
	k := skey{metric, key}
	ms := t.UnixMilli()
	h := unixHour(t)
	s := sc.series[k]
	if s == nil {
		s = &series{Hour: h, firstSeen: ms}
		sc.series[k] = s
	}
	s.advance(h)
	s.Count++
	s.Last = max(s.Last, ms)
	sc.dirty[k] = true
	if s.Alerted {
		return Detection{}, false
	}
	thr, pinned := d.opts.pinned(metric, key, nil)
	if v, ok := sc.pinned[k]; ok {
		thr, pinned = v, true
	}
	if !pinned {
		if time.Duration(s.Last-s.firstSeen)*time.Millisecond < d.opts.LearningPeriod {
			return Detection{}, false
		}
		thr = s.threshold(d.opts.Sensitivity, d.opts.Floor)
	}
	if s.Count <= thr {
		return Detection{}, false
	}
	s.Alerted = true
	sev := "medium"
	if s.Count >= 3*math.Max(thr, 1) {
		sev = "high"
	}
	return Detection{Severity: sev, Evidence: map[string]any{
		"metric": metric, "key": key, "count": s.Count, "threshold": round(thr), "pinned": pinned,
		"mean": round(s.All.Mean), "stddev": round(s.All.stddev()), "samples": s.samples(),
		"hour": time.Unix(s.Hour*3600, 0).UTC().Format(time.RFC3339),
	}}, true
}

func round(v float64) float64 { return math.Round(v*100) / 100 }

func (d *Detector) session(ctx context.Context, ev events.Event) ([]Detection, error) {
	user, tenant := str(ev.Detail, "user"), str(ev.Detail, "tenant")
	var out []Detection
	sys, err := d.scope(ctx, SystemTenant)
	if err != nil {
		return nil, err
	}
	if user != "" {
		if p := sys.users[user]; p != nil && tenant != "" && p.Tenant != tenant {
			p.Tenant = tenant
			sys.dirty[skey{metricLogin, user}] = true
		}
		if det, ok := d.count(sys, MetricSessions, user, ev.Time); ok {
			det.Rule, det.Tenant, det.User, det.Technique = RuleSessionSpike, tenant, user, techniques[MetricSessions]
			det.Title = fmt.Sprintf("%s created %.0f sessions this hour (threshold %.1f)", user, det.Evidence["count"], det.Evidence["threshold"])
			out = append(out, det)
		}
	}
	if tenant != "" && store.ValidTenantName(tenant) == nil {
		tsc, err := d.scope(ctx, tenant)
		if err != nil {
			return out, err
		}
		if det, ok := d.count(tsc, MetricSessions, KeyAll, ev.Time); ok {
			det.Rule, det.Tenant, det.Technique = RuleSessionSpike, tenant, techniques[MetricSessions]
			det.Title = fmt.Sprintf("tenant %s: %.0f sessions created this hour (threshold %.1f)", tenant, det.Evidence["count"], det.Evidence["threshold"])
			out = append(out, det)
		}
	}
	return out, nil
}

// login checks a successful login against the user's profile, then
// learns from it.
func (d *Detector) login(sc *scope, ev events.Event) []Detection {
	user := ev.Subject
	if user == "" {
		return nil
	}
	ms := ev.Time.UnixMilli()
	ip, ua := str(ev.Detail, "ip"), str(ev.Detail, "user_agent")
	loc := parseCountry(str(ev.Detail, "country"))
	if d.opts.Locate != nil && ip != "" {
		if l, ok := d.opts.Locate(ip); ok {
			if l.Country == "" {
				l.Country = loc.Country
			}
			loc = l
		}
	}
	p := sc.users[user]
	if p == nil {
		p = &profile{Countries: map[string]int64{}, Devices: map[string]int64{}, firstSeen: ms, HoursAt: ms}
		sc.users[user] = p
	}
	if p.Countries == nil {
		p.Countries = map[string]int64{}
	}
	if p.Devices == nil {
		p.Devices = map[string]int64{}
	}
	sc.dirty[skey{metricLogin, user}] = true
	learning := time.Duration(ms-p.firstSeen)*time.Millisecond < d.opts.LearningPeriod
	dev := Device(ua)
	bucket := hourOfWeek(ms)
	p.decayHours(ms)

	var out []Detection
	add := func(rule, sev, tech, title string, ev map[string]any) {
		ev["ip"] = ip
		out = append(out, Detection{Rule: rule, Severity: sev, Tenant: p.Tenant, User: user, Title: title, Evidence: ev, Technique: tech})
	}
	if !learning {
		if loc.Country != "" && len(p.Countries) > 0 {
			if _, ok := p.Countries[loc.Country]; !ok {
				known := slices.Sorted(maps.Keys(p.Countries))
				add(RuleNewCountry, "medium", "T1078", fmt.Sprintf("%s logged in from a new country: %s", user, loc.Country),
					map[string]any{"country": loc.Country, "city": loc.City, "known_countries": known})
			}
		}
		if det, ok := d.travel(p.Last, ip, loc, ms); ok {
			add(RuleImpossibleTravel, "high", "T1078", fmt.Sprintf("%s: impossible travel %s", user, det["route"]), det)
		}
		if dev != "" && len(p.Devices) > 0 {
			if _, ok := p.Devices[dev]; !ok {
				add(RuleNewDevice, "low", "T1078", fmt.Sprintf("%s logged in from a new device: %s", user, dev),
					map[string]any{"device": dev, "user_agent": ua, "known_devices": slices.Sorted(maps.Keys(p.Devices))})
			}
		}
		if p.Logins >= d.opts.OffHoursMinLogins {
			if share := p.hourShare(bucket); share < d.opts.OffHoursShare {
				t := ev.Time.UTC()
				add(RuleOffHours, "low", "T1078", fmt.Sprintf("%s logged in outside their usual hours: %s %02d:00 UTC", user, t.Weekday(), t.Hour()),
					map[string]any{"weekday": t.Weekday().String(), "hour_utc": t.Hour(), "share": round(share * 100)})
			}
		}
	}
	// Learn.
	p.Logins++
	if loc.Country != "" {
		remember(p.Countries, loc.Country, ms)
	}
	if dev != "" {
		remember(p.Devices, dev, ms)
	}
	p.Hours[bucket]++
	if loc.Country != "" || loc.Coords {
		p.Last = &login{Time: ms, IP: ip, Location: loc}
	}
	return out
}

// travel compares a login at loc with the previous one.
func (d *Detector) travel(prev *login, ip string, loc Location, ms int64) (map[string]any, bool) {
	if prev == nil || ms < prev.Time {
		return nil, false
	}
	hours := float64(ms-prev.Time) / 3.6e6
	route := func() string {
		name := func(l Location) string {
			if l.City != "" {
				return l.Country + "/" + l.City
			}
			return l.Country
		}
		return name(prev.Location) + " → " + name(loc)
	}
	ev := map[string]any{"from_ip": prev.IP, "from_country": prev.Country, "from_city": prev.City,
		"to_country": loc.Country, "to_city": loc.City, "hours": round(hours),
		"previous": time.UnixMilli(prev.Time).UTC().Format(time.RFC3339)}
	if prev.Coords && loc.Coords {
		km := haversineKm(prev.Lat, prev.Lon, loc.Lat, loc.Lon)
		if km < d.opts.MinTravelKm {
			return nil, false
		}
		speed := math.Inf(1)
		if hours > 0 {
			speed = km / hours
		}
		if speed <= d.opts.TravelSpeedKmh {
			return nil, false
		}
		ev["km"] = math.Round(km)
		if !math.IsInf(speed, 0) {
			ev["speed_kmh"] = math.Round(speed)
		}
		ev["route"] = route()
		return ev, true
	}
	if prev.Country == "" || loc.Country == "" || prev.Country == loc.Country {
		return nil, false
	}
	if time.Duration(ms-prev.Time)*time.Millisecond >= d.opts.CountryChangeWindow {
		return nil, false
	}
	ev["route"] = route()
	return ev, true
}

func str(m map[string]any, k string) string {
	switch v := m[k].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}

// FromConfig maps the monitor.logins and monitor.baselines settings onto
// Options (zero values take the defaults).
func FromConfig(l config.Logins, b config.Baselines) Options {
	return Options{
		LearningPeriod:      time.Duration(l.LearningPeriod),
		TravelSpeedKmh:      l.TravelSpeedKmh,
		CountryChangeWindow: time.Duration(l.CountryChangeWindow),
		BruteForceFailures:  l.BruteForceFailures,
		StuffingAccounts:    l.StuffingAccounts,
		FailureWindow:       time.Duration(l.FailureWindow),
		Sensitivity:         b.Sensitivity,
		Thresholds:          b.Thresholds,
	}
}

// Metrics lists the count series' metrics, for validating pins.
func Metrics() []string {
	return []string{MetricSessions, MetricExec, MetricToolCall, MetricEgressDeny, MetricSecretRead}
}
