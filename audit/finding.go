// Package audit is clawhold's posture audit of an OpenClaw deployment:
// native checks over an OpenClaw state dir and config, git repositories,
// container images, the live host and clawhold's own data dir, each
// finding with a stable id, a severity, the seed area it serves and a
// location; OpenClaw's own audits merged in when its CLI is there; text,
// JSON and SARIF output; and safe automatic fixes. docs/audit.md lists
// every check.
package audit

import (
	"fmt"
	"strings"
)

// Severity ranks a finding. The zero value is not a severity.
type Severity int

const (
	Info Severity = iota + 1
	Warn
	Critical
)

func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warn:
		return "warn"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// ParseSeverity parses "critical", "warn" (or "warning") and "info".
func ParseSeverity(s string) (Severity, error) {
	switch strings.ToLower(s) {
	case "critical":
		return Critical, nil
	case "warn", "warning":
		return Warn, nil
	case "info":
		return Info, nil
	}
	return 0, fmt.Errorf("unknown severity %q: want critical, warn or info", s)
}

func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// Area is the seed area a check serves.
type Area string

const (
	Encryption Area = "encryption"
	Isolation  Area = "isolation"
	Auditing   Area = "auditing"
	Sandboxing Area = "sandboxing"
	Deployment Area = "deployment"
)

// Areas lists the areas in report order.
func Areas() []Area { return []Area{Encryption, Isolation, Auditing, Sandboxing, Deployment} }

// Location is what a finding concerns: a file, the config key path in it
// when it is a config file (e.g. "gateway.auth.mode"), and the line when
// known (1-based; SARIF viewers point there).
type Location struct {
	File string `json:"file,omitempty"`
	Key  string `json:"key,omitempty"`
	Line int    `json:"line,omitempty"`
}

func (l Location) String() string {
	s := l.File
	if l.Line > 0 {
		s += fmt.Sprintf(":%d", l.Line)
	}
	if l.Key != "" {
		if s != "" {
			s += " "
		}
		s += l.Key
	}
	return s
}

// Sources of findings.
const (
	SourceClawhold        = "clawhold"
	SourceOpenClawAudit   = "openclaw security audit"
	SourceOpenClawSecrets = "openclaw secrets audit"
)

// Finding is one result. Evidence never holds a secret value: checks that
// find one quote its location and a redacted form only.
type Finding struct {
	ID          string   `json:"id"`
	Severity    Severity `json:"severity"`
	Area        Area     `json:"area"`
	Title       string   `json:"title"`
	Evidence    string   `json:"evidence"`
	Remediation string   `json:"remediation"`
	Location    Location `json:"location"`
	Source      string   `json:"source"`
	// AlsoReportedBy names the other sources whose finding was folded
	// into this one (the same problem reported twice).
	AlsoReportedBy []string `json:"also_reported_by,omitempty"`
	// Fixable reports that `clawhold audit --fix` repairs it.
	Fixable bool `json:"fixable,omitempty"`
}

// redact shows the shape of a secret without its value: its length and
// at most its first two characters when it is long enough for that to
// reveal nothing useful.
func redact(secret string) string {
	if len(secret) < 12 {
		return fmt.Sprintf("<%d characters>", len(secret))
	}
	return fmt.Sprintf("%s… <%d characters>", secret[:2], len(secret))
}
