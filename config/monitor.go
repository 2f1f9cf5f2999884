package config

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// Monitor configures detection and the audit log (docs/monitoring.md):
// what clawhold up watches, how long evidence is kept and what "normal"
// means before a deviation alerts.
type Monitor struct {
	// Retention is how long audit log records are kept (default 365d);
	// 0 keeps them forever.
	Retention Duration `yaml:"retention"`
	// CheckpointInterval is how often each log's head is signed while it
	// grows (default 1m).
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
	// Rules are extra command-rule files (YAML); a rule with the id of a
	// default rule replaces it.
	Rules []string `yaml:"rules"`
	// DisableRules turns rules off by id.
	DisableRules []string   `yaml:"disable_rules"`
	FileAccess   FileAccess `yaml:"file_access"`
	Logins       Logins     `yaml:"logins"`
	Baselines    Baselines  `yaml:"baselines"`
}

// FileAccess configures credential-file access tracking (fanotify).
type FileAccess struct {
	// Enabled watches each cell's OpenClaw credentials and state, .env,
	// ~/.ssh and ~/.aws, and clawhold's root key file (default true).
	Enabled bool `yaml:"enabled"`
	// Paths are extra absolute paths to watch.
	Paths []string `yaml:"paths"`
}

// Logins configures login anomaly detection.
type Logins struct {
	// LearningPeriod keeps a new user's anomalies quiet while clawhold
	// learns their habits (default 24h).
	LearningPeriod Duration `yaml:"learning_period"`
	// TravelSpeedKmh is the speed between two logins above which travel is
	// impossible, with frontdoor.geoip_city_db (default 1000).
	TravelSpeedKmh float64 `yaml:"travel_speed_kmh"`
	// CountryChangeWindow: without a city database, a country change
	// within this window is impossible travel (default 6h).
	CountryChangeWindow Duration `yaml:"country_change_window"`
	// BruteForceFailures is how many failed logins for one user within
	// FailureWindow alert (default 10).
	BruteForceFailures int `yaml:"brute_force_failures"`
	// StuffingAccounts is how many distinct users failing from one address
	// within FailureWindow alert (default 5).
	StuffingAccounts int `yaml:"stuffing_accounts"`
	// FailureWindow is the window of the two counts above (default 10m).
	FailureWindow Duration `yaml:"failure_window"`
}

// Baselines configures learned thresholds.
type Baselines struct {
	// Sensitivity is k in mean + k·σ (default 3): lower alerts sooner.
	Sensitivity float64 `yaml:"sensitivity"`
	// Thresholds pin a threshold per hour by hand: "metric" or
	// "metric/key" → value.
	Thresholds map[string]float64 `yaml:"thresholds"`
}

// Alerts configures where alerts go.
type Alerts struct {
	// DedupeWindow folds repeats of one alert into one summary with a
	// count (default 10m).
	DedupeWindow Duration `yaml:"dedupe_window"`
	// RateLimit is the most alerts one sink sends per minute (default 30);
	// the excess becomes one summary.
	RateLimit int         `yaml:"rate_limit"`
	Sinks     []AlertSink `yaml:"sinks"`
}

// AlertSink is one destination for alerts.
type AlertSink struct {
	Name        string   `yaml:"name"`         // default: the type
	Type        string   `yaml:"type"`         // webhook, slack, smtp, syslog, stderr
	MinSeverity string   `yaml:"min_severity"` // default medium
	Rules       []string `yaml:"rules"`        // only these rule ids (globs); empty = all
	URL         string   `yaml:"url"`          // webhook, slack
	Secret      string   `yaml:"secret"`       // system secret: webhook HMAC key, SMTP password
	Address     string   `yaml:"address"`      // smtp host:port; syslog udp://, tcp://, unix://
	From        string   `yaml:"from"`         // smtp
	To          []string `yaml:"to"`           // smtp
	Username    string   `yaml:"username"`     // smtp
	StartTLS    string   `yaml:"starttls"`     // smtp: required (default) | none (loopback only)
	CAFile      string   `yaml:"ca_file"`      // smtp, webhook, slack: extra CA (PEM)
	Facility    string   `yaml:"facility"`     // syslog, default auth
}

func defaultMonitor() Monitor {
	return Monitor{
		Retention:          Duration(365 * Day),
		CheckpointInterval: Duration(time.Minute),
		FileAccess:         FileAccess{Enabled: true},
		Logins: Logins{
			LearningPeriod: Duration(24 * time.Hour), TravelSpeedKmh: 1000,
			CountryChangeWindow: Duration(6 * time.Hour), BruteForceFailures: 10,
			StuffingAccounts: 5, FailureWindow: Duration(10 * time.Minute),
		},
		Baselines: Baselines{Sensitivity: 3},
	}
}

func defaultAlerts() Alerts {
	return Alerts{DedupeWindow: Duration(10 * time.Minute), RateLimit: 30}
}

// Severities are the alert severities, lowest first.
var severities = []string{"info", "low", "medium", "high", "critical"}

// syslogFacilities are the RFC 5424 facility names a sink may use.
var syslogFacilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
	"authpriv", "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

func (v *validator) monitor(m Monitor) {
	if m.Retention < 0 {
		v.errorf("monitor.retention", "monitor.retention is %s: use 0 to keep audit log records forever, or a duration such as 365d", m.Retention)
	} else if m.Retention > 0 && m.Retention < Duration(Day) {
		v.errorf("monitor.retention", "monitor.retention is %s: the minimum is 1d (evidence must outlive an incident's discovery); use 0 to keep records forever", m.Retention)
	}
	if m.CheckpointInterval < Duration(time.Second) || m.CheckpointInterval > Duration(24*time.Hour) {
		v.errorf("monitor.checkpoint_interval", "monitor.checkpoint_interval is %s: use a duration between 1s and 24h (default 1m)", m.CheckpointInterval)
	}
	for _, p := range m.Rules {
		v.absPath("monitor.rules", p)
	}
	for _, id := range m.DisableRules {
		if strings.TrimSpace(id) == "" {
			v.errorf("monitor.disable_rules", "monitor.disable_rules has an empty rule id: list ids as `clawhold rules list` prints them")
		}
	}
	for _, p := range m.FileAccess.Paths {
		v.absPath("monitor.file_access.paths", p)
	}
	l := m.Logins
	if l.LearningPeriod < 0 {
		v.errorf("monitor.logins.learning_period", "monitor.logins.learning_period is %s: use 0 to alert from the first login, or a duration such as 24h", l.LearningPeriod)
	}
	if l.TravelSpeedKmh <= 0 {
		v.errorf("monitor.logins.travel_speed_kmh", "monitor.logins.travel_speed_kmh is %g: use a speed in km/h such as 1000 (an airliner is about 900)", l.TravelSpeedKmh)
	}
	if l.CountryChangeWindow <= 0 {
		v.errorf("monitor.logins.country_change_window", "monitor.logins.country_change_window is %s: use a duration such as 6h", l.CountryChangeWindow)
	}
	if l.BruteForceFailures < 1 {
		v.errorf("monitor.logins.brute_force_failures", "monitor.logins.brute_force_failures is %d: use a count such as 10", l.BruteForceFailures)
	}
	if l.StuffingAccounts < 2 {
		v.errorf("monitor.logins.stuffing_accounts", "monitor.logins.stuffing_accounts is %d: use a count of distinct accounts of at least 2, such as 5", l.StuffingAccounts)
	}
	if l.FailureWindow <= 0 {
		v.errorf("monitor.logins.failure_window", "monitor.logins.failure_window is %s: use a duration such as 10m", l.FailureWindow)
	}
	if m.Baselines.Sensitivity <= 0 {
		v.errorf("monitor.baselines.sensitivity", "monitor.baselines.sensitivity is %g: use a positive number of standard deviations such as 3", m.Baselines.Sensitivity)
	}
	for k, t := range m.Baselines.Thresholds {
		if k == "" || t < 0 {
			v.errorf("monitor.baselines.thresholds", "monitor.baselines.thresholds: %q: %g: name a metric (or metric/key, as `clawhold baselines show` prints) and a count per hour ≥ 0", k, t)
		}
	}
}

func (v *validator) alerts(a Alerts) {
	if a.DedupeWindow < 0 {
		v.errorf("alerts.dedupe_window", "alerts.dedupe_window is %s: use 0 to send every repeat, or a duration such as 10m", a.DedupeWindow)
	}
	if a.RateLimit < 0 {
		v.errorf("alerts.rate_limit", "alerts.rate_limit is %d: use 0 for no limit, or alerts per minute per sink such as 30", a.RateLimit)
	}
	names := map[string]bool{}
	for i, s := range a.Sinks {
		key := func(k string) string { return fmt.Sprintf("alerts.sinks[%d].%s", i, k) }
		name := s.Name
		if name == "" {
			name = s.Type
		}
		if names[name] {
			v.errorf("alerts.sinks", "alerts.sinks[%d]: a second sink named %q: give each sink a distinct name", i, name)
		}
		names[name] = true
		if s.MinSeverity != "" && !slices.Contains(severities, s.MinSeverity) {
			v.errorf("alerts.sinks", "%s is %q: use one of %s", key("min_severity"), s.MinSeverity, strings.Join(severities, ", "))
		}
		for _, g := range s.Rules {
			if _, err := path.Match(g, ""); err != nil {
				v.errorf("alerts.sinks", "%s: %q is not a valid glob: %v", key("rules"), g, err)
			}
		}
		if s.CAFile != "" {
			v.absPath("alerts.sinks", s.CAFile)
		}
		switch s.Type {
		case "webhook", "slack":
			u, err := url.Parse(s.URL)
			switch {
			case s.URL == "" || err != nil || u.Host == "":
				v.errorf("alerts.sinks", "%s is %q: a %s sink needs an http(s) URL", key("url"), s.URL, s.Type)
			case u.Scheme == "http" && !loopbackHost(u.Hostname()):
				v.errorf("alerts.sinks", "%s is %q: alerts carry evidence; use https (plain http is allowed only to loopback)", key("url"), s.URL)
			case u.Scheme != "http" && u.Scheme != "https":
				v.errorf("alerts.sinks", "%s is %q: use an https URL", key("url"), s.URL)
			}
			if s.Type == "webhook" && s.Secret == "" {
				v.errorf("alerts.sinks", "%s is empty: a webhook sink signs every alert with HMAC-SHA256; store a random key with `clawhold secrets set --tenant system NAME` and name it here", key("secret"))
			}
		case "smtp":
			host, _, err := net.SplitHostPort(s.Address)
			if err != nil {
				v.errorf("alerts.sinks", "%s is %q: use host:port, e.g. smtp.example.com:587", key("address"), s.Address)
			}
			if s.From == "" || len(s.To) == 0 {
				v.errorf("alerts.sinks", "alerts.sinks[%d]: an smtp sink needs from and to", i)
			}
			switch s.StartTLS {
			case "", "required":
			case "none":
				if err == nil && !loopbackHost(host) {
					v.errorf("alerts.sinks", "%s is none but %s is not loopback: mail with evidence and a password must not cross a network in plaintext", key("starttls"), key("address"))
				}
			default:
				v.errorf("alerts.sinks", "%s is %q: use required (default) or none (loopback only)", key("starttls"), s.StartTLS)
			}
			if s.Username != "" && s.Secret == "" {
				v.errorf("alerts.sinks", "%s is set but %s is empty: name the system secret holding the SMTP password", key("username"), key("secret"))
			}
		case "syslog":
			u, err := url.Parse(s.Address)
			if err != nil || (u.Scheme != "udp" && u.Scheme != "tcp" && u.Scheme != "unix") || (u.Scheme != "unix" && u.Host == "") || (u.Scheme == "unix" && u.Path == "") {
				v.errorf("alerts.sinks", "%s is %q: use udp://host:514, tcp://host:514 or unix:///dev/log", key("address"), s.Address)
			}
			if s.Facility != "" && !slices.Contains(syslogFacilities, s.Facility) {
				v.errorf("alerts.sinks", "%s is %q: use one of %s", key("facility"), s.Facility, strings.Join(syslogFacilities, ", "))
			}
		case "stderr":
		case "":
			v.errorf("alerts.sinks", "%s is missing: use webhook, slack, smtp, syslog or stderr", key("type"))
		default:
			v.errorf("alerts.sinks", "%s is %q: use webhook, slack, smtp, syslog or stderr", key("type"), s.Type)
		}
	}
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
