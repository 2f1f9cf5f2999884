package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
)

// ANSI styles for WriteText; used only when the caller asks for color.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiDim    = "\x1b[2m"
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[1;33m"
	ansiCyan   = "\x1b[36m"
)

// WriteText writes r for a person: findings grouped by area (in Areas()
// order, worst first inside each), a summary line and the parts of the
// audit that could not run. color adds ANSI styling; the caller decides
// (a terminal, and NO_COLOR unset).
func WriteText(w io.Writer, r *Report, color bool) error {
	tw := &textWriter{w: w, color: color}
	tw.printf("%s\n", tw.style(ansiBold, "clawhold audit of "+r.Target.StateDir))
	if r.Target.Config != "" {
		tw.printf("  config: %s\n", r.Target.Config)
	}
	for _, a := range reportAreas(r) {
		var fs []Finding
		for _, f := range r.Findings {
			if f.Area == a {
				fs = append(fs, f)
			}
		}
		// Worst first; the report's order (area, id, location) otherwise.
		slices.SortStableFunc(fs, func(x, y Finding) int { return int(y.Severity) - int(x.Severity) })
		tw.printf("\n%s\n", tw.style(ansiBold, fmt.Sprintf("%s (%d)", strings.ToUpper(string(a)), len(fs))))
		for _, f := range fs {
			tw.finding(f)
		}
	}
	n := len(r.Findings)
	tw.printf("\n%s: %s critical, %s warn, %s info (%s)\n",
		plural(n, "finding"),
		tw.sevCount(Critical, r.Summary.Critical), tw.sevCount(Warn, r.Summary.Warn), tw.sevCount(Info, r.Summary.Info),
		r.Duration.Round(100_000).String())
	if len(r.Errors) > 0 {
		tw.printf("\n%s\n", tw.style(ansiBold, plural(len(r.Errors), "part")+" of the audit could not run:"))
		for _, e := range r.Errors {
			tw.printf("  - %s\n", e)
		}
	}
	return tw.err
}

// reportAreas lists the areas that have findings: the seed areas in
// Areas() order, then any other (from a merged source) sorted.
func reportAreas(r *Report) []Area {
	seen := map[Area]bool{}
	for _, f := range r.Findings {
		seen[f.Area] = true
	}
	var out, other []Area
	for _, a := range Areas() {
		if seen[a] {
			out = append(out, a)
			delete(seen, a)
		}
	}
	for a := range seen {
		other = append(other, a)
	}
	slices.Sort(other)
	return append(out, other...)
}

type textWriter struct {
	w     io.Writer
	color bool
	err   error
}

func (tw *textWriter) printf(format string, args ...any) {
	if tw.err == nil {
		_, tw.err = fmt.Fprintf(tw.w, format, args...)
	}
}

func (tw *textWriter) style(code, s string) string {
	if !tw.color {
		return s
	}
	return code + s + ansiReset
}

func sevStyle(s Severity) string {
	switch s {
	case Critical:
		return ansiRed
	case Warn:
		return ansiYellow
	}
	return ansiCyan
}

func (tw *textWriter) sevCount(s Severity, n int) string {
	v := fmt.Sprint(n)
	if n == 0 {
		return v
	}
	return tw.style(sevStyle(s), v)
}

func (tw *textWriter) finding(f Finding) {
	sev := fmt.Sprintf("%-8s", strings.ToUpper(f.Severity.String()))
	tw.printf("  %s %s  %s\n", tw.style(sevStyle(f.Severity), sev), tw.style(ansiBold, f.ID), f.Title)
	field := func(label, value string) {
		if value != "" {
			tw.printf("           %s %s\n", tw.style(ansiDim, fmt.Sprintf("%-12s", label+":")), value)
		}
	}
	field("location", f.Location.String())
	field("evidence", f.Evidence)
	field("remediation", f.Remediation)
	if f.Fixable {
		field("fix", "clawhold audit --fix")
	}
	src := f.Source
	if len(f.AlsoReportedBy) > 0 {
		src += " (also reported by " + strings.Join(f.AlsoReportedBy, ", ") + ")"
	}
	field("source", src)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// WriteJSON writes r as indented JSON (schema "clawhold.audit/v1",
// documented field by field in docs/audit.md).
func WriteJSON(w io.Writer, r *Report) error {
	out := *r
	// Consumers iterate findings; an empty audit is [] rather than null.
	if out.Findings == nil {
		out.Findings = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&out); err != nil {
		return fmt.Errorf("writing JSON report: %w", err)
	}
	return nil
}

// SARIF 2.1.0, the subset clawhold writes. Field names follow the spec.
type (
	sarifLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []sarifRun `json:"runs"`
	}
	sarifRun struct {
		Tool               sarifTool                   `json:"tool"`
		Invocations        []sarifInvocation           `json:"invocations,omitempty"`
		OriginalURIBaseIDs map[string]sarifArtifactLoc `json:"originalUriBaseIds,omitempty"`
		Results            []sarifResult               `json:"results"`
	}
	sarifTool struct {
		Driver sarifDriver `json:"driver"`
	}
	sarifDriver struct {
		Name           string      `json:"name"`
		InformationURI string      `json:"informationUri,omitempty"`
		Rules          []sarifRule `json:"rules"`
	}
	sarifRule struct {
		ID                   string         `json:"id"`
		ShortDescription     sarifText      `json:"shortDescription"`
		Help                 sarifText      `json:"help"`
		DefaultConfiguration sarifRuleConf  `json:"defaultConfiguration"`
		Properties           map[string]any `json:"properties"`
	}
	sarifRuleConf struct {
		Level string `json:"level"`
	}
	sarifText struct {
		Text string `json:"text"`
	}
	sarifInvocation struct {
		ExecutionSuccessful        bool                `json:"executionSuccessful"`
		ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications,omitempty"`
	}
	sarifNotification struct {
		Level   string    `json:"level"`
		Message sarifText `json:"message"`
	}
	sarifResult struct {
		RuleID              string            `json:"ruleId"`
		RuleIndex           int               `json:"ruleIndex"`
		Level               string            `json:"level"`
		Message             sarifText         `json:"message"`
		Locations           []sarifLocation   `json:"locations"`
		PartialFingerprints map[string]string `json:"partialFingerprints"`
		Properties          map[string]any    `json:"properties,omitempty"`
	}
	sarifLocation struct {
		PhysicalLocation sarifPhysical     `json:"physicalLocation"`
		LogicalLocations []sarifLogicalLoc `json:"logicalLocations,omitempty"`
	}
	sarifPhysical struct {
		ArtifactLocation sarifArtifactLoc `json:"artifactLocation"`
		Region           sarifRegion      `json:"region"`
	}
	sarifArtifactLoc struct {
		URI       string `json:"uri"`
		URIBaseID string `json:"uriBaseId,omitempty"`
	}
	sarifRegion struct {
		StartLine int `json:"startLine"`
	}
	sarifLogicalLoc struct {
		FullyQualifiedName string `json:"fullyQualifiedName"`
		Kind               string `json:"kind"`
	}
)

// SARIF constants.
const (
	sarifSchemaURI = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
	sarifSrcRoot   = "%SRCROOT%"
	// sarifFingerprintKey names clawhold's partial fingerprint; bump its
	// version only if the hashed fields change.
	sarifFingerprintKey = "clawholdFinding/v1"
)

// sarifLevel maps a severity to a SARIF level.
func sarifLevel(s Severity) string {
	switch s {
	case Critical:
		return "error"
	case Warn:
		return "warning"
	}
	return "note"
}

// securitySeverity is GitHub code scanning's numeric severity (its
// "security-severity" rule property): critical, medium and low.
func securitySeverity(s Severity) string {
	switch s {
	case Critical:
		return "9.0"
	case Warn:
		return "5.0"
	}
	return "2.0"
}

// WriteSARIF writes r as a SARIF 2.1.0 log with one run, for GitHub code
// scanning and other SARIF viewers. Files under repoRoot get URIs
// relative to it (uriBaseId %SRCROOT%), which is what code scanning
// shows against the repository; other files keep absolute file URIs.
// A finding without a file points at the audited config (or the state
// dir), since SARIF viewers need a location for every result.
func WriteSARIF(w io.Writer, r *Report, repoRoot string) error {
	if repoRoot != "" {
		abs, err := filepath.Abs(repoRoot)
		if err != nil {
			return fmt.Errorf("resolving SARIF repository root %s: %w", repoRoot, err)
		}
		repoRoot = abs
	}
	run := sarifRun{
		Tool:    sarifTool{Driver: sarifDriver{Name: "clawhold audit", InformationURI: "https://github.com/clawhold/clawhold/blob/main/docs/audit.md"}},
		Results: []sarifResult{},
	}
	if repoRoot != "" {
		run.OriginalURIBaseIDs = map[string]sarifArtifactLoc{sarifSrcRoot: {URI: fileURI(repoRoot) + "/"}}
	}

	index := map[string]int{}
	addRule := func(id string, area Area, sev Severity, title, remediation, source string) {
		if _, ok := index[id]; ok {
			return
		}
		index[id] = len(run.Tool.Driver.Rules)
		run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{
			ID:                   id,
			ShortDescription:     sarifText{Text: title},
			Help:                 sarifText{Text: remediation},
			DefaultConfiguration: sarifRuleConf{Level: sarifLevel(sev)},
			Properties: map[string]any{
				"area":              string(area),
				"source":            source,
				"severity":          sev.String(),
				"security-severity": securitySeverity(sev),
				"tags":              []string{"security", string(area)},
			},
		})
	}
	for _, rule := range Rules() {
		addRule(rule.ID, rule.Area, rule.Severity, rule.Title, rule.Remediation, SourceClawhold)
	}
	// Rules seen only in merged findings (OpenClaw's checkIds).
	for _, f := range r.Findings {
		addRule(f.ID, f.Area, f.Severity, f.Title, f.Remediation, f.Source)
	}
	if run.Tool.Driver.Rules == nil {
		run.Tool.Driver.Rules = []sarifRule{}
	}

	for _, f := range r.Findings {
		file := f.Location.File
		if file == "" {
			file = r.Target.Config
		}
		if file == "" {
			file = r.Target.StateDir
		}
		art, err := sarifArtifact(file, repoRoot)
		if err != nil {
			return err
		}
		loc := sarifLocation{PhysicalLocation: sarifPhysical{ArtifactLocation: art, Region: sarifRegion{StartLine: max(f.Location.Line, 1)}}}
		if f.Location.Key != "" {
			loc.LogicalLocations = []sarifLogicalLoc{{FullyQualifiedName: f.Location.Key, Kind: "member"}}
		}
		msg := f.Title
		if f.Evidence != "" {
			msg += ": " + f.Evidence
		}
		props := map[string]any{"area": string(f.Area), "source": f.Source, "severity": f.Severity.String()}
		if len(f.AlsoReportedBy) > 0 {
			props["alsoReportedBy"] = f.AlsoReportedBy
		}
		if f.Fixable {
			props["fixable"] = true
		}
		run.Results = append(run.Results, sarifResult{
			RuleID:              f.ID,
			RuleIndex:           index[f.ID],
			Level:               sarifLevel(f.Severity),
			Message:             sarifText{Text: msg},
			Locations:           []sarifLocation{loc},
			PartialFingerprints: map[string]string{sarifFingerprintKey: fingerprint(f.ID, art.URI, f.Location.Key)},
			Properties:          props,
		})
	}

	inv := sarifInvocation{ExecutionSuccessful: true}
	for _, e := range r.Errors {
		inv.ToolExecutionNotifications = append(inv.ToolExecutionNotifications, sarifNotification{Level: "warning", Message: sarifText{Text: e}})
	}
	run.Invocations = []sarifInvocation{inv}

	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sarifLog{Schema: sarifSchemaURI, Version: "2.1.0", Runs: []sarifRun{run}}); err != nil {
		return fmt.Errorf("writing SARIF report: %w", err)
	}
	return nil
}

// sarifArtifact locates file: relative to repoRoot when under it, else an
// absolute file URI.
func sarifArtifact(file, repoRoot string) (sarifArtifactLoc, error) {
	abs, err := filepath.Abs(file)
	if err != nil {
		return sarifArtifactLoc{}, fmt.Errorf("resolving %s: %w", file, err)
	}
	if repoRoot != "" {
		if rel, err := filepath.Rel(repoRoot, abs); err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			u := url.URL{Path: filepath.ToSlash(rel)}
			return sarifArtifactLoc{URI: u.EscapedPath(), URIBaseID: sarifSrcRoot}, nil
		}
	}
	return sarifArtifactLoc{URI: fileURI(abs)}, nil
}

// fileURI is the file:// URI of an absolute path.
func fileURI(abs string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String()
}

// fingerprint identifies a finding across runs: the rule, the file as
// reported (relative to the repository when it is in one, so that the
// checkout's path does not matter) and the config key. Evidence and line
// are left out: they change when unrelated lines move.
func fingerprint(id, uri, key string) string {
	sum := sha256.Sum256([]byte(id + "\x00" + uri + "\x00" + key))
	return hex.EncodeToString(sum[:16])
}
