package cmdrule

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
	"mvdan.cc/sh/v3/syntax"
)

//go:embed default.yaml
var defaultRules []byte

// Severity ranks a rule.
type Severity string

const (
	Critical Severity = "critical"
	High     Severity = "high"
	Medium   Severity = "medium"
	Low      Severity = "low"
	Info     Severity = "info"
)

func (s Severity) valid() bool { return s.rank() > 0 }

func (s Severity) rank() int {
	switch s {
	case Critical:
		return 5
	case High:
		return 4
	case Medium:
		return 3
	case Low:
		return 2
	case Info:
		return 1
	}
	return 0
}

// AtLeast reports whether s is as severe as min or more.
func (s Severity) AtLeast(min Severity) bool { return s.rank() >= min.rank() }

// ParseSeverity returns the severity named s.
func ParseSeverity(s string) (Severity, error) {
	if v := Severity(s); v.valid() {
		return v, nil
	}
	return "", fmt.Errorf("severity %q is not one of critical, high, medium, low, info", s)
}

// Rule is one detection rule as written in YAML.
type Rule struct {
	ID          string   `yaml:"id"`
	Severity    Severity `yaml:"severity"`
	Description string   `yaml:"description"`
	Technique   string   `yaml:"technique"`
	// Enabled false keeps the rule in the set (so it can be listed and
	// referenced) without evaluating it; absent means true.
	Enabled *bool       `yaml:"enabled"`
	Match   []Condition `yaml:"match"`
	// Except lists conditions, with the same fields as Match, under which
	// the rule does not fire: if any holds for the simple command that
	// matched, that command is not reported.
	Except []Condition `yaml:"except"`
	// File names the document the rule came from: DefaultFile for the
	// built-in set, else the operator's file.
	File string `yaml:"-"`
	// Line is the rule's line in File.
	Line int `yaml:"-"`
}

// IsEnabled reports whether the rule is evaluated.
func (r Rule) IsEnabled() bool { return r.Enabled == nil || *r.Enabled }

// Condition is one alternative of a rule's match list. All of its set
// fields must hold for a call.
type Condition struct {
	Program     []string `yaml:"program"`
	Args        []string `yaml:"args"`
	Argline     string   `yaml:"argline"`
	Flags       []string `yaml:"flags"`
	Feeds       []string `yaml:"feeds"`
	Redirect    string   `yaml:"redirect"`
	RedirectIn  string   `yaml:"redirect_in"`
	RedirectOut string   `yaml:"redirect_out"`
	// RedirectTruncate matches write redirections that empty the file
	// first (">", ">|", "&>"), not appends (">>").
	RedirectTruncate string   `yaml:"redirect_truncate"`
	Assign           string   `yaml:"assign"`
	Host             string   `yaml:"host"`
	UnknownHost      bool     `yaml:"unknown_host"`
	DecodedMatches   []string `yaml:"decoded_matches"`
}

// EvalContext carries what a rule needs beyond the command line itself.
type EvalContext struct {
	// AllowedHosts is the tenant's egress allowlist. An entry allows the
	// host and its subdomains; a leading "*." is accepted and ignored.
	AllowedHosts []string
}

// Match is one rule that fired on a command line.
type Match struct {
	Rule        string
	Severity    Severity
	Technique   string
	Description string
	// Part is the simple command that matched, as written; for nested
	// and decoded calls, as found in the nested or decoded script.
	Part   string
	Origin string
}

// Engine evaluates a rule set. It is safe for concurrent use.
type Engine struct {
	rules []*rule // every rule, in evaluation order
	// plain and derived are the enabled rules without and with
	// decoded_matches, split once so Evaluate does not re-check.
	plain, derived []*rule
	parsers        sync.Pool
}

type rule struct {
	Rule
	conds   []cond
	except  []cond
	derived bool       // has decoded_matches and runs after the other rules
	node    *yaml.Node // the rule's mapping, to name lines in errors
}

type cond struct {
	programs, feeds          names
	hasPrograms, hasFeeds    bool
	args                     []*regexp.Regexp
	argline                  *regexp.Regexp
	flags                    []string
	redir, rin, rout, rtrunc *regexp.Regexp
	assign, host             *regexp.Regexp
	unknownHost              bool
	decodedMatches           []string
}

// Default returns an engine with the embedded default rule set.
func Default() (*Engine, error) {
	return Load(defaultRules, nil, nil)
}

// DefaultRules returns a copy of the embedded default rule set.
func DefaultRules() []byte { return bytes.Clone(defaultRules) }

// NewEngine compiles a single YAML rule document of the form
// {rules: [...]}.
func NewEngine(doc []byte) (*Engine, error) {
	rs, err := loadDoc("rules", doc)
	if err != nil {
		return nil, err
	}
	return newEngine(rs, nil)
}

// newEngine builds an engine from compiled rules; removed holds the ids
// taken out by a disable list, for a clearer error.
func newEngine(rs []*rule, removed map[string]bool) (*Engine, error) {
	e := &Engine{rules: rs}
	e.parsers.New = func() any { return syntax.NewParser(syntax.Variant(syntax.LangBash)) }
	ids := make(map[string]bool, len(rs))
	for _, r := range rs {
		ids[r.ID] = true
	}
	for _, r := range rs {
		for i, c := range r.conds {
			for _, id := range c.decodedMatches {
				if id == "*" || ids[id] {
					continue
				}
				err := fmt.Errorf("names unknown rule %q", id)
				if removed[id] {
					err = fmt.Errorf("names rule %q, which the disabled list removes", id)
				}
				return nil, r.errorf(errAt(err, "match", i, "decoded_matches"))
			}
		}
		if !r.IsEnabled() {
			continue
		}
		if r.derived {
			e.derived = append(e.derived, r)
		} else {
			e.plain = append(e.plain, r)
		}
	}
	return e, nil
}

var techniqueRE = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)

// pathErr is a compile error with the place in the rule it concerns,
// such as {"match", 0, "args", 1}, so the loader can name its line.
type pathErr struct {
	path []any
	err  error
}

func (e pathErr) Error() string {
	var b strings.Builder
	for _, p := range e.path {
		switch p := p.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", p)
		default:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			fmt.Fprint(&b, p)
		}
	}
	if b.Len() == 0 {
		return e.err.Error()
	}
	return b.String() + ": " + e.err.Error()
}

func (e pathErr) Unwrap() error { return e.err }

func errAt(err error, path ...any) error { return pathErr{path: path, err: err} }

func compile(r Rule) (*rule, error) {
	switch {
	case r.ID == "":
		return nil, errAt(errors.New("missing id"))
	case !r.Severity.valid():
		return nil, errAt(fmt.Errorf("%q is not one of critical, high, medium, low, info", r.Severity), "severity")
	case !techniqueRE.MatchString(r.Technique):
		return nil, errAt(fmt.Errorf("%q is not a MITRE ATT&CK id such as T1059 or T1059.004", r.Technique), "technique")
	case len(r.Match) == 0:
		return nil, errAt(errors.New("empty match list"), "match")
	}
	cr := &rule{Rule: r}
	for i, m := range r.Match {
		c, err := compileCond(m)
		if err != nil {
			return nil, prefix(err, "match", i)
		}
		if len(c.decodedMatches) > 0 {
			cr.derived = true
		}
		cr.conds = append(cr.conds, c)
	}
	if cr.derived {
		for i, c := range cr.conds {
			if len(c.decodedMatches) == 0 {
				return nil, errAt(errors.New("decoded_matches must be set in every alternative or none"), "match", i)
			}
		}
	}
	for i, m := range r.Except {
		c, err := compileCond(m)
		if err != nil {
			return nil, prefix(err, "except", i)
		}
		if len(c.decodedMatches) > 0 {
			return nil, errAt(errors.New("decoded_matches cannot be used in except"), "except", i, "decoded_matches")
		}
		cr.except = append(cr.except, c)
	}
	return cr, nil
}

// prefix puts path in front of the path of err.
func prefix(err error, path ...any) error {
	var pe pathErr
	if errors.As(err, &pe) {
		return pathErr{path: append(path, pe.path...), err: pe.err}
	}
	return pathErr{path: path, err: err}
}

func compileCond(m Condition) (cond, error) {
	c := cond{
		programs:       newNames(m.Program),
		feeds:          newNames(m.Feeds),
		flags:          m.Flags,
		unknownHost:    m.UnknownHost,
		decodedMatches: m.DecodedMatches,
	}
	c.hasPrograms, c.hasFeeds = !c.programs.empty(), !c.feeds.empty()
	re := func(field, s string) (*regexp.Regexp, error) {
		if s == "" {
			return nil, nil
		}
		x, err := regexp.Compile(s)
		if err != nil {
			return nil, errAt(err, field)
		}
		return x, nil
	}
	for i, s := range m.Args {
		x, err := regexp.Compile(s)
		if err != nil {
			return c, errAt(err, "args", i)
		}
		c.args = append(c.args, x)
	}
	var err error
	for _, f := range []struct {
		dst  **regexp.Regexp
		name string
		src  string
	}{
		{&c.argline, "argline", m.Argline},
		{&c.redir, "redirect", m.Redirect},
		{&c.rin, "redirect_in", m.RedirectIn},
		{&c.rout, "redirect_out", m.RedirectOut},
		{&c.rtrunc, "redirect_truncate", m.RedirectTruncate},
		{&c.assign, "assign", m.Assign},
		{&c.host, "host", m.Host},
	} {
		if *f.dst, err = re(f.name, f.src); err != nil {
			return c, err
		}
	}
	for i, f := range m.Flags {
		if !strings.HasPrefix(f, "-") && !strings.HasPrefix(f, "+") {
			return c, errAt(fmt.Errorf("flag %q must start with - or +", f), "flags", i)
		}
	}
	if c.programs.empty() && c.feeds.empty() && len(c.args) == 0 && c.argline == nil &&
		len(c.flags) == 0 && c.redir == nil && c.rin == nil && c.rout == nil && c.rtrunc == nil &&
		c.assign == nil && c.host == nil && !c.unknownHost && len(c.decodedMatches) == 0 {
		return c, errors.New("no conditions")
	}
	return c, nil
}

// names matches program names exactly, or by prefix for entries ending
// in "*" (python*, mkfs.*). Exact names are a map: rules such as
// credential-read list thirty programs and run on every simple command.
type names struct {
	list     []string        // exact names, for short lists
	exact    map[string]bool // exact names, for long lists
	prefixes []string
}

// mapNames is the list length from which a map beats a linear scan.
const mapNames = 12

func newNames(list []string) names {
	var n names
	for _, s := range list {
		if pre, ok := strings.CutSuffix(s, "*"); ok {
			n.prefixes = append(n.prefixes, pre)
		} else {
			n.list = append(n.list, s)
		}
	}
	if len(n.list) >= mapNames {
		n.exact = map[string]bool{}
		for _, s := range n.list {
			n.exact[s] = true
		}
		n.list = nil
	}
	return n
}

func (n names) empty() bool { return len(n.list) == 0 && len(n.exact) == 0 && len(n.prefixes) == 0 }

func (n names) match(p string) bool {
	if n.exact != nil && n.exact[p] {
		return true
	}
	for _, s := range n.list {
		if s == p {
			return true
		}
	}
	for _, pre := range n.prefixes {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// Rules returns the engine's rules in evaluation order, disabled ones
// included.
func (e *Engine) Rules() []Rule {
	out := make([]Rule, len(e.rules))
	for i, r := range e.rules {
		out[i] = r.Rule
	}
	return out
}

// Parse analyses cmdline with a pooled parser.
func (e *Engine) Parse(cmdline string) (*Command, error) {
	p := e.parsers.Get().(*syntax.Parser)
	defer e.parsers.Put(p)
	return parse(p, cmdline)
}

// Evaluate returns the rules that match cmdline, one Match per rule and
// simple command. A line that does not parse is still evaluated on its
// whitespace-split words.
func (e *Engine) Evaluate(cmdline string, ctx EvalContext) []Match {
	cmd, _ := e.Parse(cmdline)
	var out []Match
	var hit []string
	for _, c := range cmd.Calls {
		hit = hit[:0]
		for _, r := range e.plain {
			if r.match(c, ctx, nil) {
				hit = append(hit, r.ID)
				out = appendMatch(out, r, c)
			}
		}
		if !c.Decoded || len(hit) == 0 {
			continue
		}
		for _, r := range e.derived {
			if r.match(c, ctx, hit) {
				out = appendMatch(out, r, c)
			}
		}
	}
	return out
}

func appendMatch(out []Match, r *rule, c *Call) []Match {
	for _, m := range out {
		if m.Rule == r.ID && m.Part == c.Text {
			return out
		}
	}
	return append(out, Match{
		Rule: r.ID, Severity: r.Severity, Technique: r.Technique,
		Description: r.Description, Part: c.Text, Origin: c.Origin,
	})
}

// match reports whether an alternative of the rule holds for c and no
// exception does. Exceptions are judged on the same simple command, not
// the whole line, so appending a harmless command that an exception
// describes cannot silence a match elsewhere in the line.
func (r *rule) match(c *Call, ctx EvalContext, hit []string) bool {
	for i := range r.conds {
		if r.conds[i].match(c, ctx, hit) {
			for j := range r.except {
				if r.except[j].match(c, ctx, nil) {
					return false
				}
			}
			return true
		}
	}
	return false
}

// match reports whether every field of k holds for c. The cheap tests
// (names, flags, hosts, redirections) run before the regular
// expressions over arguments, which dominate the cost.
func (k *cond) match(c *Call, ctx EvalContext, hit []string) bool {
	if k.hasPrograms && !k.programs.match(c.Program) {
		return false
	}
	if len(k.decodedMatches) > 0 && (!c.Decoded || !anyHit(k.decodedMatches, hit)) {
		return false
	}
	if k.hasFeeds && !anyName(k.feeds, c.Feeds) {
		return false
	}
	if len(k.flags) > 0 && !hasFlag(c.Args, k.flags) {
		return false
	}
	if k.host != nil || k.unknownHost {
		hosts := c.hosts()
		if k.host != nil && !anyRE(k.host, hosts) {
			return false
		}
		if k.unknownHost && !anyUnknown(hosts, ctx.AllowedHosts) {
			return false
		}
	}
	if k.redir != nil && !anyRedir(c.Redirs, k.redir, func(Redirect) bool { return true }) {
		return false
	}
	if k.rin != nil && !anyRedir(c.Redirs, k.rin, func(r Redirect) bool { return r.Read }) {
		return false
	}
	if k.rout != nil && !anyRedir(c.Redirs, k.rout, func(r Redirect) bool { return r.Write }) {
		return false
	}
	if k.rtrunc != nil && !anyRedir(c.Redirs, k.rtrunc, Redirect.truncates) {
		return false
	}
	if k.assign != nil && !anyRE(k.assign, c.Assigns) {
		return false
	}
	for _, x := range k.args {
		if !anyRE(x, c.Args) {
			return false
		}
	}
	if k.argline != nil && !k.argline.MatchString(c.argline()) {
		return false
	}
	return true
}

func anyName(n names, progs []string) bool {
	for _, p := range progs {
		if n.match(p) {
			return true
		}
	}
	return false
}

func anyRE(x *regexp.Regexp, ss []string) bool {
	for _, s := range ss {
		if x.MatchString(s) {
			return true
		}
	}
	return false
}

func anyRedir(rs []Redirect, x *regexp.Regexp, ok func(Redirect) bool) bool {
	for _, r := range rs {
		if ok(r) && x.MatchString(r.Target) {
			return true
		}
	}
	return false
}

func anyHit(want, hit []string) bool {
	for _, w := range want {
		for _, h := range hit {
			if w == "*" || w == h {
				return true
			}
		}
	}
	return false
}

// hasFlag reports whether args carry one of flags. "--long" also matches
// "--long=value"; a single-letter "-x" also matches inside a cluster such
// as "-xvf"; anything else must match exactly.
func hasFlag(args, flags []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		for _, f := range flags {
			switch {
			case a == f:
				return true
			case strings.HasPrefix(f, "--"):
				if strings.HasPrefix(a, f+"=") {
					return true
				}
			case len(f) == 2 && f[0] == '-' && isShortFlags(a) && strings.IndexByte(a[1:], f[1]) >= 0:
				return true
			}
		}
	}
	return false
}

// Hosts returns the host names of URLs among args: "scheme://host/...",
// possibly after "name=" or "@", and scheme-less "host.tld/path" operands.
func Hosts(args []string) []string {
	var out []string
	for _, a := range args {
		if i := strings.Index(a, "://"); i > 0 {
			j := i
			for j > 0 && isSchemeChar(a[j-1]) {
				j--
			}
			if j < i {
				if h := hostOf(a[i+3:]); h != "" {
					out = append(out, h)
				}
			}
			continue
		}
		if a == "" || strings.IndexByte("-/.~$@", a[0]) >= 0 {
			continue
		}
		if k := strings.IndexByte(a, '/'); k > 0 {
			h := hostOf(a[:k])
			if d := strings.LastIndexByte(h, '.'); d > 0 && isAlpha(h[d+1:]) && len(h)-d > 2 {
				out = append(out, h)
			}
		}
	}
	return out
}

func hostOf(s string) string {
	// A URL inside inline code or JSON ends at a quote or bracket:
	// "get('https://api.github.com').status" names api.github.com.
	if i := strings.IndexAny(s, "/?#'\"()<>{}`\\ \t\n,;|"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		s = s[i+1:]
	}
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			return strings.ToLower(s[1:i])
		}
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

func isSchemeChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		if !('a' <= s[i] && s[i] <= 'z' || 'A' <= s[i] && s[i] <= 'Z') {
			return false
		}
	}
	return s != ""
}

func anyUnknown(hosts, allowed []string) bool {
	for _, h := range hosts {
		if !allowedHost(h, allowed) {
			return true
		}
	}
	return false
}

// allowedHost reports whether h is on the allowlist. Loopback is always
// allowed: fetching from the local machine is not a download from an
// unknown endpoint.
func allowedHost(h string, allowed []string) bool {
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, a := range allowed {
		a = strings.TrimSuffix(strings.ToLower(strings.TrimPrefix(a, "*.")), ".")
		if h == a || strings.HasSuffix(h, "."+a) {
			return true
		}
	}
	return false
}
