package alert

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestSeverityParseStringJSON(t *testing.T) {
	for i, name := range []string{"info", "low", "medium", "high", "critical"} {
		s, err := ParseSeverity(strings.ToUpper(name))
		if err != nil || s != Severity(i) || s.String() != name {
			t.Fatalf("ParseSeverity(%q) = %v, %v", name, s, err)
		}
		b, err := json.Marshal(s)
		if err != nil || string(b) != `"`+name+`"` {
			t.Fatalf("json %v = %s, %v", s, b, err)
		}
		var back Severity
		if err := json.Unmarshal(b, &back); err != nil || back != s {
			t.Fatalf("unmarshal %s = %v, %v", b, back, err)
		}
	}
	if !(Info < Low && Low < Medium && Medium < High && High < Critical) {
		t.Fatal("severities out of order")
	}
	if _, err := ParseSeverity("severe"); err == nil || !strings.Contains(err.Error(), "critical") {
		t.Fatalf("bad severity: %v", err)
	}
	var s Severity
	if err := json.Unmarshal([]byte(`"urgent"`), &s); err == nil {
		t.Fatal("unknown severity unmarshalled")
	}
	if _, err := json.Marshal(Severity(9)); err == nil {
		t.Fatal("out-of-range severity marshalled")
	}
}

func TestAlertJSONAndFill(t *testing.T) {
	now := time.Date(2026, 11, 25, 3, 40, 0, 0, time.UTC)
	a := Alert{Rule: "cmd.download-exec", Severity: Critical, Title: "curl | sh"}
	a.fill(now)
	if len(a.ID) != 32 || a.Tenant != SystemTenant || a.Count != 1 || !a.Time.Equal(now) || !a.FirstSeen.Equal(now) || !a.LastSeen.Equal(now) {
		t.Fatalf("fill: %+v", a)
	}
	if b := NewID(); b == a.ID {
		t.Fatal("ids repeat")
	}
	b, _ := json.Marshal(a)
	for _, want := range []string{`"severity":"critical"`, `"rule":"cmd.download-exec"`, `"tenant":"system"`, `"count":1`, `"first_seen":"2026-11-25T03:40:00Z"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var back Alert
	if err := json.Unmarshal(b, &back); err != nil || back.Severity != Critical || back.ID != a.ID {
		t.Fatalf("round trip: %+v %v", back, err)
	}
}

func TestWriterOneLinePerAlertNoInjection(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter("stderr", &buf)
	a := Alert{ID: "abc", Time: time.Date(2026, 11, 25, 3, 40, 0, 0, time.UTC), Tenant: "acme", Rule: "cmd.download-exec",
		Severity: High, User: "bob smith", Title: "evil\n2026-11-25T00:00:00Z INFO fake \x1b[2Jline", Count: 1}
	if err := w.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if err := w.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	if strings.ContainsRune(buf.String(), 0x1b) {
		t.Fatal("terminal escape passed through")
	}
	want := `2026-11-25T03:40:00Z HIGH cmd.download-exec tenant=acme user="bob smith" id=abc count=1 "evil\n2026-11-25T00:00:00Z INFO fake \x1b[2Jline"`
	if lines[0] != want {
		t.Fatalf("line\n got %s\nwant %s", lines[0], want)
	}
}
