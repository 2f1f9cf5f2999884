package audit

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The advisories data file lists OpenClaw versions with known security
// advisories (deployment.openclaw_advisory). Its format, schema
// "clawhold.advisories/v1":
//
//	{"schema": "clawhold.advisories/v1",
//	 "advisories": [{"id": "GHSA-...", "title": "...", "severity": "critical",
//	                 "url": "https://...",
//	                 "affected": [{"introduced": "2026.1.0", "fixed": "2026.9.7"}]}]}

// Advisory is one entry of the advisories data file.
type Advisory struct {
	ID       string          `json:"id"`
	Title    string          `json:"title"`
	Severity Severity        `json:"severity"`
	URL      string          `json:"url"`
	Affected []AffectedRange `json:"affected"`
}

// AffectedRange is a half-open range of OpenClaw versions: from
// Introduced (inclusive; "" for every earlier version) to Fixed
// (exclusive; "" when there is no fix yet).
type AffectedRange struct {
	Introduced string `json:"introduced,omitempty"`
	Fixed      string `json:"fixed,omitempty"`
}

// advisoryFile is the data file's shape.
type advisoryFile struct {
	Schema     string     `json:"schema"`
	Advisories []Advisory `json:"advisories"`
}

const advisorySchema = "clawhold.advisories/v1"

// embeddedAdvisories ships with the binary. It is empty: no advisory for
// OpenClaw was found in the pinned release's CHANGELOG or docs. A newer
// list is read from <data dir>/advisories.json or $CLAWHOLD_ADVISORIES
// without a release.
//
//go:embed advisories.json
var embeddedAdvisories []byte

// loadAdvisories returns the advisory list in force and where it came
// from: $CLAWHOLD_ADVISORIES, else <data dir>/advisories.json when it
// exists, else the embedded list.
func loadAdvisories(t *Target) ([]Advisory, string, error) {
	src, data := "embedded advisories.json", embeddedAdvisories
	path := t.Env["CLAWHOLD_ADVISORIES"]
	if path == "" && t.DataDir != "" {
		if p := filepath.Join(t.DataDir, "advisories.json"); fileExists(p) {
			path = p
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, path, fmt.Errorf("reading advisories: %w", err)
		}
		src, data = path, b
	}
	advs, err := parseAdvisories(data)
	if err != nil {
		return nil, src, fmt.Errorf("%s: %w", src, err)
	}
	return advs, src, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func parseAdvisories(b []byte) ([]Advisory, error) {
	var f advisoryFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("not a valid advisories file: %w", err)
	}
	if f.Schema != advisorySchema {
		return nil, fmt.Errorf("schema is %q, want %q", f.Schema, advisorySchema)
	}
	for i, a := range f.Advisories {
		if a.ID == "" || a.Title == "" || a.Severity == 0 || len(a.Affected) == 0 {
			return nil, fmt.Errorf("advisory %d (%q) needs id, title, severity and affected", i, a.ID)
		}
		for _, rg := range a.Affected {
			for _, v := range []string{rg.Introduced, rg.Fixed} {
				if _, ok := parseOpenClawVersion(v); v != "" && !ok {
					return nil, fmt.Errorf("advisory %s: version %q is not YYYY.M.D", a.ID, v)
				}
			}
		}
	}
	return f.Advisories, nil
}

// openClawVersion is a parsed OpenClaw version: YYYY.M.D, optionally
// with a numeric fourth part and a pre-release suffix ("-beta.2"), which
// sorts before the release.
type openClawVersion struct {
	nums [4]int
	pre  string
}

func parseOpenClawVersion(s string) (openClawVersion, bool) {
	var v openClawVersion
	s = strings.TrimPrefix(strings.TrimSpace(s), "v")
	s, v.pre, _ = strings.Cut(s, "-")
	parts := strings.Split(s, ".")
	if len(parts) < 3 || len(parts) > 4 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v.nums[i] = n
	}
	return v, true
}

func (v openClawVersion) compare(w openClawVersion) int {
	for i := range v.nums {
		if v.nums[i] != w.nums[i] {
			if v.nums[i] < w.nums[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case v.pre == w.pre:
		return 0
	case v.pre == "":
		return 1
	case w.pre == "":
		return -1
	case v.pre < w.pre:
		return -1
	}
	return 1
}

// affects reports whether version v falls in one of a's ranges.
func (a Advisory) affects(v openClawVersion) bool {
	for _, rg := range a.Affected {
		if in, ok := parseOpenClawVersion(rg.Introduced); ok && v.compare(in) < 0 {
			continue
		}
		if fx, ok := parseOpenClawVersion(rg.Fixed); ok && v.compare(fx) >= 0 {
			continue
		}
		return true
	}
	return false
}
