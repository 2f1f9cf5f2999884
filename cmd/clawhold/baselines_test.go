package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/monitor/anomaly"
)

// learnBaselines runs a detector over two days of events, as `clawhold up`
// would, and saves what it learned.
func learnBaselines(t *testing.T, d string) {
	t.Helper()
	ctx := t.Context()
	in, err := instance.Open(ctx, instance.Options{DataDir: d})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	det := anomaly.New(anomaly.Options{DB: in.DB, Now: func() time.Time { return time.Unix(1767830400, 0) }})
	start := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	for h := range 48 {
		for i := range 20 {
			ev := events.Event{Time: start.Add(time.Duration(h)*time.Hour + time.Duration(i)*time.Minute), Type: "process.exec"}
			if _, err := det.Observe(ctx, "default", ev); err != nil {
				t.Fatal(err)
			}
		}
		if h%8 == 0 {
			ev := events.Event{Time: start.Add(time.Duration(h) * time.Hour), Type: "auth.login", Subject: "alice",
				Detail: map[string]any{"ip": "203.0.113.10", "country": "DE", "user_agent": "curl/8.5.0"}}
			if _, err := det.Observe(ctx, "system", ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := det.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestBaselinesCLI(t *testing.T) {
	d := newDataDir(t)
	if out := mustRun(t, "", "--data-dir", d, "baselines", "show"); !strings.Contains(out, "no baselines yet") {
		t.Fatalf("empty show: %q", out)
	}
	learnBaselines(t, d)

	var rows []struct {
		Tenant, Metric, Key string
		Mean, Stddev        float64
		Threshold           float64
		Pinned, Learning    bool
		Samples             int
	}
	if err := json.Unmarshal([]byte(mustRun(t, "", "--data-dir", d, "--json", "baselines", "show", "--all")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("rows = %+v", rows)
	}
	login, exec := rows[0], rows[1]
	if login.Tenant != "system" || login.Metric != "login" || login.Key != "alice" || login.Samples != 6 || login.Learning {
		t.Errorf("login row = %+v", login)
	}
	// 20 an hour for 47 closed hours: mean 20, σ 0, threshold 20 + 3·√20.
	if exec.Tenant != "default" || exec.Metric != "process.exec" || exec.Key != "*" || exec.Mean != 20 || exec.Samples != 47 ||
		exec.Pinned || exec.Learning || exec.Threshold < 33.4 || exec.Threshold > 33.5 {
		t.Errorf("exec row = %+v", exec)
	}

	out := mustRun(t, "", "--data-dir", d, "baselines", "show", "--tenant", "default")
	if !strings.Contains(out, "THRESHOLD/H") || !strings.Contains(out, "process.exec") || !strings.Contains(out, "33.4") || strings.Contains(out, "alice") {
		t.Fatalf("show --tenant default:\n%s", out)
	}

	mustRun(t, "", "--data-dir", d, "baselines", "pin", "process.exec", "*", "500", "--tenant", "default")
	out = mustRun(t, "", "--data-dir", d, "baselines", "show", "--tenant", "default")
	if !strings.Contains(out, "500.0 (pinned)") {
		t.Fatalf("after pin:\n%s", out)
	}
	// Pinning before anything was learned creates the series.
	mustRun(t, "", "--data-dir", d, "baselines", "pin", "session.create", "bob", "3", "--tenant", "system")
	if out := mustRun(t, "", "--data-dir", d, "baselines", "show", "--tenant", "system"); !strings.Contains(out, "3.0 (pinned)") {
		t.Fatalf("pin of a new series:\n%s", out)
	}

	mustRun(t, "", "--data-dir", d, "baselines", "unpin", "process.exec", "*", "--tenant", "default")
	if out := mustRun(t, "", "--data-dir", d, "baselines", "show", "--tenant", "default"); strings.Contains(out, "pinned") {
		t.Fatalf("after unpin:\n%s", out)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"pin", "process.exec", "*", "5"}, "--tenant"},
		{[]string{"pin", "proces.exec", "*", "5", "--tenant", "default"}, "unknown metric"},
		{[]string{"pin", "--tenant", "default", "--", "process.exec", "*", "-1"}, "VALUE"},
		{[]string{"pin", "process.exec", "*", "NaN", "--tenant", "default"}, "VALUE"},
		{[]string{"pin", "process.exec", "*", "5", "--tenant", "nosuch"}, "does not exist"},
		{[]string{"unpin", "process.exec", "*", "--tenant", "default"}, "no pinned threshold"},
		{[]string{"show", "--tenant", "default", "--all"}, "not both"},
		{[]string{"show", "--tenant", "nosuch"}, "does not exist"},
	} {
		_, _, err := run(t, "", append([]string{"--data-dir", d, "baselines"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("baselines %v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
}
