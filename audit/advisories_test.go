package audit

import "testing"

func TestEmbeddedAdvisories(t *testing.T) {
	advs, err := parseAdvisories(embeddedAdvisories)
	if err != nil {
		t.Fatalf("embedded advisories.json: %v", err)
	}
	// No real OpenClaw advisory was found to ship (see advisories.json's
	// comment in deployment.go); the fake one must never be embedded.
	for _, a := range advs {
		if a.ID == "CLAWHOLD-TEST-0001" {
			t.Error("the test advisory is embedded")
		}
	}
	if _, err := parseAdvisories([]byte(`{"schema":"clawhold.advisories/v1","advisories":[{"id":"X","title":"t","severity":"warn","affected":[{"fixed":"2026.x"}]}]}`)); err == nil {
		t.Error("a bad version parsed")
	}
	if _, err := parseAdvisories([]byte(`{"advisories":[]}`)); err == nil {
		t.Error("a file without schema parsed")
	}
}

func TestAdvisoryRanges(t *testing.T) {
	a := Advisory{Affected: []AffectedRange{{Introduced: "2026.1.0", Fixed: "2026.9.7"}, {Introduced: "2027.2.1"}}}
	for v, want := range map[string]bool{
		"2025.12.31":      false,
		"2026.1.0":        true,
		"2026.9.6":        true,
		"2026.9.7-beta.1": true, // a pre-release of the fix is before it
		"2026.9.7":        false,
		"2026.10.1":       false,
		"2027.2.1":        true, // no fix yet
		"2027.12.1":       true,
	} {
		pv, ok := parseOpenClawVersion(v)
		if !ok {
			t.Fatalf("%s does not parse", v)
		}
		if got := a.affects(pv); got != want {
			t.Errorf("%s: affected %v, want %v", v, got, want)
		}
	}
	if _, ok := parseOpenClawVersion("latest"); ok {
		t.Error("latest parsed")
	}
}

// The advisory finding carries the advisory's severity, and a version
// outside its range is clean.
func TestAdvisorySeverityAndFixedVersion(t *testing.T) {
	f := newFixture(t)
	f.env["CLAWHOLD_ADVISORIES"] = fakeAdvisories(t)
	f.set("meta.lastTouchedVersion", "2026.9.6")
	got := findingsOf(f.run(), "deployment.openclaw_advisory")
	if len(got) != 1 || got[0].Severity != Critical {
		t.Fatalf("got %+v, want one critical finding", got)
	}
	f.set("meta.lastTouchedVersion", "2026.9.7")
	if got := findingsOf(f.run(), "deployment.openclaw_advisory"); len(got) != 0 {
		t.Errorf("fixed version: %+v", got)
	}
}
