// Package alert delivers detections to people and machines: signed
// webhooks, Slack-compatible webhooks, mail over SMTP with STARTTLS,
// syslog (RFC 5424) and stderr. A Dispatcher routes each alert by severity
// and rule, folds repeats and storms into summaries with a count, and
// never blocks the detector that raised it.
package alert

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Severity orders alerts; routes send alerts at or above a minimum.
type Severity int

// The severities, lowest first.
const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

// ParseSeverity parses a severity name, ignoring case.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown severity %q: use one of %s", s, strings.Join(severityNames[:], ", "))
}

// String returns the lowercase name.
func (s Severity) String() string {
	if s < Info || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// MarshalText makes JSON (and YAML) carry the lowercase name.
func (s Severity) MarshalText() ([]byte, error) {
	if s < Info || s > Critical {
		return nil, fmt.Errorf("invalid severity %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText parses the name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// SystemTenant is the Tenant of a system-wide alert.
const SystemTenant = "system"

// Alert is one detection, as every sink receives it.
type Alert struct {
	// ID is random (hex); a summary has its own.
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// Tenant is "system" for system-wide alerts.
	Tenant string `json:"tenant"`
	// Rule is the detection's id, e.g. "cmd.download-exec",
	// "login.impossible_travel", "file.unexpected_access".
	Rule        string   `json:"rule"`
	Severity    Severity `json:"severity"`
	Title       string   `json:"title"`
	Description string   `json:"description,omitempty"`
	// Technique is a MITRE ATT&CK technique id, e.g. "T1105".
	Technique string         `json:"technique,omitempty"`
	User      string         `json:"user,omitempty"`
	Subject   string         `json:"subject,omitempty"`
	Evidence  map[string]any `json:"evidence,omitempty"`
	// Count is how many occurrences this alert stands for: 1, or on a
	// summary the number in its window (the first, already sent on its
	// own, included).
	Count     int       `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// NewID returns a random 128-bit id in hex.
func NewID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return hex.EncodeToString(b[:])
}

// fill sets the fields a detector may leave out.
func (a *Alert) fill(now time.Time) {
	if a.ID == "" {
		a.ID = NewID()
	}
	if a.Time.IsZero() {
		a.Time = now
	}
	if a.Tenant == "" {
		a.Tenant = SystemTenant
	}
	if a.Count < 1 {
		a.Count = 1
	}
	if a.FirstSeen.IsZero() {
		a.FirstSeen = a.Time
	}
	if a.LastSeen.IsZero() {
		a.LastSeen = a.Time
	}
}

// Sink delivers alerts somewhere.
type Sink interface {
	// Name identifies the sink in routes, errors and `clawhold alerts test`.
	Name() string
	// Send delivers one alert. An error wrapped with Permanent is not
	// retried.
	Send(ctx context.Context, a Alert) error
}

// Permanent marks err as not worth retrying (a rejected request, a
// server that refuses STARTTLS); the dispatcher retries other errors.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// subjectLine is the one-line summary mail and chat use:
// "CRITICAL: title" (with the count when it stands for several).
func subjectLine(a Alert) string {
	s := strings.ToUpper(a.Severity.String()) + ": " + oneLine(a.Title)
	if a.Count > 1 {
		s += fmt.Sprintf(" (×%d)", a.Count)
	}
	return s
}

// oneLine replaces control characters (newlines, ANSI escapes) with
// spaces: titles carry attacker-influenced text into headers and
// terminals.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

// textBody is the plain-text rendering mail uses.
func textBody(a Alert) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", subjectLine(a))
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-11s %s\n", k+":", oneLine(v))
		}
	}
	field("Severity", a.Severity.String())
	field("Rule", a.Rule)
	field("Technique", a.Technique)
	field("Tenant", a.Tenant)
	field("User", a.User)
	field("Subject", a.Subject)
	field("Time", a.Time.UTC().Format(time.RFC3339))
	if a.Count > 1 {
		field("Count", fmt.Sprint(a.Count))
		field("First seen", a.FirstSeen.UTC().Format(time.RFC3339))
		field("Last seen", a.LastSeen.UTC().Format(time.RFC3339))
	}
	field("Alert ID", a.ID)
	if a.Description != "" {
		fmt.Fprintf(&b, "\n%s\n", a.Description)
	}
	if len(a.Evidence) > 0 {
		ev, err := json.MarshalIndent(a.Evidence, "", "  ")
		if err == nil {
			fmt.Fprintf(&b, "\nEvidence:\n%s\n", ev)
		}
	}
	return b.String()
}
