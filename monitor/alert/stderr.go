package alert

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Writer writes one line per alert to an io.Writer (stderr, a journal):
//
//	2026-11-25T03:40:00Z CRITICAL cmd.download-exec tenant=acme user=bob count=1 "curl … | sh in cell web"
type Writer struct {
	name string
	mu   sync.Mutex
	w    io.Writer
}

// NewWriter returns a sink writing to w.
func NewWriter(name string, w io.Writer) *Writer { return &Writer{name: name, w: w} }

// Name implements Sink.
func (w *Writer) Name() string { return w.name }

// Send implements Sink.
func (w *Writer) Send(_ context.Context, a Alert) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", a.Time.UTC().Format(time.RFC3339), strings.ToUpper(a.Severity.String()), quoteIf(a.Rule))
	for _, kv := range [][2]string{{"tenant", a.Tenant}, {"user", a.User}, {"subject", a.Subject}, {"technique", a.Technique}, {"id", a.ID}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], quoteIf(kv[1]))
		}
	}
	fmt.Fprintf(&b, " count=%d %s\n", a.Count, strconv.Quote(a.Title))
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := io.WriteString(w.w, b.String())
	return err
}

// quoteIf quotes values with spaces, quotes or control characters (a
// title or user name must not forge a second line or a terminal escape).
func quoteIf(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == '"' || r == '=' || r == 0x7f || !strconv.IsPrint(r)
	}) {
		return strconv.Quote(s)
	}
	return s
}
