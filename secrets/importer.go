package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
	"strconv"
	"strings"

	"github.com/joho/godotenv"
	"github.com/titanous/json5"
)

// Imported is one plaintext secret found by ParseDotEnv or ExtractOpenClaw.
type Imported struct {
	Name  string // passes ValidName
	Value []byte // the plaintext; clear it once it is stored
	// Source says where the value was found, e.g.
	// "openclaw.json:gateway.auth.token" or ".env:OPENAI_API_KEY".
	Source string
}

// Unsupported is a plaintext credential that ExtractOpenClaw found but left
// in place, for the operator to deal with by hand.
type Unsupported struct {
	Path   string // config path, e.g. "hooks.token" or "hooks.mappings[0].sessionKey"
	Reason string
}

// maxImportBytes bounds the files ParseDotEnv and ExtractOpenClaw accept.
const maxImportBytes = 4 << 20

// ParseDotEnv reads a .env file and returns its non-empty variables, sorted
// by name, each named after its variable. It parses with
// github.com/joho/godotenv, so it follows that package's dialect: "export"
// prefixes, '#' comments, single- and double-quoted values, and expansion of
// $VAR and ${VAR} in unquoted and double-quoted values from variables
// defined earlier in the file. The expansion is godotenv's, not OpenClaw's
// (whose .env loading does not expand): a value with a '$' is stored as
// godotenv expands it, so single-quote such values first.
//
// A variable name that is not a valid secret name (see ValidName) is an
// error naming the variable and its line. Errors never quote values: a
// syntax error gives the line only, as godotenv's own messages quote the
// file.
func ParseDotEnv(r io.Reader) ([]Imported, error) {
	src, err := io.ReadAll(io.LimitReader(r, maxImportBytes+1))
	defer clear(src)
	if err != nil {
		return nil, fmt.Errorf("secrets: reading .env: %w", err)
	}
	if len(src) > maxImportBytes {
		return nil, fmt.Errorf("secrets: .env is larger than %d bytes", maxImportBytes)
	}
	// godotenv works on a CRLF-normalised copy; so do the error positions.
	norm := bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
	defer clear(norm)
	// The strings in env and in godotenv's internals cannot be zeroed.
	env, err := godotenv.UnmarshalBytes(norm)
	if err != nil {
		return nil, dotEnvError(norm, err)
	}
	var out []Imported
	for _, key := range slices.Sorted(maps.Keys(env)) {
		if env[key] == "" {
			continue
		}
		if err := ValidName(key); err != nil {
			at := ""
			if line := dotEnvKeyLine(norm, key); line > 0 {
				at = fmt.Sprintf(" (line %d)", line)
			}
			return nil, fmt.Errorf("secrets: .env: variable %q%s: %w", key, at, err)
		}
		out = append(out, Imported{Name: key, Value: []byte(env[key]), Source: ".env:" + key})
	}
	return out, nil
}

// dotEnvError turns a godotenv error, whose message quotes the file, into
// one that gives the line at most.
func dotEnvError(src []byte, err error) error {
	msg := err.Error()
	line := 0
	var what string
	switch {
	case strings.HasPrefix(msg, "unexpected character "):
		// `unexpected character %q in variable name near %q`, the second
		// being the rest of the file from the start of the variable name.
		what = "a variable name has a character other than letters, digits, '_' and '.', or the line has no '='"
		const near = " in variable name near "
		if i := strings.Index(msg, near); i >= 0 {
			if rest, err := strconv.Unquote(msg[i+len(near):]); err == nil && bytes.HasSuffix(src, []byte(rest)) {
				line = lineAt(src, len(src)-len(rest))
			}
		}
	case strings.HasPrefix(msg, "unterminated quoted value "):
		// `unterminated quoted value %s`: the value's first line.
		what = "unterminated quoted value"
		if i := bytes.Index(src, []byte(strings.TrimPrefix(msg, "unterminated quoted value "))); i >= 0 {
			line = lineAt(src, i)
		}
	default:
		what = "syntax error"
	}
	if line > 0 {
		return fmt.Errorf("secrets: .env: line %d: %s", line, what)
	}
	return fmt.Errorf("secrets: .env: %s (details withheld: they may quote a value)", what)
}

// dotEnvKeyLine returns the line of the last definition of key, or 0.
func dotEnvKeyLine(src []byte, key string) int {
	found := 0
	for i, line := range bytes.Split(src, []byte("\n")) {
		l := bytes.TrimLeft(line, " \t")
		if rest, ok := bytes.CutPrefix(l, []byte("export")); ok && len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
			l = bytes.TrimLeft(rest, " \t")
		}
		if rest, ok := bytes.CutPrefix(l, []byte(key)); ok {
			if rest = bytes.TrimLeft(rest, " \t"); len(rest) > 0 && (rest[0] == '=' || rest[0] == ':') {
				found = i + 1
			}
		}
	}
	return found
}

// lineAt returns the 1-based line of byte offset off in src.
func lineAt(src []byte, off int) int {
	return 1 + bytes.Count(src[:off], []byte("\n"))
}

// openClawCredentialPaths lists the openclaw.json fields that hold a
// credential and accept a SecretRef, from OpenClaw 2026.9.6's
// docs/reference/secretref-credential-surface.md. "*" matches any object
// key.
func openClawCredentialPaths() []string {
	paths := []string{
		"gateway.auth.token",
		"gateway.auth.password",
		"gateway.remote.token",
		"gateway.remote.password",

		"models.providers.*.apiKey",
		"models.providers.*.headers.*",
		"models.providers.*.request.auth.token",
		"models.providers.*.request.auth.value",
		"models.providers.*.request.headers.*",
		"models.providers.*.request.tls.key",
		"models.providers.*.request.tls.passphrase",
		"models.providers.*.request.proxy.tls.key",
		"models.providers.*.request.proxy.tls.passphrase",

		"skills.entries.*.apiKey",
		"memory.search.remote.apiKey",
		"agents.entries.*.memory.search.remote.apiKey",
		"agents.defaults.sandbox.ssh.identityData",
		"cron.webhookToken",
		"plugins.entries.*.config.*.apiKey", // web search providers
	}
	channels := []struct {
		name   string
		fields []string
	}{
		{"discord", []string{"token", "pluralkit.token"}},
		{"slack", []string{"botToken", "appToken", "userToken", "signingSecret", "relay.authToken"}},
		{"telegram", []string{"botToken", "webhookSecret"}},
		{"matrix", []string{"accessToken", "password"}},
		{"mattermost", []string{"botToken"}},
		{"msteams", []string{"appPassword"}},
		{"feishu", []string{"appSecret", "encryptKey", "verificationToken"}},
		{"googlechat", []string{"serviceAccount"}}, // when given as a JSON string
		{"nostr", []string{"privateKey"}},
	}
	for _, ch := range channels {
		for _, f := range ch.fields {
			paths = append(paths,
				"channels."+ch.name+"."+f,
				"channels."+ch.name+".accounts.*."+f)
		}
	}
	return paths
}

// openClawUnsupportedPaths lists credential fields that OpenClaw does not
// accept as SecretRefs. "[]" matches any array index.
func openClawUnsupportedPaths() []string {
	return []string{
		"hooks.token",
		"hooks.gmail.pushToken",
		"hooks.mappings.[].sessionKey",
		"channels.discord.threadBindings.webhookToken",
		"channels.discord.accounts.*.threadBindings.webhookToken",
	}
}

// ExtractOpenClaw finds the plaintext credentials in an OpenClaw
// openclaw.json (JSON5) at the fields where OpenClaw accepts a SecretRef,
// and returns them with the config rewritten so that each is an exec
// SecretRef {"source":"exec","provider":providerAlias,"id":name} served by
// this package's ServeProvider. The caller must make sure
// secrets.providers.<providerAlias> exists in the config.
//
// A secret's name is its config path joined with '/', e.g.
// "gateway/auth/token" or "models/providers/openai/apiKey". Plaintext means a
// non-empty string other than the "${VAR}" and "$VAR" env shorthands, a
// string using ${VAR} substitution, and OpenClaw's "__OPENCLAW_REDACTED__"
// placeholder; SecretRef objects are left alone.
//
// Plaintext credentials where OpenClaw takes no SecretRef (hooks.token and a
// few others), and fields whose path does not make a valid secret name, are
// left in place and returned in unsupported, by path, for the operator.
//
// rewritten is nil when nothing was found. Otherwise it is the whole config
// as indented plain JSON, which is valid JSON5, with object keys sorted
// (the JSON5 decoder yields maps) and comments, quoting style, hex numbers
// and the like lost; numbers keep their digits. The caller should keep a
// private (0600) backup of the original. Infinity and NaN cannot be written
// as JSON and make ExtractOpenClaw fail.
//
// The decoded config's strings, plaintext included, cannot be zeroed;
// each Imported.Value is a separate copy the caller can clear.
func ExtractOpenClaw(config []byte, providerAlias string) (found []Imported, rewritten []byte, unsupported []Unsupported, err error) {
	if !validProviderAlias(providerAlias) {
		return nil, nil, nil, errors.New(`secrets: provider alias must match ^[a-z][a-z0-9_-]{0,63}$`)
	}
	if len(config) > maxImportBytes {
		return nil, nil, nil, fmt.Errorf("secrets: openclaw.json is larger than %d bytes", maxImportBytes)
	}
	// json5.Decoder does not reject data after the top-level value, so
	// Unmarshal first checks the whole document.
	var whole json5.RawMessage
	err = json5.Unmarshal(config, &whole)
	clear(whole)
	if err != nil {
		return nil, nil, nil, json5Error(config, err)
	}
	dec := json5.NewDecoder(bytes.NewReader(config))
	dec.UseNumber() // keep integers such as Discord ids exact
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, nil, nil, json5Error(config, err)
	}
	if _, ok := root.(map[string]any); !ok {
		return nil, nil, nil, errors.New("secrets: openclaw.json: top level is not an object")
	}

	x := &extractor{
		alias:       providerAlias,
		supported:   splitPatterns(openClawCredentialPaths()),
		unsupported: splitPatterns(openClawUnsupportedPaths()),
		names:       make(map[string]bool),
	}
	root, err = x.walk(root, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(x.found) == 0 {
		return nil, nil, x.skipped, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(root); err != nil {
		return nil, nil, nil, fmt.Errorf("secrets: openclaw.json: writing the rewritten config: %w", err)
	}
	return x.found, buf.Bytes(), x.skipped, nil
}

// json5Error reports a JSON5 syntax error by position only: the decoder's
// message can quote a character of the config.
func json5Error(config []byte, err error) error {
	var se *json5.SyntaxError
	if errors.As(err, &se) && se.Offset >= 0 && se.Offset <= int64(len(config)) {
		off := int(se.Offset)
		line := lineAt(config, off)
		col := off - (bytes.LastIndexByte(config[:off], '\n') + 1)
		return fmt.Errorf("secrets: openclaw.json: JSON5 syntax error at line %d, column %d", line, col)
	}
	return errors.New("secrets: openclaw.json: not valid JSON5")
}

// pathElem is one step of a config path: an object key, or an array index
// when index >= 0.
type pathElem struct {
	key   string
	index int
}

func splitPatterns(ps []string) [][]string {
	out := make([][]string, len(ps))
	for i, p := range ps {
		out[i] = strings.Split(p, ".")
	}
	return out
}

// matches reports whether path matches one of patterns: "*" matches any
// object key, "[]" any array index, anything else that object key.
func matches(patterns [][]string, path []pathElem) bool {
	return slices.ContainsFunc(patterns, func(p []string) bool {
		if len(p) != len(path) {
			return false
		}
		for i, e := range path {
			switch {
			case e.index >= 0:
				if p[i] != "[]" {
					return false
				}
			case p[i] != "*" && p[i] != e.key:
				return false
			}
		}
		return true
	})
}

// displayPath formats path as OpenClaw does: "a.b[0].c".
func displayPath(path []pathElem) string {
	var b strings.Builder
	for i, e := range path {
		switch {
		case e.index >= 0:
			fmt.Fprintf(&b, "[%d]", e.index)
		case i > 0:
			b.WriteByte('.')
			fallthrough
		default:
			b.WriteString(e.key)
		}
	}
	return b.String()
}

type extractor struct {
	alias       string
	supported   [][]string
	unsupported [][]string
	names       map[string]bool // names handed out, to catch collisions
	found       []Imported
	skipped     []Unsupported
}

// walk visits v at path, in sorted key order, and returns what replaces it:
// a SecretRef for a plaintext credential, a JSON number for a JSON5 number.
func (x *extractor) walk(v any, path []pathElem) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		if isSecretRef(v) {
			return v, nil
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			nv, err := x.walk(v[k], append(path, pathElem{key: k, index: -1}))
			if err != nil {
				return nil, err
			}
			v[k] = nv
		}
		return v, nil
	case []any:
		for i := range v {
			nv, err := x.walk(v[i], append(path, pathElem{index: i}))
			if err != nil {
				return nil, err
			}
			v[i] = nv
		}
		return v, nil
	case json5.Number:
		n, err := jsonNumber(string(v))
		if err != nil {
			return nil, fmt.Errorf("secrets: openclaw.json: %s: %w", displayPath(path), err)
		}
		return n, nil
	case float64: // json5 yields Infinity and NaN as float64 even with UseNumber
		return nil, fmt.Errorf("secrets: openclaw.json: %s: Infinity or NaN cannot be written as JSON", displayPath(path))
	case string:
		return x.credential(v, path), nil
	default: // bool, nil
		return v, nil
	}
}

// credential returns what replaces the string s at path.
func (x *extractor) credential(s string, path []pathElem) any {
	if !isPlaintext(s) {
		return s
	}
	p := displayPath(path)
	if matches(x.unsupported, path) {
		x.skipped = append(x.skipped, Unsupported{Path: p, Reason: "OpenClaw does not accept a SecretRef for this field; move the credential out of the config by hand"})
		return s
	}
	if !matches(x.supported, path) {
		return s
	}
	keys := make([]string, len(path))
	for i, e := range path {
		keys[i] = e.key
	}
	name := strings.Join(keys, "/")
	if err := ValidName(name); err != nil {
		x.skipped = append(x.skipped, Unsupported{Path: p, Reason: "the path does not make a valid secret name: " + err.Error()})
		return s
	}
	if x.names[name] {
		x.skipped = append(x.skipped, Unsupported{Path: p, Reason: "the secret name " + name + " is taken by another path"})
		return s
	}
	x.names[name] = true
	x.found = append(x.found, Imported{Name: name, Value: []byte(s), Source: "openclaw.json:" + p})
	return map[string]any{"source": "exec", "provider": x.alias, "id": name}
}

// isSecretRef reports whether m looks like a SecretRef object.
func isSecretRef(m map[string]any) bool {
	for _, k := range []string{"source", "provider", "id"} {
		if _, ok := m[k].(string); !ok {
			return false
		}
	}
	return true
}

// isPlaintext reports whether a config string holds a literal value rather
// than a reference to one.
func isPlaintext(s string) bool {
	if s == "" || s == "__OPENCLAW_REDACTED__" {
		return false
	}
	if rest, ok := strings.CutPrefix(s, "$"); ok && isEnvName(rest) {
		return false // "$VAR"
	}
	// "${VAR}", alone or inside a longer string (env substitution).
	for rest := s; ; {
		i := strings.Index(rest, "${")
		if i < 0 {
			return true
		}
		rest = rest[i+2:]
		if j := strings.IndexByte(rest, '}'); j >= 0 && isEnvName(rest[:j]) {
			return false
		}
	}
}

// isEnvName reports whether s matches OpenClaw's env id rule,
// ^[A-Z][A-Z0-9_]{0,127}$.
func isEnvName(s string) bool {
	if s == "" || len(s) > 128 || s[0] < 'A' || s[0] > 'Z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// jsonNumber rewrites a JSON5 number literal as a JSON one, keeping its
// digits: "+1" → "1", ".5" → "0.5", "5." → "5", "0x1F" → "31".
func jsonNumber(s string) (json.Number, error) {
	n := strings.TrimPrefix(s, "+")
	neg := strings.HasPrefix(n, "-")
	digits := strings.TrimPrefix(n, "-")
	if h, ok := strings.CutPrefix(strings.ToLower(digits), "0x"); ok {
		i, ok := new(big.Int).SetString(h, 16)
		if !ok {
			return "", errors.New("invalid hexadecimal number")
		}
		if neg {
			i.Neg(i)
		}
		n = i.String()
	} else {
		mant, exp, hasExp := strings.Cut(digits, "e")
		if !hasExp {
			mant, exp, hasExp = strings.Cut(digits, "E")
		}
		if strings.HasPrefix(mant, ".") {
			mant = "0" + mant
		}
		mant = strings.TrimSuffix(mant, ".")
		n = mant
		if neg {
			n = "-" + n
		}
		if hasExp {
			n += "e" + exp
		}
	}
	if !json.Valid([]byte(n)) {
		return "", errors.New("number cannot be written as JSON")
	}
	return json.Number(n), nil
}

// OpenClawCredentialPaths returns the openclaw.json credential fields that
// accept a SecretRef (supported) and those that do not (unsupported), as
// dotted patterns: "*" matches any object key, "[]" any array index. The
// audit reports plaintext at both; only the supported ones can be moved
// into a secret store.
func OpenClawCredentialPaths() (supported, unsupported []string) {
	return openClawCredentialPaths(), openClawUnsupportedPaths()
}
