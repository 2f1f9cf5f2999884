package alert

import (
	"bufio"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfc5424 is a parsed message, as a collector would see it.
type rfc5424 struct {
	pri                                   int
	version, ts, host, app, procid, msgid string
	sdID                                  string
	params                                map[string]string
	msg                                   string
}

// parse5424 parses one message strictly enough to catch framing and
// escaping mistakes.
func parse5424(t *testing.T, s string) rfc5424 {
	t.Helper()
	var m rfc5424
	if !strings.HasPrefix(s, "<") {
		t.Fatalf("no PRI: %q", s)
	}
	end := strings.IndexByte(s, '>')
	pri, err := strconv.Atoi(s[1:end])
	if err != nil {
		t.Fatalf("PRI: %q", s)
	}
	m.pri = pri
	f := strings.SplitN(s[end+1:], " ", 7)
	if len(f) != 7 {
		t.Fatalf("header: %q", s)
	}
	m.version, m.ts, m.host, m.app, m.procid, m.msgid = f[0], f[1], f[2], f[3], f[4], f[5]
	rest := f[6]
	if !strings.HasPrefix(rest, "[") {
		t.Fatalf("no SD: %q", rest)
	}
	i := 1
	j := strings.IndexByte(rest, ' ')
	m.sdID = rest[i:j]
	i = j
	m.params = map[string]string{}
	for rest[i] == ' ' {
		eq := strings.IndexByte(rest[i:], '=') + i
		name := rest[i+1 : eq]
		if rest[eq+1] != '"' {
			t.Fatalf("param %s not quoted: %q", name, rest)
		}
		var v strings.Builder
		k := eq + 2
		for ; rest[k] != '"'; k++ {
			if rest[k] == '\\' && (rest[k+1] == '"' || rest[k+1] == '\\' || rest[k+1] == ']') {
				k++
			} else if rest[k] == ']' {
				t.Fatalf("unescaped ] in %s: %q", name, rest)
			}
			v.WriteByte(rest[k])
		}
		m.params[name] = v.String()
		i = k + 1
	}
	if rest[i] != ']' || rest[i+1] != ' ' {
		t.Fatalf("SD not closed at %d: %q", i, rest)
	}
	m.msg = rest[i+2:]
	return m
}

func checkSyslog(t *testing.T, got string, facility int) {
	t.Helper()
	m := parse5424(t, got)
	if m.pri != facility*8+2 || m.version != "1" || m.app != "clawhold" || m.procid != strconv.Itoa(os.Getpid()) || m.msgid != "cmd.download-exec" {
		t.Fatalf("header: %+v", m)
	}
	if ts, err := time.Parse(time.RFC3339Nano, m.ts); err != nil || !ts.Equal(time.Date(2026, 11, 25, 3, 40, 0, 0, time.UTC)) {
		t.Fatalf("timestamp %q: %v", m.ts, err)
	}
	if m.sdID != "clawhold@32473" || m.params["rule"] != "cmd.download-exec" || m.params["severity"] != "critical" ||
		m.params["tenant"] != "acme" || m.params["user"] != `bob "the \builder" [admin]` || m.params["count"] != "1" {
		t.Fatalf("SD params: %q", m.params)
	}
	if !strings.HasPrefix(m.msg, "curl piped to sh: A cell downloaded") || strings.ContainsAny(m.msg, "\r\n") {
		t.Fatalf("MSG: %q", m.msg)
	}
}

func syslogAlert() Alert {
	a := testAlert()
	a.User = `bob "the \builder" [admin]`
	return a
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, err := NewSyslog("syslog", "udp://"+pc.LocalAddr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), syslogAlert()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	checkSyslog(t, string(buf[:n]), 4) // auth

	// A huge description is cut to one datagram a collector accepts.
	a := syslogAlert()
	a.Description = strings.Repeat("é", 5000)
	if err := s.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	n, _, err = pc.ReadFrom(buf)
	if err != nil || n > udpMax {
		t.Fatalf("datagram of %d bytes: %v", n, err)
	}
}

func TestSyslogTCPOctetCounting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames := make(chan string, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r := bufio.NewReader(c)
			for {
				ln, err := r.ReadString(' ')
				if err != nil {
					break
				}
				n, err := strconv.Atoi(strings.TrimSuffix(ln, " "))
				if err != nil {
					frames <- "bad frame length " + ln
					break
				}
				b := make([]byte, n)
				if _, err := io.ReadFull(r, b); err != nil {
					frames <- "short frame"
					break
				}
				frames <- string(b)
			}
			c.Close()
		}
	}()
	s, err := NewSyslog("syslog", "tcp://"+l.Addr().String(), "local3")
	if err != nil {
		t.Fatal(err)
	}
	a := syslogAlert()
	a.Description = "multi\nline ] description"
	for range 2 {
		if err := s.Send(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		select {
		case f := <-frames:
			m := parse5424(t, f)
			if m.pri != 19*8+2 || m.msg != "curl piped to sh: multi line ] description" {
				t.Fatalf("frame %+v", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no frame")
		}
	}
}

func TestSyslogUnixDatagramAndStream(t *testing.T) {
	dir := t.TempDir()
	dgram := filepath.Join(dir, "log")
	pc, err := net.ListenPacket("unixgram", dgram)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	s, _ := NewSyslog("syslog", "unix://"+dgram, "daemon")
	if err := s.Send(t.Context(), syslogAlert()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	checkSyslog(t, string(buf[:n]), 3)

	// A collector on a stream socket: newline-terminated.
	stream := filepath.Join(dir, "stream")
	l, err := net.Listen("unix", stream)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('\n')
		got <- line
	}()
	s, _ = NewSyslog("syslog", "unix://"+stream, "")
	if err := s.Send(t.Context(), syslogAlert()); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-got:
		checkSyslog(t, strings.TrimSuffix(line, "\n"), 4)
	case <-time.After(5 * time.Second):
		t.Fatal("nothing on the stream socket")
	}
}

func TestSyslogSeverityMapAndConfig(t *testing.T) {
	for sev, want := range map[Severity]int{Critical: 2, High: 3, Medium: 4, Low: 5, Info: 6} {
		if got := syslogSeverity(sev); got != want {
			t.Errorf("%v → %d, want %d", sev, got, want)
		}
	}
	for _, bad := range []string{"udp://nohostport", "http://x:514", "unix://", "tcp://", "://"} {
		if _, err := NewSyslog("s", bad, ""); err == nil {
			t.Errorf("address %q accepted", bad)
		}
	}
	if _, err := NewSyslog("s", "udp://127.0.0.1:514", "local9"); err == nil {
		t.Error("facility local9 accepted")
	}
	s, _ := NewSyslog("s", "udp://127.0.0.1:514", "")
	a := syslogAlert()
	a.Rule = "rule with spaces and a very long name beyond thirty-two"
	m := parse5424(t, string(s.format(a)))
	if len(m.msgid) > 32 || strings.Contains(m.msgid, " ") {
		t.Fatalf("MSGID %q", m.msgid)
	}
}
