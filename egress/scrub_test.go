package egress

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

// scrubChunkReader yields its data in reads of at most n bytes.
type scrubChunkReader struct {
	data []byte
	n    int
}

func (r *scrubChunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.n, len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func scrubAll(t testing.TB, in, old, new []byte, chunk int) []byte {
	t.Helper()
	out, err := io.ReadAll(newScrubReader(&scrubChunkReader{data: in, n: chunk}, old, new))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestScrubReader(t *testing.T) {
	tests := []struct {
		name, in, old, new string
	}{
		{"empty input", "", "secret", "tok"},
		{"no match", "hello world", "secret", "tok"},
		{"whole", "secret", "secret", "tok"},
		{"middle", "a secret b", "secret", "clawhold:openai"},
		{"many", "secretsecret xsecret secre", "secret", "tok"},
		{"partial prefix at end", "abc secre", "secret", "tok"},
		{"overlapping candidates", "sesesecret", "sesecret", "X"},
		{"self-overlap", "aaaaa", "aa", "b"},
		{"longer replacement", "Bearer sk-123 and sk-123", "sk-123", "clawhold:openai"},
		{"same length", "key=abcdefghijklmno;", "abcdefghijklmno", "clawhold:openai"},
		{"to empty", "xsecretx", "secret", ""},
		{"one byte", "abcabc", "b", "BB"},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 2, 3, 5, 7, 1 << 20} {
			want := bytes.ReplaceAll([]byte(tt.in), []byte(tt.old), []byte(tt.new))
			got := scrubAll(t, []byte(tt.in), []byte(tt.old), []byte(tt.new), chunk)
			if !bytes.Equal(got, want) {
				t.Errorf("%s, chunk %d: got %q, want %q", tt.name, chunk, got, want)
			}
		}
	}
}

// TestScrubReaderNoDelay checks that data not ending in a prefix of the
// secret is passed on before more arrives (server-sent events must not
// stall), and that a possible prefix is held back.
func TestScrubReaderNoDelay(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	s := newScrubReader(pr, []byte("secret"), []byte("tok"))
	type result struct {
		s   string
		err error
	}
	read := func() chan result {
		ch := make(chan result, 1)
		go func() {
			buf := make([]byte, 100)
			n, err := s.Read(buf)
			ch <- result{string(buf[:n]), err}
		}()
		return ch
	}
	go pw.Write([]byte("data: 1\n\nsec"))
	select {
	case r := <-read():
		if r.err != nil || r.s != "data: 1\n\n" {
			t.Fatalf("Read = %q, %v; want the event without the held-back prefix", r.s, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read blocked on data that cannot be part of the secret")
	}
	ch := read()
	go pw.Write([]byte("ret\n\n"))
	select {
	case r := <-ch:
		if r.err != nil || r.s != "tok\n\n" {
			t.Fatalf("Read = %q, %v; want %q", r.s, r.err, "tok\n\n")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read blocked")
	}
}

func TestScrubCheck(t *testing.T) {
	tests := []struct {
		secret, placeholder string
		ok                  bool
	}{
		{"sk-abcdef0123456789", "clawhold:openai", true},
		{"", "clawhold:openai", false},
		{"sk", "", false},
		{"xxclawhold:openaixx", "clawhold:openai", false}, // contains placeholder
		{"hold", "clawhold:openai", false},                // inside placeholder
		{"abcclaw", "clawhold:openai", false},             // suffix overlaps start
		{"openaixyz", "clawhold:openai", false},           // prefix overlaps end
		{"clawhold", "clawhold:openai", false},
	}
	for _, tt := range tests {
		err := scrubCheck([]byte(tt.secret), []byte(tt.placeholder))
		if (err == nil) != tt.ok {
			t.Errorf("scrubCheck(len %d, %q) = %v, want ok=%v", len(tt.secret), tt.placeholder, err, tt.ok)
		}
	}
}

func TestScrubString(t *testing.T) {
	if got := scrubString("Bearer sk-1 sk-1", []byte("sk-1"), []byte("clawhold:x")); got != "Bearer clawhold:x clawhold:x" {
		t.Errorf("got %q", got)
	}
	if got := scrubString("abc", nil, []byte("x")); got != "abc" {
		t.Errorf("empty pattern: got %q", got)
	}
}

func FuzzScrub(f *testing.F) {
	f.Add([]byte("Bearer sk-123 x sk-123sk-12"), []byte("sk-123"), []byte("clawhold:openai"), uint8(3))
	f.Add([]byte("aaaaaaa"), []byte("aa"), []byte("a"), uint8(1))
	f.Add([]byte(strings.Repeat("se", 100)+"secret"), []byte("secret"), []byte(""), uint8(7))
	f.Fuzz(func(t *testing.T, in, old, new []byte, chunk uint8) {
		if len(old) == 0 {
			return
		}
		n := int(chunk)%64 + 1
		got := scrubAll(t, in, old, new, n)
		want := bytes.ReplaceAll(in, old, new)
		if !bytes.Equal(got, want) {
			t.Fatalf("chunk %d: output (len %d) differs from bytes.ReplaceAll (len %d)", n, len(got), len(want))
		}
		if scrubCheck(old, new) == nil && bytes.Contains(got, old) {
			t.Fatalf("output contains the secret (len %d)", len(old))
		}
	})
}
