package stream

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

func TestJSONLines(t *testing.T) {
	var buf bytes.Buffer
	emit := JSONLines[map[string]string](&buf)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); emit(map[string]string{"argv": "a && b <c>"}) }()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50", len(lines))
	}
	for _, l := range lines {
		var m map[string]string
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["argv"] != "a && b <c>" {
			t.Fatalf("line %q: %v", l, err)
		}
	}
	if !strings.Contains(lines[0], "a && b <c>") {
		t.Errorf("HTML characters escaped: %s", lines[0])
	}
}
