package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxKeyAge is the largest keys.max_age the configuration accepts: every key
// version must stop encrypting within 90 days.
const MaxKeyAge = Duration(90 * Day)

// Default returns the configuration used when there is no file, and the base
// that a file's settings are applied on top of.
func Default() *Config {
	return &Config{
		Log: Log{
			Level:  "info",
			Format: "text",
		},
		Store: Store{
			Backend:  "sqlite",
			Postgres: Postgres{MaxConns: 4},
		},
		Keys: Keys{
			Algorithm:        "auto",
			MaxAge:           MaxKeyAge,
			RotateAfter:      Duration(80 * Day),
			MaintainInterval: Duration(time.Hour),
		},
		RootKey: RootKey{
			Backend:           "file",
			Env:               "CLAWHOLD_ROOT_KEY",
			SystemdCredential: "clawhold-root-key",
			Vault:             Vault{Mount: "transit"},
		},
		Egress:    defaultEgress(),
		Frontdoor: defaultFrontdoor(),
		Cells:     defaultCells(),
		Backup:    defaultBackup(),
		Audit:     defaultAudit(),
		Monitor:   defaultMonitor(),
		Alerts:    defaultAlerts(),
	}
}

// RootKeyFile returns the local root key file: root_key.file when set,
// otherwise root.key inside dataDir.
func (c *Config) RootKeyFile(dataDir string) string {
	if c.RootKey.File != "" {
		return c.RootKey.File
	}
	return filepath.Join(dataDir, "root.key")
}

// DefaultPath returns where clawhold looks for its configuration file when
// none is named: $CLAWHOLD_CONFIG if set, /etc/clawhold/clawhold.yaml when
// running as root, otherwise $XDG_CONFIG_HOME/clawhold/clawhold.yaml
// (~/.config/clawhold/clawhold.yaml when XDG_CONFIG_HOME is unset). It
// returns "" only if no home directory can be determined.
func DefaultPath() string {
	return defaultPath(os.Getenv, os.Getuid())
}

func defaultPath(getenv func(string) string, uid int) string {
	if p := getenv("CLAWHOLD_CONFIG"); p != "" {
		return p
	}
	if uid == 0 {
		return "/etc/clawhold/clawhold.yaml"
	}
	// The XDG base directory spec says relative values are to be ignored.
	if x := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "clawhold", "clawhold.yaml")
	}
	if home := homeDir(getenv, uid); home != "" {
		return filepath.Join(home, ".config", "clawhold", "clawhold.yaml")
	}
	return ""
}

// homeDir returns $HOME, falling back to the password database.
func homeDir(getenv func(string) string, uid int) string {
	if h := getenv("HOME"); h != "" {
		return h
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.HomeDir
	}
	return ""
}

// LoadDefault loads the file at DefaultPath. A missing file there means
// "use the defaults", except when $CLAWHOLD_CONFIG names it: a file the
// operator named explicitly must exist.
func LoadDefault() (*Config, error) {
	return loadDefault(os.Getenv, os.Getuid())
}

func loadDefault(getenv func(string) string, uid int) (*Config, error) {
	path := defaultPath(getenv, uid)
	if getenv("CLAWHOLD_CONFIG") != "" || path == "" {
		return Load(path)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return parse(path, data)
}

// Load reads, defaults and validates the configuration file at path, which
// must exist. An empty path means no file: Load returns Default().
//
// Errors name the file, line and dotted key, and say how to fix the problem.
// When a file has several problems they are all reported, one per line.
func Load(path string) (*Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return parse(path, data)
}

// parse decodes data, the contents of file, onto Default() and validates
// the result.
func parse(file string, data []byte) (*Config, error) {
	c := Default()
	c.Path = file
	lines, err := decodeDocument(file, data, c)
	if err != nil {
		return nil, err
	}
	if err := c.validate(lines); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeDocument decodes the single YAML document data, the contents of
// file, onto the struct that out points to, and returns the line of every
// dotted key it set.
func decodeDocument(file string, data []byte, out any) (map[string]int, error) {
	rv := reflect.ValueOf(out).Elem()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF { // empty, or only comments
			return nil, nil
		}
		return nil, yamlError(file, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, yamlError(file, err)
	default:
		return nil, fmt.Errorf("%s:%d: a second YAML document starts here; clawhold reads exactly one document: remove the \"---\" separator and merge the settings into the first", file, next.Line)
	}

	d := &decoder{file: file, lines: make(map[string]int), root: rv.Type()}
	// Look for key material before anything else so that no later error
	// message can echo it.
	d.scanSecrets(&doc, "")
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	if len(doc.Content) == 1 {
		root := resolve(doc.Content[0])
		if !isNull(root) && root.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s:%d: expected a mapping of keys at the top level, got %s", file, root.Line, describe(root))
		}
		d.decodeStruct(root, rv, "", "")
	}
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	return d.lines, nil
}

// yamlError rewrites the parser's "yaml: line N: msg" as "file:N: msg".
func yamlError(file string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, msg, ok := strings.Cut(rest, ": "); ok {
			if _, err := strconv.Atoi(n); err == nil {
				return fmt.Errorf("%s:%s: invalid YAML: %s", file, n, msg)
			}
		}
	}
	return fmt.Errorf("%s: invalid YAML: %s", file, msg)
}

// decoder walks a yaml.Node tree onto a Config, collecting every error.
type decoder struct {
	file  string
	lines map[string]int // dotted key path → line the key is on
	errs  []error
	root  reflect.Type // the document's type, for hints about unknown keys
}

func (d *decoder) errorf(line int, format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf("%s:%d: %s", d.file, line, fmt.Sprintf(format, args...)))
}

var durationType = reflect.TypeFor[Duration]()

// decodeStruct decodes mapping node n onto struct v, whose keys are at
// prefix. generic is prefix with map keys written <name> and list indexes
// [], as keyPaths writes it, for hints about unknown keys.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, prefix, generic string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, "%s: expected a mapping of keys, got %s", prefix, describe(n))
		return
	}
	fields := yamlFields(v.Type())
	seen := make(map[string]int) // key → line it was first set on
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k.Line, "%s: keys must be plain strings, got %s", levelName(prefix), describe(k))
			continue
		}
		if k.ShortTag() == "!!merge" {
			d.errorf(k.Line, "%s: merge keys (<<) are not supported; write the keys out in full", levelName(prefix))
			continue
		}
		path := joinKey(prefix, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, "duplicate key %q (first set on line %d); remove one of them", path, first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			d.errorf(k.Line, "unknown key %q%s", path, unknownKeyHint(d.root, generic, k.Value))
			continue
		}
		d.lines[path] = k.Line
		d.decodeValue(val, v.FieldByIndex(f.Index), path, joinKey(generic, k.Value))
	}
}

// decodeValue decodes n onto the field v at path. A null value (a key with
// nothing after the colon, "~" or "null") leaves the default in place.
func (d *decoder) decodeValue(n *yaml.Node, v reflect.Value, path, generic string) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	switch {
	case v.Type() == durationType:
		var dur Duration
		if err := dur.UnmarshalYAML(n); err != nil {
			d.errorf(n.Line, "%s: %v", path, err)
			return
		}
		v.SetInt(int64(dur))
	case v.Type() == byteSizeType:
		var b ByteSize
		if err := b.UnmarshalYAML(n); err != nil {
			d.errorf(n.Line, "%s: %v", path, err)
			return
		}
		v.SetInt(int64(b))
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path, generic)
	case v.Kind() == reflect.Map:
		d.decodeMap(n, v, path, generic)
	case v.Kind() == reflect.Slice:
		d.decodeSlice(n, v, path, generic)
	case v.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.errorf(n.Line, "%s: expected a string, got %s%s", path, describe(n), quoteHint(n))
			return
		}
		v.SetString(n.Value)
	case v.Kind() == reflect.Int:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.errorf(n.Line, "%s: expected an integer, got %s", path, describe(n))
			return
		}
		if v.OverflowInt(i) {
			d.errorf(n.Line, "%s: %d is too large", path, i)
			return
		}
		v.SetInt(i)
	case v.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.errorf(n.Line, "%s: expected true or false, got %s", path, describe(n))
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Float64:
		var f float64
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") || n.Decode(&f) != nil {
			d.errorf(n.Line, "%s: expected a number, got %s", path, describe(n))
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("config: field %s has unsupported type %s", path, v.Type()))
	}
}

// defaulter is a map value type that has defaults of its own.
type defaulter interface{ setDefaults() }

// decodeMap decodes a mapping of names to structs. The file's mapping
// replaces the default one; each entry starts from its type's defaults.
func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path, generic string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n.Line, "%s: expected a mapping of names, got %s", path, describe(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" || k.Value == "" {
			d.errorf(k.Line, "%s: names must be non-empty strings, got %s", path, describe(k))
			continue
		}
		key := joinKey(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.errorf(k.Line, "duplicate key %q (first set on line %d); remove one of them", key, first)
			continue
		}
		seen[k.Value] = k.Line
		d.lines[key] = k.Line
		elem := reflect.New(v.Type().Elem())
		if df, ok := elem.Interface().(defaulter); ok {
			df.setDefaults()
		}
		d.decodeValue(val, elem.Elem(), key, generic+".<name>")
		m.SetMapIndex(reflect.ValueOf(k.Value), elem.Elem())
	}
	v.Set(m)
}

// decodeSlice decodes a list of structs, integers or strings.
func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path, generic string) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n.Line, "%s: expected a list (\"- item\" lines or [a, b]), got %s", path, describe(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		key := fmt.Sprintf("%s[%d]", path, i)
		d.lines[key] = resolve(item).Line
		d.decodeValue(item, s.Index(i), key, generic+"[]")
	}
	v.Set(s)
}

// scanSecrets reports every scalar in the document that looks like raw key
// material, wherever it is: the root key must never be in the config file.
func (d *decoder) scanSecrets(n *yaml.Node, path string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			d.scanSecrets(c, path)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.scanSecrets(k, path)
			} else if looksLikeRawKey(k.Value) {
				d.errorf(k.Line, "a key in %s looks like a raw 32-byte key: %s", levelName(path), secretFix)
				continue
			}
			d.scanSecrets(val, joinKey(path, k.Value))
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.scanSecrets(c, fmt.Sprintf("%s[%d]", path, i))
		}
	case yaml.ScalarNode:
		if looksLikeRawKey(n.Value) {
			d.errorf(n.Line, "the value of %s looks like a raw 32-byte key: %s", path, secretFix)
		}
	}
}

const secretFix = "key material must never be in the config file. " +
	"Keep the root key in a root key backend (root_key.backend: file, env, systemd-credential, vault-transit, aws-kms or gcp-kms) " +
	"and database passwords in the file named by store.postgres.password_file"

// looksLikeRawKey reports whether s looks like a 32-byte key encoded as
// base64 (standard or URL alphabet, padded or not) or hex.
func looksLikeRawKey(s string) bool {
	s = strings.TrimSpace(s)
	switch len(s) {
	case hex.EncodedLen(32):
		b, err := hex.DecodeString(s)
		return err == nil && len(b) == 32
	case base64.StdEncoding.EncodedLen(32), base64.RawStdEncoding.EncodedLen(32):
		// Random base64 almost always mixes upper case, lower case and
		// digits; requiring all three keeps ordinary words and paths of an
		// unlucky length from tripping the check.
		var upper, lower, digit bool
		for _, r := range s {
			upper = upper || 'A' <= r && r <= 'Z'
			lower = lower || 'a' <= r && r <= 'z'
			digit = digit || '0' <= r && r <= '9'
		}
		if !upper || !lower || !digit {
			return false
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			if b, err := enc.Strict().DecodeString(s); err == nil && len(b) == 32 {
				return true
			}
		}
	}
	return false
}

// resolve follows an alias (*name) to the node it refers to.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what n is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		switch n.ShortTag() {
		case "!!str":
			return "the string " + strconv.Quote(v)
		case "!!int":
			return "the integer " + v
		case "!!float":
			return "the number " + v
		case "!!bool":
			return "the boolean " + v
		case "!!null":
			return "null"
		default:
			return fmt.Sprintf("a %s value", n.ShortTag())
		}
	}
	return "an unexpected node"
}

// quoteHint suggests quoting a scalar that YAML resolved to a non-string.
func quoteHint(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!str" {
		return fmt.Sprintf(`; quote it ("%s") if you mean text`, n.Value)
	}
	return ""
}

// yamlFields maps the yaml key of each of struct type t's fields to the field.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := make(map[string]reflect.StructField)
	for f := range t.Fields() {
		if name, ok := yamlName(f); ok {
			m[name] = f
		}
	}
	return m
}

func yamlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return strings.ToLower(f.Name), true
	}
	return name, true
}

// keyPaths returns the dotted path of every key under struct type t: the
// sections (mappings) as well as the leaves when sections is true, otherwise
// only the leaves.
func keyPaths(t reflect.Type, prefix string, sections bool) []string {
	var paths []string
	for f := range t.Fields() {
		name, ok := yamlName(f)
		if !ok {
			continue
		}
		path := joinKey(prefix, name)
		t := f.Type
		switch {
		case t.Kind() == reflect.Map:
			if sections {
				paths = append(paths, path)
			}
			path, t = path+".<name>", t.Elem()
		case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
			if sections {
				paths = append(paths, path)
			}
			path, t = path+"[]", t.Elem()
		}
		if t.Kind() == reflect.Struct && t != durationType {
			if sections {
				paths = append(paths, path)
			}
			paths = append(paths, keyPaths(t, path, sections)...)
			continue
		}
		paths = append(paths, path)
	}
	return paths
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func levelName(prefix string) string {
	if prefix == "" {
		return "the top level"
	}
	return prefix
}

// unknownKeyHint explains the unknown key name found under prefix: the
// nearest known key, or the keys valid at that level.
func unknownKeyHint(root reflect.Type, prefix, name string) string {
	known := keyPaths(root, "", true)
	full := joinKey(prefix, name)

	// "keys.max_age: 90d" written flat: YAML does not split dotted keys.
	if strings.Contains(name, ".") && slices.Contains(known, full) {
		before, after, _ := strings.Cut(name, ".")
		return fmt.Sprintf(" (YAML does not split dotted keys: nest it as %q, then %q indented under it)", before+":", after+":")
	}
	if s := suggest(full, known, prefix); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	// The right key in the wrong section, e.g. store.max_conns.
	leaf := name[strings.LastIndex(name, ".")+1:]
	var elsewhere []string
	for _, k := range known {
		if strings.ContainsAny(k, "<[") && !strings.HasPrefix(prefix, "egress.") {
			continue // keys inside named or listed items are no fix elsewhere
		}
		if k == leaf || strings.HasSuffix(k, "."+leaf) {
			elsewhere = append(elsewhere, strconv.Quote(k))
		}
	}
	if len(elsewhere) > 0 {
		slices.Sort(elsewhere)
		return fmt.Sprintf(" (did you mean %s?)", strings.Join(elsewhere, " or "))
	}

	var valid []string
	for _, k := range known {
		if rest, ok := strings.CutPrefix(k, prefix); ok && (prefix == "" || strings.HasPrefix(rest, ".")) {
			rest = strings.TrimPrefix(rest, ".")
			if rest != "" && !strings.Contains(rest, ".") {
				valid = append(valid, rest)
			}
		}
	}
	slices.Sort(valid)
	if prefix == "" {
		return fmt.Sprintf(" (valid top-level keys: %s)", strings.Join(valid, ", "))
	}
	return fmt.Sprintf(" (valid keys under %s: %s)", prefix, strings.Join(valid, ", "))
}

// suggest returns the candidate closest to s by edit distance, or "" when
// none is close enough to be a plausible typo. Ties go to candidates under
// prefix, then to the alphabetically first.
func suggest(s string, candidates []string, prefix string) string {
	rel := strings.TrimPrefix(strings.TrimPrefix(s, prefix), ".")
	maxDist := min(max(len(rel)/3, 1), 3)
	best, bestDist, bestLocal := "", maxDist+1, false
	for _, c := range candidates {
		dist := editDistance(s, c)
		if dist > maxDist {
			continue
		}
		local := prefix == "" || strings.HasPrefix(c, prefix+".")
		switch {
		case dist < bestDist,
			dist == bestDist && local && !bestLocal,
			dist == bestDist && local == bestLocal && c < best:
			best, bestDist, bestLocal = c, dist, local
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and transpositions of adjacent bytes
// each cost one.
func editDistance(a, b string) int {
	// Three rows of the dynamic-programming table are enough.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
