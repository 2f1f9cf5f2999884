package cmdrule

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// minEncoded is the shortest run of base64 or hex characters worth
// decoding; shorter runs are mostly ordinary words.
const minEncoded = 8

// decodeArgs decodes base64 and hex literals found in the arguments of c
// one level and analyses what they decode to as commands.
func (a *analyzer) decodeArgs(c *Call, sc scope) {
	if sc.decoded {
		return // one level only
	}
	for _, arg := range c.Args {
		a.decodeText(arg, sc)
	}
}

// decodeText looks for encoded runs in s and analyses each one that
// decodes to printable text.
func (a *analyzer) decodeText(s string, sc scope) {
	if sc.decoded || len(s) < minEncoded {
		return
	}
	if strings.Contains(s, `\x`) {
		if t, ok := escapedHex(s); ok {
			a.decoded(t, "hex", sc)
		}
	}
	for i := 0; i < len(s); {
		if !isB64(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isB64(s[j]) {
			j++
		}
		run := s[i:j]
		for j < len(s) && s[j] == '=' {
			j++
		}
		i = j
		if len(run) < minEncoded {
			continue
		}
		if t, ok := decodeHex(run); ok {
			a.decoded(t, "hex", sc)
		} else if t, ok := decodeB64(run); ok {
			a.decoded(t, "base64", sc)
		}
	}
}

func (a *analyzer) decoded(text, origin string, sc scope) {
	sub := scope{depth: sc.depth + 1, origin: origin, decoded: true}
	a.script(text, sub)
}

func isB64(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '+' || c == '/' || c == '-' || c == '_'
}

func decodeB64(run string) (string, bool) {
	enc := base64.RawStdEncoding
	if strings.ContainsAny(run, "-_") {
		enc = base64.RawURLEncoding
	}
	b, err := enc.DecodeString(run)
	if err != nil {
		return "", false
	}
	return printable(b)
}

func decodeHex(run string) (string, bool) {
	run = strings.TrimPrefix(run, "0x")
	if len(run)%2 != 0 {
		return "", false
	}
	b, err := hex.DecodeString(run)
	if err != nil {
		return "", false
	}
	return printable(b)
}

// escapedHex decodes \xHH sequences, as printf and echo -e do.
func escapedHex(s string) (string, bool) {
	var b []byte
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, k := parseBase(s[i+2:], 16, 2); k == 2 {
				b = append(b, byte(v))
				i += 3
				n++
				continue
			}
		}
		b = append(b, s[i])
	}
	if n < 4 {
		return "", false
	}
	return printable(b)
}

// printable accepts decoded bytes that look like text: a payload meant
// for a shell is printable, while random words decode to binary noise.
func printable(b []byte) (string, bool) {
	if len(b) < 4 {
		return "", false
	}
	letters := 0
	for _, c := range b {
		switch {
		case c == '\n' || c == '\t' || c == '\r':
		case c < 0x20 || c > 0x7e:
			return "", false
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
			letters++
		}
	}
	if letters < 2 {
		return "", false
	}
	return string(b), true
}
