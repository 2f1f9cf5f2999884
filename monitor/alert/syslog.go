package alert

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Facilities maps syslog facility names to codes (RFC 5424 §6.2.1).
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// syslogSeverity maps alert severities to syslog severities: critical is
// crit (2), high err (3), medium warning (4), low notice (5), info info (6).
func syslogSeverity(s Severity) int {
	switch {
	case s >= Critical:
		return 2
	case s == High:
		return 3
	case s == Medium:
		return 4
	case s == Low:
		return 5
	}
	return 6
}

// sdID is clawhold's structured-data id; 32473 is the private enterprise
// number RFC 5612 reserves for documentation and examples.
const sdID = "clawhold@32473"

// udpMax bounds a datagram: RFC 5424 §6.1 says receivers should accept
// 2048 octets.
const udpMax = 2048

// Syslog sends RFC 5424 messages over udp://, tcp:// (octet-counting
// framing, RFC 6587 §3.4.1) or unix:// (datagram, falling back to a
// newline-terminated stream). Each alert opens its own connection: alerts
// are rare, and a restarted collector is picked up without reconnect
// logic.
type Syslog struct {
	name     string
	network  string // udp, tcp, unix
	addr     string
	facility int
	hostname string
	pid      int
	timeout  time.Duration
}

// NewSyslog returns a syslog sink for address (udp://host:port,
// tcp://host:port, unix:///dev/log) and facility ("" means auth).
func NewSyslog(name, address, facility string) (*Syslog, error) {
	u, err := url.Parse(address)
	if err != nil {
		return nil, fmt.Errorf("address %q: %w", address, err)
	}
	s := &Syslog{name: name, network: u.Scheme, pid: os.Getpid(), timeout: 10 * time.Second}
	switch u.Scheme {
	case "udp", "tcp":
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return nil, fmt.Errorf("address %q: use %s://host:port", address, u.Scheme)
		}
		s.addr = u.Host
	case "unix":
		if u.Path == "" {
			return nil, fmt.Errorf("address %q: use unix:///dev/log", address)
		}
		s.addr = u.Path
	default:
		return nil, fmt.Errorf("address %q: use udp://host:514, tcp://host:514 or unix:///dev/log", address)
	}
	if facility == "" {
		facility = "auth"
	}
	f, ok := facilities[facility]
	if !ok {
		return nil, fmt.Errorf("unknown facility %q", facility)
	}
	s.facility = f
	s.hostname, _ = os.Hostname()
	return s, nil
}

// Name implements Sink.
func (s *Syslog) Name() string { return s.name }

// Send implements Sink.
func (s *Syslog) Send(ctx context.Context, a Alert) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var d net.Dialer
	network := s.network
	if network == "unix" {
		network = "unixgram"
	}
	conn, err := d.DialContext(ctx, network, s.addr)
	if err != nil && s.network == "unix" {
		// /dev/log is a datagram socket on most systems; some
		// collectors listen on a stream socket instead.
		network = "unix-stream"
		conn, err = d.DialContext(ctx, "unix", s.addr)
	}
	if err != nil {
		return fmt.Errorf("syslog %s://%s: %w", s.network, s.addr, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	msg := s.format(a)
	var frame []byte
	switch network {
	case "tcp":
		frame = append([]byte(strconv.Itoa(len(msg))+" "), msg...)
	case "unix-stream":
		frame = append(msg, '\n')
	default: // udp, unixgram: one message per datagram
		frame = []byte(truncate(string(msg), udpMax))
	}
	if _, err := conn.Write(frame); err != nil {
		return fmt.Errorf("syslog %s://%s: %w", s.network, s.addr, err)
	}
	return nil
}

// format renders one RFC 5424 message:
// <PRI>1 TIMESTAMP HOSTNAME clawhold PROCID MSGID [SD] MSG.
func (s *Syslog) format(a Alert) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "<%d>1 %s %s clawhold %d %s [%s", s.facility*8+syslogSeverity(a.Severity),
		a.Time.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), header(s.hostname, 255), s.pid, header(a.Rule, 32), sdID)
	for _, kv := range [][2]string{
		{"id", a.ID}, {"rule", a.Rule}, {"severity", a.Severity.String()}, {"tenant", a.Tenant},
		{"user", a.User}, {"subject", a.Subject}, {"technique", a.Technique}, {"count", strconv.Itoa(a.Count)},
	} {
		if kv[1] != "" {
			fmt.Fprintf(&b, ` %s="%s"`, kv[0], sdEscape(kv[1]))
		}
	}
	b.WriteString("] ")
	b.WriteString(oneLine(a.Title))
	if a.Description != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(a.Description))
	}
	return []byte(b.String())
}

// header makes a HEADER field: printable US-ASCII without spaces, at most
// n octets, "-" when empty (RFC 5424 §6).
func header(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 33 || r > 126 {
			return '_'
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	return truncate(s, n)
}

// sdEscape escapes a PARAM-VALUE: '"', '\' and ']' get a backslash
// (RFC 5424 §6.3.3); control characters become spaces.
func sdEscape(s string) string {
	return strings.NewReplacer(`"`, `\"`, `\`, `\\`, `]`, `\]`).Replace(oneLine(s))
}
