package openclaw

import (
	"encoding/json"
	"io"
	"os"
	"strings"
	"sync"
)

const (
	// logTailReadBytes bounds how much of the log file LogTail reads.
	logTailReadBytes = 256 << 10
	// logTailLineBytes bounds each line LogTail returns.
	logTailLineBytes = 1024
)

// LogTail returns the last n lines of the gateway's log file, one per line,
// formatted as "time [subsystem] LEVEL message", for test failure messages
// and diagnostics. If the log file is missing or empty (the gateway failed
// before opening it) it returns the tail of the gateway's stdout and stderr.
//
// The gateway redacts credentials itself; as a second line of defence every
// secret-looking string value of the config and of GatewayOptions.Env is
// replaced by "[redacted]". Long lines are cut.
func (g *Gateway) LogTail(n int) string {
	if n <= 0 {
		return ""
	}
	lines := tailLines(readFileTail(g.logPath, logTailReadBytes), n)
	if len(lines) == 0 {
		lines = tailLines(g.output.String(), n)
	}
	if len(lines) == 0 {
		return "(no gateway output)"
	}
	var b strings.Builder
	for _, l := range lines {
		l = redact(formatLogLine(l), g.secrets)
		if len(l) > logTailLineBytes {
			l = l[:logTailLineBytes] + "…"
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

func readFileTail(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-limit, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	s := string(b)
	if off > 0 {
		// Drop the partial first line.
		if _, rest, ok := strings.Cut(s, "\n"); ok {
			s = rest
		}
	}
	return s
}

func tailLines(s string, n int) []string {
	var lines []string
	for l := range strings.Lines(s) {
		if l = strings.TrimRight(l, "\r\n"); strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines[max(len(lines)-n, 0):]
}

// formatLogLine renders one JSONL record of the gateway's log (tslog:
// "0" is a JSON subsystem descriptor, "1" and "message" the text) as
// "time [subsystem] LEVEL message". Anything else is returned as is.
func formatLogLine(line string) string {
	var rec struct {
		Time    string `json:"time"`
		Message string `json:"message"`
		Sub     string `json:"0"`
		Meta    struct {
			Level string `json:"logLevelName"`
		} `json:"_meta"`
	}
	if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &rec) != nil || rec.Message == "" {
		return line
	}
	var sub struct {
		Subsystem string `json:"subsystem"`
	}
	_ = json.Unmarshal([]byte(rec.Sub), &sub)
	var b strings.Builder
	b.WriteString(rec.Time)
	if sub.Subsystem != "" {
		b.WriteString(" [" + sub.Subsystem + "]")
	}
	if rec.Meta.Level != "" {
		b.WriteString(" " + rec.Meta.Level)
	}
	b.WriteString(" " + rec.Message)
	return b.String()
}

func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		s = strings.ReplaceAll(s, sec, "[redacted]")
	}
	return s
}

// TailBuffer keeps the last max bytes written to it: a gateway's recent
// stdout and stderr, safe for the writer and readers at once.
type TailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

// NewTailBuffer returns a TailBuffer of size bytes.
func NewTailBuffer(size int) *TailBuffer { return &TailBuffer{max: size} }

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
