package egress

import (
	"bytes"
	"errors"
	"io"
)

// scrubReader reads from r with every occurrence of old replaced by new.
// The result is exactly bytes.ReplaceAll of everything r yields, however r
// splits it into reads: scrubReader holds back only the longest tail of
// what it has read that is a proper prefix of old (at most len(old)-1
// bytes), so a stream that does not end in a prefix of old (e.g. an SSE
// event ending in "\n\n") is passed on without delay.
//
// Only the raw bytes of old are found; encodings of it (base64, percent-
// or JSON-escaped forms, compressed bodies) are not. The injector therefore
// refuses content-encoded responses.
type scrubReader struct {
	r        io.Reader
	old, new []byte
	pending  []byte // read but not yet scanned past
	out      []byte // ready to return
	err      error  // from r, returned once pending and out are drained
	buf      []byte
}

// newScrubReader returns a scrubReader. old must not be empty.
func newScrubReader(r io.Reader, old, new []byte) *scrubReader {
	if len(old) == 0 {
		panic("egress: scrub with empty pattern")
	}
	return &scrubReader{r: r, old: old, new: new, buf: make([]byte, 32<<10)}
}

func (s *scrubReader) Read(p []byte) (int, error) {
	for len(s.out) == 0 {
		if s.err != nil {
			if len(s.pending) > 0 {
				s.out = append(s.out[:0], s.pending...)
				s.pending = s.pending[:0]
				break
			}
			return 0, s.err
		}
		n, err := s.r.Read(s.buf)
		s.pending = append(s.pending, s.buf[:n]...)
		if err != nil {
			s.err = err
		}
		s.scan(s.err != nil)
	}
	n := copy(p, s.out)
	s.out = s.out[n:]
	if len(s.out) == 0 {
		s.out = s.out[:0:0]
	}
	return n, nil
}

// scan moves everything in pending that can no longer be part of a match
// into out, replacing the matches. At EOF nothing is held back.
func (s *scrubReader) scan(eof bool) {
	p := s.pending
	var out []byte
	for {
		i := bytes.Index(p, s.old)
		if i < 0 {
			break
		}
		out = append(out, p[:i]...)
		out = append(out, s.new...)
		p = p[i+len(s.old):]
	}
	keep := 0
	if !eof {
		keep = scrubPrefixTail(p, s.old)
	}
	out = append(out, p[:len(p)-keep]...)
	s.out = append(s.out, out...)
	s.pending = append(s.pending[:0], p[len(p)-keep:]...)
}

// scrubPrefixTail returns the length of the longest suffix of p that is a
// proper prefix of old.
func scrubPrefixTail(p, old []byte) int {
	n := min(len(p), len(old)-1)
	for ; n > 0; n-- {
		if bytes.Equal(p[len(p)-n:], old[:n]) {
			return n
		}
	}
	return 0
}

// scrubString replaces every occurrence of old in s by new.
func scrubString(s string, old, new []byte) string {
	if len(old) == 0 || !bytes.Contains([]byte(s), old) {
		return s
	}
	return string(bytes.ReplaceAll([]byte(s), old, new))
}

// scrubCheck reports whether replacing secret by placeholder in any input
// is guaranteed to leave no occurrence of secret. It is, unless one
// contains the other or the end of one overlaps the start of the other
// (then an occurrence could be stitched together from the placeholder and
// the bytes around it). Any realistic high-entropy secret passes.
func scrubCheck(secret, placeholder []byte) error {
	switch {
	case len(secret) == 0:
		return errors.New("empty secret")
	case len(placeholder) == 0:
		return errors.New("empty placeholder")
	case bytes.Contains(secret, placeholder) || bytes.Contains(placeholder, secret):
		return errors.New("secret and placeholder contain one another")
	}
	for k := 1; k < min(len(secret), len(placeholder)); k++ {
		if bytes.Equal(secret[len(secret)-k:], placeholder[:k]) || bytes.Equal(secret[:k], placeholder[len(placeholder)-k:]) {
			return errors.New("secret overlaps the placeholder")
		}
	}
	return nil
}
