package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unicode/utf8"
)

// Lookup returns the stored values of the named secrets. Names that do not
// exist are simply absent from the map; an error fails the whole request.
//
// ServeProvider zeroes every returned slice once the response is written,
// so a Lookup must hand over buffers it does not keep.
type Lookup func(ctx context.Context, names []string) (map[string][]byte, error)

// ProviderTimeout is the budget a command serving OpenClaw's exec provider
// protocol should give ServeProvider: it leaves half a second of OpenClaw's
// default 5 s timeoutMs for process start-up and exit.
const ProviderTimeout = 4500 * time.Millisecond

// Limits of OpenClaw's exec provider protocol (secretref-contract.md).
const (
	maxRequestBytes = 256 << 10 // OpenClaw's request limit
	maxRequestIDs   = 512       // OpenClaw's ids-per-provider limit

	// maxResponseBytes keeps the response below OpenClaw's default
	// maxOutputBytes (1 MiB, stdout and stderr combined) with 4 KiB left
	// for anything the command writes to stderr.
	maxResponseBytes = 1<<20 - 4<<10
)

// Per-id error codes. OpenClaw shows NOT_FOUND and AMBIGUOUS_DUPLICATE_KEY
// to operators and hides the others.
const (
	codeNotFound     = "NOT_FOUND"
	codeAmbiguous    = "AMBIGUOUS_DUPLICATE_KEY" // "name#key" and the object has key twice
	codeInvalidID    = "INVALID_ID"
	codeInvalidValue = "INVALID_VALUE" // not UTF-8, or "name#key" and not a JSON object
	codeTooLarge     = "TOO_LARGE"     // would push the response past maxResponseBytes
)

// ServeProvider answers one request of OpenClaw's exec SecretRef provider
// protocol (version 1): it reads
//
//	{"protocolVersion":1,"provider":"<alias>","ids":["<id>",...]}
//
// from stdin until EOF, resolves the ids with a single call to lookup and
// writes, in one Write,
//
//	{"protocolVersion":1,"values":{"<id>":"<value>",...},"errors":{"<id>":{"code":"NOT_FOUND"},...}}
//
// and a newline to stdout. "errors" is left out when empty. Entries follow
// the order of the request's ids, with duplicates dropped.
//
// An id "name#key" returns field key of the secret name, whose value must be
// a JSON object: a string field is returned as that string, any other field
// as its JSON value (OpenClaw accepts objects on a few fields, such as
// channels.googlechat.serviceAccount). Per-id failures go to "errors":
// INVALID_ID (see ParseID), NOT_FOUND (no such secret or field, or a null
// field), AMBIGUOUS_DUPLICATE_KEY (the object has the field twice),
// INVALID_VALUE (not valid UTF-8, or not a JSON object when a key is asked
// for) and TOO_LARGE (would take the response past OpenClaw's default 1 MiB
// maxOutputBytes; ids are admitted in request order).
//
// A request that is not exactly one JSON object, is larger than 256 KiB, has
// a protocolVersion other than 1, lacks "provider" or "ids", or has more than
// 512 ids is rejected with an error, on which the command must exit non-zero:
// OpenClaw then reports the provider as failed. Unknown request fields are
// ignored, so that fields a later OpenClaw adds to version 1 do not fail every
// secret. Errors never quote the request.
//
// ctx bounds the whole exchange, reading stdin included; commands should use
// ProviderTimeout.
func ServeProvider(ctx context.Context, stdin io.Reader, stdout io.Writer, lookup Lookup) error {
	req, err := readRequest(ctx, stdin)
	if err != nil {
		return err
	}
	ids, err := parseRequest(req)
	if err != nil {
		return err
	}

	results := make([]result, len(ids))
	var names []string
	seen := make(map[string]bool)
	for i, id := range ids {
		r := &results[i]
		r.id = id
		name, key, err := ParseID(id)
		if err != nil {
			r.code = codeInvalidID
			continue
		}
		r.name, r.key = name, key
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}

	var values map[string][]byte
	defer func() {
		for _, v := range values {
			clear(v)
		}
	}()
	if len(names) > 0 {
		values, err = lookup(ctx, names)
		if err != nil {
			return fmt.Errorf("secrets: exec provider: looking up %d secrets: %w", len(names), err)
		}
	}
	for i := range results {
		results[i].resolve(values)
	}

	// The values are escaped by hand straight from the looked-up buffers into
	// resp, so no string copy of a secret is made here, and resp and the
	// looked-up buffers are zeroed on return. Copies outside our reach remain:
	// whatever lookup made while fetching, the pipe's kernel buffer, and
	// OpenClaw's own.
	resp, err := encodeResponse(results)
	if err != nil {
		return err
	}
	defer clear(resp)
	return writeResponse(ctx, stdout, resp)
}

// readRequest reads stdin to EOF, up to maxRequestBytes, giving up when ctx
// is done.
func readRequest(ctx context.Context, stdin io.Reader) ([]byte, error) {
	done := false // the read finished
	if d, ok := ctx.Deadline(); ok {
		if f, ok := stdin.(interface{ SetReadDeadline(time.Time) error }); ok && f.SetReadDeadline(d) == nil {
			// The deadline lets the read below return instead of staying
			// blocked after we have given up; it is lifted once the read
			// is over.
			defer func() {
				if done {
					f.SetReadDeadline(time.Time{})
				}
			}()
		}
	}
	type readResult struct {
		b   []byte
		err error
	}
	ch := make(chan readResult, 1)
	go func() {
		b, err := io.ReadAll(io.LimitReader(stdin, maxRequestBytes+1))
		ch <- readResult{b, err}
	}()
	var res readResult
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("secrets: exec provider: reading request: %w", context.Cause(ctx))
	case res = <-ch:
		done = true
	}
	if errors.Is(res.err, os.ErrDeadlineExceeded) {
		// Our own deadline, which may fire just before ctx's.
		res.err = context.DeadlineExceeded
	}
	if res.err != nil {
		return nil, fmt.Errorf("secrets: exec provider: reading request: %w", res.err)
	}
	if len(res.b) > maxRequestBytes {
		return nil, fmt.Errorf("secrets: exec provider: request larger than %d bytes", maxRequestBytes)
	}
	return res.b, nil
}

// writeResponse writes resp in one Write, bounded by ctx's deadline when
// stdout supports write deadlines.
func writeResponse(ctx context.Context, stdout io.Writer, resp []byte) error {
	if err := context.Cause(ctx); err != nil {
		return fmt.Errorf("secrets: exec provider: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		if f, ok := stdout.(interface{ SetWriteDeadline(time.Time) error }); ok {
			if f.SetWriteDeadline(d) == nil {
				defer f.SetWriteDeadline(time.Time{})
			}
		}
	}
	if _, err := stdout.Write(resp); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = context.DeadlineExceeded
		}
		return fmt.Errorf("secrets: exec provider: writing response: %w", err)
	}
	return nil
}

func malformed(what string) error {
	return fmt.Errorf("secrets: exec provider: malformed request: %s", what)
}

// parseRequest checks req strictly and returns its ids without duplicates.
// Errors from encoding/json are not wrapped: they can quote the input.
func parseRequest(req []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(req))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, malformed("not a JSON object")
	}
	var (
		haveVersion, haveProvider bool
		ids                       []*string
		haveIDs                   bool
		fields                    = make(map[string]bool)
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, malformed(fmt.Sprintf("syntax error at byte %d", dec.InputOffset()))
		}
		key := tok.(string) // Token returns only strings for object keys
		if fields[key] {
			return nil, malformed("duplicate field")
		}
		fields[key] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, malformed(fmt.Sprintf("syntax error at byte %d", dec.InputOffset()))
		}
		switch key {
		case "protocolVersion":
			var v int
			if json.Unmarshal(raw, &v) != nil || v != 1 { // 1.0 or "1" fail to unmarshal
				return nil, malformed("protocolVersion is not 1")
			}
			haveVersion = true
		case "provider":
			var p string
			if raw[0] != '"' || json.Unmarshal(raw, &p) != nil || !validProviderAlias(p) {
				return nil, malformed(`"provider" is not a provider alias (^[a-z][a-z0-9_-]{0,63}$)`)
			}
			haveProvider = true
		case "ids":
			if raw[0] != '[' || json.Unmarshal(raw, &ids) != nil {
				return nil, malformed(`"ids" is not an array of strings`)
			}
			haveIDs = true
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, malformed(fmt.Sprintf("syntax error at byte %d", dec.InputOffset()))
	}
	if len(bytes.TrimLeft(req[dec.InputOffset():], " \t\r\n")) != 0 {
		return nil, malformed("data after the JSON object")
	}
	switch {
	case !haveVersion:
		return nil, malformed(`no "protocolVersion"`)
	case !haveProvider:
		return nil, malformed(`no "provider"`)
	case !haveIDs:
		return nil, malformed(`no "ids"`)
	case len(ids) > maxRequestIDs:
		return nil, malformed(fmt.Sprintf("%d ids, more than %d", len(ids), maxRequestIDs))
	}
	out := make([]string, 0, len(ids))
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == nil {
			return nil, malformed(`"ids" is not an array of strings`)
		}
		if !seen[*id] {
			seen[*id] = true
			out = append(out, *id)
		}
	}
	return out, nil
}

// validProviderAlias reports whether s matches OpenClaw's provider alias
// rule, ^[a-z][a-z0-9_-]{0,63}$.
func validProviderAlias(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// result is the outcome for one requested id.
type result struct {
	id        string
	name, key string // from ParseID
	code      string // error code; "" when val is the answer
	val       []byte // aliases the looked-up value
	raw       bool   // val is a JSON value to copy compacted; else bytes to quote
	size      int    // encoded size of val
}

func (r *result) resolve(values map[string][]byte) {
	if r.code != "" {
		return
	}
	v, ok := values[r.name]
	if !ok {
		r.code = codeNotFound
		return
	}
	if r.key == "" {
		if !utf8.Valid(v) {
			r.code = codeInvalidValue
			return
		}
		r.val, r.size = v, quotedLen(v)
		return
	}
	field, n, err := objectField(v, r.key)
	switch {
	case err != nil:
		r.code = codeInvalidValue
	case n == 0 || string(field) == "null":
		r.code = codeNotFound
	case n > 1:
		r.code = codeAmbiguous
	case !utf8.Valid(field):
		r.code = codeInvalidValue
	default:
		r.val, r.raw, r.size = field, true, compactLen(field)
	}
}

// Fixed parts of a response.
const (
	respHead        = `{"protocolVersion":1,"values":{`
	respErrors      = `},"errors":{`
	respTail        = "}}\n"
	errEntryOverlay = len(`:{"code":""},`) // around the quoted id and the code
	valEntryOverlay = len(`:,`)            // around the quoted id and the value
)

// encodeResponse lays out the response, turning values that do not fit
// within maxResponseBytes into TOO_LARGE errors, first come first served.
// The buffer is sized up front so that it never grows and leaves a stray
// copy of a value behind.
func encodeResponse(results []result) ([]byte, error) {
	errCost := func(r *result, code string) int {
		return quotedLen(r.id) + errEntryOverlay + len(code)
	}
	// Start with every value counted as TOO_LARGE, then admit values in order
	// while they fit. An entry's trailing comma is counted even for the last
	// one, so total is an upper bound.
	total := len(respHead) + len(respErrors) + len(respTail)
	for i := range results {
		r := &results[i]
		if r.code != "" {
			total += errCost(r, r.code)
		} else {
			total += errCost(r, codeTooLarge)
		}
	}
	if total > maxResponseBytes {
		return nil, fmt.Errorf("secrets: exec provider: the errors alone for %d ids exceed the %d-byte response limit", len(results), maxResponseBytes)
	}
	for i := range results {
		r := &results[i]
		if r.code != "" {
			continue
		}
		delta := quotedLen(r.id) + valEntryOverlay + r.size - errCost(r, codeTooLarge)
		if total+delta > maxResponseBytes {
			r.code, r.val = codeTooLarge, nil
			continue
		}
		total += delta
	}

	b := make([]byte, 0, total)
	b = append(b, respHead...)
	nerr := 0
	for i := range results {
		r := &results[i]
		if r.code != "" {
			nerr++
			continue
		}
		if b[len(b)-1] != '{' {
			b = append(b, ',')
		}
		b = appendQuoted(b, r.id)
		b = append(b, ':')
		if r.raw {
			b = appendCompact(b, r.val)
		} else {
			b = appendQuoted(b, r.val)
		}
	}
	if nerr > 0 {
		b = append(b, respErrors...)
		for i := range results {
			r := &results[i]
			if r.code == "" {
				continue
			}
			if b[len(b)-1] != '{' {
				b = append(b, ',')
			}
			b = appendQuoted(b, r.id)
			b = append(b, `:{"code":"`...)
			b = append(b, r.code...)
			b = append(b, `"}`...)
		}
	}
	b = append(b, respTail...)
	if len(b) > total {
		// Cannot happen: total is an upper bound. Fail rather than emit a
		// response OpenClaw would cut off.
		clear(b)
		return nil, errors.New("secrets: exec provider: internal error: response larger than its size estimate")
	}
	return b, nil
}

// quotedLen returns len(appendQuoted(nil, s)) for valid UTF-8 s.
func quotedLen[T ~string | ~[]byte](s T) int {
	n := 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f':
			n += 2
		case c < 0x20:
			n += 6
		default:
			n++
		}
	}
	return n
}

// appendQuoted appends s, which must be valid UTF-8, as a JSON string.
func appendQuoted[T ~string | ~[]byte](b []byte, s T) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			if c < 0x20 {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			} else {
				b = append(b, c)
			}
		}
	}
	return append(b, '"')
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// compactLen returns len(appendCompact(nil, v)) for a valid JSON value v.
func compactLen(v []byte) int {
	n := 0
	inString, escaped := false, false
	for _, c := range v {
		switch {
		case inString:
			n++
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case isJSONSpace(c):
		default:
			n++
			inString = c == '"'
		}
	}
	return n
}

// appendCompact appends the valid JSON value v without insignificant
// whitespace.
func appendCompact(b, v []byte) []byte {
	inString, escaped := false, false
	for _, c := range v {
		switch {
		case inString:
			b = append(b, c)
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case isJSONSpace(c):
		default:
			b = append(b, c)
			inString = c == '"'
		}
	}
	return b
}

// objectField finds the top-level field key of the JSON object data and
// returns its value as a subslice of data (no copy), with how many times the
// key occurs. It fails if data is not a JSON object.
func objectField(data []byte, key string) (val []byte, n int, err error) {
	if !json.Valid(data) {
		return nil, 0, errors.New("not JSON")
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return nil, 0, errors.New("not a JSON object")
	}
	i = skipSpace(data, i+1)
	for data[i] != '}' {
		end := valueEnd(data, i) // the key, a string
		k := data[i:end]
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // ':'
		end = valueEnd(data, i)
		if keyEquals(k, key) {
			n++
			val = data[i:end]
		}
		i = skipSpace(data, end)
		if data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return val, n, nil
}

// keyEquals reports whether the JSON string literal lit decodes to key.
func keyEquals(lit []byte, key string) bool {
	if bytes.IndexByte(lit, '\\') < 0 {
		return string(lit[1:len(lit)-1]) == key
	}
	var s string // keys are not secret: a copy is fine
	return json.Unmarshal(lit, &s) == nil && s == key
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && isJSONSpace(data[i]) {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value starting at data[i],
// which must be valid JSON.
func valueEnd(data []byte, i int) int {
	depth := 0
	inString, escaped := false, false
	for j := i; j < len(data); j++ {
		c := data[j]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
				if depth == 0 {
					return j + 1
				}
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 { // end of an enclosing scalar
				return j
			}
			depth--
			if depth == 0 {
				return j + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return j
			}
		}
	}
	return len(data)
}
