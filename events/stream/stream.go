// Package stream writes event streams: one JSON object per line, the form
// every clawhold component (egress decisions, sandbox and process events)
// emits before detectors and SIEMs read it.
package stream

import (
	"encoding/json"
	"io"
	"sync"
)

// JSONLines returns an event sink writing one JSON object per line to w,
// safe for concurrent use. HTML characters are not escaped (argv like
// "a && b" stays readable). Write errors are dropped: a log must not stall
// what it records; give it a writer that reports its own failures.
func JSONLines[E any](w io.Writer) func(E) {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return func(e E) {
		mu.Lock()
		defer mu.Unlock()
		enc.Encode(e)
	}
}
