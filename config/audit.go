package config

import "time"

// Audit configures the posture audit clawhold up runs by itself
// (docs/audit.md, "Continuous mode").
type Audit struct {
	// Interval is how often clawhold up re-runs the native checks on its
	// data dir and every cell (default 1h); a changed config file triggers
	// a run at once. 0 turns the continuous audit off.
	Interval Duration `yaml:"interval"`
}

func defaultAudit() Audit { return Audit{Interval: Duration(time.Hour)} }

func (v *validator) audit(a Audit) {
	switch {
	case a.Interval < 0:
		v.errorf("audit.interval", "audit.interval is %s: use 0 to turn the continuous audit off, or an interval such as 1h", a.Interval)
	case a.Interval > 0 && a.Interval < Duration(time.Minute):
		v.errorf("audit.interval", "audit.interval is %s: the minimum is 1m (e.g. 1h); use 0 to turn the continuous audit off", a.Interval)
	}
}
