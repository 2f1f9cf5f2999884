package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// sampleReport is a hand-built report over a repository at root: findings
// in several areas and severities, one with a config key and line, one in
// a file outside the repository, one without a file, one merged from
// OpenClaw with a rule id clawhold does not have, and an error.
func sampleReport(root string) *Report {
	cfg := filepath.Join(root, "deploy", "openclaw", "openclaw.json")
	r := &Report{Schema: Schema, Time: time.Date(2026, 11, 25, 1, 2, 3, 0, time.UTC), Duration: 4200 * time.Microsecond}
	r.Target.StateDir = filepath.Join(root, "deploy", "openclaw")
	r.Target.Config = cfg
	r.Target.Repos = []string{root}
	r.Findings = []Finding{
		{ID: "exposure.bind_no_auth", Severity: Critical, Area: Deployment, Title: "Gateway reachable without authentication",
			Evidence: `gateway.bind is "lan" and gateway.auth.mode is "none"`, Remediation: `set gateway.bind to "loopback"`,
			Location: Location{File: cfg, Key: "gateway.bind", Line: 4}, Source: SourceClawhold,
			AlsoReportedBy: []string{SourceOpenClawAudit}, Fixable: true},
		{ID: "secrets.config_plaintext", Severity: Critical, Area: Encryption, Title: "Plaintext credential in openclaw.json",
			Evidence: "models.providers.openai.apiKey is sk… <51 characters>", Remediation: "move it into clawhold's secret store",
			Location: Location{File: cfg, Key: "models.providers.openai.apiKey", Line: 12}, Source: SourceClawhold},
		{ID: "fs.log_world_readable", Severity: Warn, Area: Auditing, Title: "Log file readable by other users",
			Evidence: "mode 0644", Remediation: "chmod 600 /var/log/openclaw.log",
			Location: Location{File: "/var/log/openclaw/openclaw.log"}, Source: SourceClawhold},
		{ID: "encryption.state_unencrypted", Severity: Info, Area: Encryption, Title: "OpenClaw state stored unencrypted",
			Evidence: "no encrypted cell storage", Remediation: "run OpenClaw in a clawhold cell", Source: SourceClawhold},
		{ID: "gateway.trusted_proxies_missing", Severity: Warn, Area: Deployment, Title: "Reverse proxy headers are not trusted",
			Evidence: "gateway.trustedProxies is empty", Remediation: "set gateway.trustedProxies",
			Location: Location{File: cfg, Key: "gateway.trustedProxies"}, Source: SourceOpenClawAudit},
	}
	r.Summary.Critical, r.Summary.Warn, r.Summary.Info = 2, 2, 1
	r.Errors = []string{"images: opening app.tar: no such file"}
	return r
}

func TestWriteTextGroupsByArea(t *testing.T) {
	r := sampleReport("/srv/repo")
	var b bytes.Buffer
	if err := WriteText(&b, r, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if strings.Contains(out, "\x1b") {
		t.Errorf("color escape without color:\n%s", out)
	}
	// Areas in Areas() order: encryption, auditing, deployment.
	enc, aud, dep := strings.Index(out, "ENCRYPTION (2)"), strings.Index(out, "AUDITING (1)"), strings.Index(out, "DEPLOYMENT (2)")
	if enc < 0 || aud < 0 || dep < 0 || !(enc < aud && aud < dep) {
		t.Errorf("areas missing or out of order (%d, %d, %d):\n%s", enc, aud, dep, out)
	}
	// Worst first inside an area.
	if c, i := strings.Index(out, "secrets.config_plaintext"), strings.Index(out, "encryption.state_unencrypted"); c > i {
		t.Errorf("info before critical in encryption:\n%s", out)
	}
	for _, want := range []string{
		"CRITICAL exposure.bind_no_auth  Gateway reachable without authentication",
		"location:    /srv/repo/deploy/openclaw/openclaw.json:4 gateway.bind",
		`evidence:    gateway.bind is "lan" and gateway.auth.mode is "none"`,
		`remediation: set gateway.bind to "loopback"`,
		"source:      clawhold (also reported by openclaw security audit)",
		"fix:         clawhold audit --fix",
		"source:      openclaw security audit",
		"5 findings: 2 critical, 2 warn, 1 info",
		"1 part of the audit could not run:\n  - images: opening app.tar: no such file",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}

	b.Reset()
	if err := WriteText(&b, r, true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), ansiRed+"CRITICAL") {
		t.Errorf("no color when asked:\n%q", b.String())
	}

	b.Reset()
	if err := WriteText(&b, &Report{Schema: Schema}, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "0 findings: 0 critical, 0 warn, 0 info") {
		t.Errorf("empty report:\n%s", b.String())
	}
}

func TestWriteJSONRoundTrips(t *testing.T) {
	r := sampleReport("/srv/repo")
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if !reflect.DeepEqual(&got, r) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, *r)
	}
	var raw map[string]any
	json.Unmarshal(b.Bytes(), &raw)
	if raw["schema"] != "clawhold.audit/v1" {
		t.Errorf("schema = %v", raw["schema"])
	}
	f := raw["findings"].([]any)[0].(map[string]any)
	if f["severity"] != "critical" || f["area"] != "deployment" || f["location"].(map[string]any)["key"] != "gateway.bind" {
		t.Errorf("first finding = %v", f)
	}

	b.Reset()
	if err := WriteJSON(&b, &Report{Schema: Schema}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"findings": []`) {
		t.Errorf("empty report has no findings array:\n%s", b.String())
	}
}

// sarifSchema compiles the OASIS SARIF 2.1.0 schema in testdata.
func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/sarif/sarif-schema-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	const url = "file:///sarif-schema-2.1.0.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validateSARIF(s *jsonschema.Schema, doc []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

func TestWriteSARIF(t *testing.T) {
	schema := sarifSchema(t)
	root := t.TempDir()
	r := sampleReport(root)
	var b bytes.Buffer
	if err := WriteSARIF(&b, r, root); err != nil {
		t.Fatal(err)
	}
	if err := validateSARIF(schema, b.Bytes()); err != nil {
		t.Fatalf("SARIF does not validate: %v\n%s", err, b.String())
	}

	var log struct {
		Version string
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string
					Rules []struct {
						ID                   string
						Help                 struct{ Text string }
						DefaultConfiguration struct{ Level string }
						Properties           map[string]any
					}
				}
			}
			OriginalURIBaseIDs map[string]struct{ URI string } `json:"originalUriBaseIds"`
			Results            []struct {
				RuleID    string
				RuleIndex int
				Level     string
				Message   struct{ Text string }
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI       string
							URIBaseID string `json:"uriBaseId"`
						}
						Region struct{ StartLine int }
					}
					LogicalLocations []struct{ FullyQualifiedName, Kind string }
				}
				PartialFingerprints map[string]string
			}
			Invocations []struct {
				ToolExecutionNotifications []struct{ Message struct{ Text string } }
			}
		}
	}
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 {
		t.Fatalf("version %q, %d runs", log.Version, len(log.Runs))
	}
	run := log.Runs[0]
	if run.Tool.Driver.Name != "clawhold audit" {
		t.Errorf("driver = %q", run.Tool.Driver.Name)
	}
	if got := run.OriginalURIBaseIDs["%SRCROOT%"].URI; got != fileURI(root)+"/" {
		t.Errorf("%%SRCROOT%% = %q", got)
	}
	var ids []string
	for _, rule := range run.Tool.Driver.Rules {
		ids = append(ids, rule.ID)
	}
	for _, rule := range Rules() {
		if !slices.Contains(ids, rule.ID) {
			t.Errorf("rules lack catalog rule %s", rule.ID)
		}
	}
	oc := slices.Index(ids, "gateway.trusted_proxies_missing")
	if oc < 0 {
		t.Fatalf("rules lack the merged OpenClaw rule: %q", ids)
	}
	if rule := run.Tool.Driver.Rules[oc]; rule.Properties["source"] != SourceOpenClawAudit || rule.Properties["area"] != "deployment" ||
		rule.DefaultConfiguration.Level != "warning" || rule.Help.Text != "set gateway.trustedProxies" {
		t.Errorf("merged rule = %+v", rule)
	}

	if len(run.Results) != len(r.Findings) {
		t.Fatalf("%d results for %d findings", len(run.Results), len(r.Findings))
	}
	fps := map[string]bool{}
	for i, res := range run.Results {
		f := r.Findings[i]
		if res.RuleID != f.ID || ids[res.RuleIndex] != f.ID {
			t.Errorf("result %d: ruleId %s, ruleIndex %d (%s)", i, res.RuleID, res.RuleIndex, ids[res.RuleIndex])
		}
		if len(res.Locations) != 1 || res.Locations[0].PhysicalLocation.Region.StartLine < 1 {
			t.Errorf("result %s has no line: %+v", f.ID, res.Locations)
			continue
		}
		if !strings.HasPrefix(res.Message.Text, f.Title) || !strings.Contains(res.Message.Text, f.Evidence) {
			t.Errorf("result %s message = %q", f.ID, res.Message.Text)
		}
		fp := res.PartialFingerprints[sarifFingerprintKey]
		if fp == "" || fps[fp] {
			t.Errorf("result %s fingerprint %q empty or repeated", f.ID, fp)
		}
		fps[fp] = true
		loc := res.Locations[0]
		if f.Location.Key != "" && (len(loc.LogicalLocations) != 1 || loc.LogicalLocations[0].FullyQualifiedName != f.Location.Key || loc.LogicalLocations[0].Kind != "member") {
			t.Errorf("result %s logical locations = %+v", f.ID, loc.LogicalLocations)
		}
	}
	loc := func(i int) (string, string, int) {
		l := run.Results[i].Locations[0].PhysicalLocation
		return l.ArtifactLocation.URI, l.ArtifactLocation.URIBaseID, l.Region.StartLine
	}
	if uri, base, line := loc(0); uri != "deploy/openclaw/openclaw.json" || base != "%SRCROOT%" || line != 4 {
		t.Errorf("config finding at %s %s:%d", base, uri, line)
	}
	if uri, base, line := loc(2); uri != "file:///var/log/openclaw/openclaw.log" || base != "" || line != 1 {
		t.Errorf("outside finding at %s %s:%d", base, uri, line)
	}
	// No file: the audited config, line 1.
	if uri, base, line := loc(3); uri != "deploy/openclaw/openclaw.json" || base != "%SRCROOT%" || line != 1 {
		t.Errorf("fileless finding at %s %s:%d", base, uri, line)
	}
	if n := run.Invocations[0].ToolExecutionNotifications; len(n) != 1 || n[0].Message.Text != r.Errors[0] {
		t.Errorf("notifications = %+v", n)
	}

	// The same findings in another checkout keep their fingerprints.
	other := t.TempDir()
	var b2 bytes.Buffer
	if err := WriteSARIF(&b2, sampleReport(other), other); err != nil {
		t.Fatal(err)
	}
	for fp := range fps {
		if !strings.Contains(b2.String(), fp) {
			t.Errorf("fingerprint %s changed with the checkout path", fp)
		}
	}

	// Without a root every location is an absolute file URI.
	b.Reset()
	if err := WriteSARIF(&b, r, ""); err != nil {
		t.Fatal(err)
	}
	if err := validateSARIF(schema, b.Bytes()); err != nil {
		t.Fatalf("SARIF without a root does not validate: %v", err)
	}
	if strings.Contains(b.String(), "%SRCROOT%") {
		t.Errorf("SRCROOT without a root:\n%s", b.String())
	}

	// An empty report is a valid log too.
	b.Reset()
	if err := WriteSARIF(&b, &Report{Schema: Schema}, root); err != nil {
		t.Fatal(err)
	}
	if err := validateSARIF(schema, b.Bytes()); err != nil {
		t.Fatalf("empty SARIF does not validate: %v\n%s", err, b.String())
	}
}

// TestSARIFSchemaRejectsBrokenLogs shows the validation has teeth: logs
// broken in ways a writer bug would break them fail it.
func TestSARIFSchemaRejectsBrokenLogs(t *testing.T) {
	schema := sarifSchema(t)
	root := t.TempDir()
	var b bytes.Buffer
	if err := WriteSARIF(&b, sampleReport(root), root); err != nil {
		t.Fatal(err)
	}
	for name, breakIt := range map[string]func(m map[string]any){
		"no version":  func(m map[string]any) { delete(m, "version") },
		"old version": func(m map[string]any) { m["version"] = "2.0.0" },
		"bad level":   func(m map[string]any) { result(m)["level"] = "critical" },
		"line 0": func(m map[string]any) {
			result(m)["locations"].([]any)[0].(map[string]any)["physicalLocation"].(map[string]any)["region"].(map[string]any)["startLine"] = 0
		},
		"message without text": func(m map[string]any) { result(m)["message"] = map[string]any{} },
		"unknown property":     func(m map[string]any) { m["findings"] = []any{} },
		"no driver name": func(m map[string]any) {
			delete(m["runs"].([]any)[0].(map[string]any)["tool"].(map[string]any)["driver"].(map[string]any), "name")
		},
	} {
		var m map[string]any
		if err := json.Unmarshal(b.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		breakIt(m)
		doc, _ := json.Marshal(m)
		if err := validateSARIF(schema, doc); err == nil {
			t.Errorf("%s: broken SARIF validates", name)
		}
	}
}

func result(m map[string]any) map[string]any {
	return m["runs"].([]any)[0].(map[string]any)["results"].([]any)[0].(map[string]any)
}

// Markers around the generated checks table in docs/audit.md.
const (
	checksBegin = "<!-- checks:begin (generated from audit.Rules(); update with CLAWHOLD_UPDATE_DOCS=1 go test ./audit -run TestDocsListEveryCheck) -->"
	checksEnd   = "<!-- checks:end -->"
)

// checksTable is the Markdown table of every rule in docs/audit.md.
func checksTable() string {
	cell := func(s string) string {
		return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
	}
	var b strings.Builder
	b.WriteString("| ID | Severity | Area | Title | Remediation | Fixable |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	for _, r := range Rules() {
		fix := ""
		if r.Fixable {
			fix = "yes"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", r.ID, r.Severity, r.Area, cell(r.Title), cell(r.Remediation), fix)
	}
	return b.String()
}

// TestDocsListEveryCheck fails when docs/audit.md's table of checks is
// not the one Rules() gives; CLAWHOLD_UPDATE_DOCS=1 rewrites it.
func TestDocsListEveryCheck(t *testing.T) {
	const path = "../docs/audit.md"
	doc, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i, j := strings.Index(s, checksBegin), strings.Index(s, checksEnd)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the markers %q and %q around the checks table", path, checksBegin, checksEnd)
	}
	want := checksTable()
	got := strings.TrimPrefix(s[i+len(checksBegin):j], "\n")
	if got == want {
		return
	}
	if os.Getenv("CLAWHOLD_UPDATE_DOCS") == "1" {
		s = s[:i+len(checksBegin)] + "\n" + want + s[j:]
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the checks table in %s", path)
		return
	}
	t.Errorf("%s's checks table is out of date (CLAWHOLD_UPDATE_DOCS=1 go test ./audit -run TestDocsListEveryCheck rewrites it); want:\n%s", path, want)
}
