package audit

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/titanous/json5"
)

// Config is a parsed openclaw.json (JSON5). Values are the JSON5
// decoder's: map[string]any, []any, string, json5.Number, bool, nil.
type Config struct {
	Path string
	Root map[string]any
	src  []byte
}

// maxConfigBytes bounds the config file the audit reads.
const maxConfigBytes = 16 << 20

// LoadConfig reads and parses path. A missing file is (nil, nil): an
// OpenClaw install without a config runs on defaults.
func LoadConfig(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return ParseConfig(path, src)
}

// ParseConfig parses src, the contents of the config at path.
func ParseConfig(path string, src []byte) (*Config, error) {
	if len(src) > maxConfigBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxConfigBytes)
	}
	dec := json5.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		// The decoder's messages quote no values, only positions.
		return nil, fmt.Errorf("%s: not valid JSON5: %v", path, err)
	}
	m, ok := root.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: the top level is not an object", path)
	}
	return &Config{Path: path, Root: m, src: src}, nil
}

// Get returns the value at the dotted key path ("gateway.auth.mode").
func (c *Config) Get(path string) (any, bool) {
	if c == nil {
		return nil, false
	}
	var v any = c.Root
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// String returns the string at path, or "".
func (c *Config) String(path string) string {
	v, _ := c.Get(path)
	s, _ := v.(string)
	return s
}

// Bool returns the boolean at path and whether it is set.
func (c *Config) Bool(path string) (val, set bool) {
	v, ok := c.Get(path)
	b, isBool := v.(bool)
	return b, ok && isBool
}

// Number returns the number at path and whether it is set.
func (c *Config) Number(path string) (float64, bool) {
	v, ok := c.Get(path)
	if !ok {
		return 0, false
	}
	switch n := v.(type) {
	case json5.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	}
	return 0, false
}

// Strings returns the strings of the array at path.
func (c *Config) Strings(path string) []string {
	v, _ := c.Get(path)
	a, _ := v.([]any)
	var out []string
	for _, e := range a {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// Keys returns the sorted keys of the object at path.
func (c *Config) Keys(path string) []string {
	v, ok := c.Get(path)
	if path == "" {
		v, ok = c.Root, c != nil
	}
	m, isMap := v.(map[string]any)
	if !ok || !isMap {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Match expands a key pattern whose segments may be "*" (any key of an
// object) into the paths that exist, sorted.
func (c *Config) Match(pattern string) []string {
	if c == nil {
		return nil
	}
	var out []string
	var walk func(v any, prefix []string, rest []string)
	walk = func(v any, prefix, rest []string) {
		if len(rest) == 0 {
			out = append(out, strings.Join(prefix, "."))
			return
		}
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		if rest[0] != "*" {
			if next, ok := m[rest[0]]; ok {
				walk(next, append(prefix, rest[0]), rest[1:])
			}
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walk(m[k], append(append([]string(nil), prefix...), k), rest[1:])
		}
	}
	walk(c.Root, nil, strings.Split(pattern, "."))
	return out
}

// Loc returns the location of the key path in this config, with the line
// of its last key when it can be found.
func (c *Config) Loc(path string) Location {
	if c == nil {
		return Location{Key: path}
	}
	return Location{File: c.Path, Key: path, Line: c.line(path)}
}

// line finds the line of path's last key by looking for each key in turn,
// quoted or not, after the previous one. The document already parsed, so
// this only has to be good enough to point a reader at the right line; it
// returns 0 when a key is not found (a key that is only a default).
func (c *Config) line(path string) int {
	off := 0
	for _, k := range strings.Split(path, ".") {
		re, err := regexp.Compile(`(?:"` + regexp.QuoteMeta(k) + `"|'` + regexp.QuoteMeta(k) + `'|\b` + regexp.QuoteMeta(k) + `)\s*:`)
		if err != nil {
			return 0
		}
		loc := re.FindIndex(c.src[off:])
		if loc == nil {
			return 0
		}
		off += loc[1]
	}
	return bytes.Count(c.src[:off], []byte("\n")) + 1
}
