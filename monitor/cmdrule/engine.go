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

func (s Severity) valid() bool {
	switch s {
	case Critical, High, Medium, Low, Info:
		return true
	}
	return false
}

// Rule is one detection rule as written in YAML.
type Rule struct {
	ID          string      `yaml:"id"`
	Severity    Severity    `yaml:"severity"`
	Description string      `yaml:"description"`
	Technique   string      `yaml:"technique"`
	Match       []Condition `yaml:"match"`
}

// Condition is one alternative of a rule's match list. All of its set
// fields must hold for a call.
type Condition struct {
	Program        []string `yaml:"program"`
	Args           []string `yaml:"args"`
	Argline        string   `yaml:"argline"`
	Flags          []string `yaml:"flags"`
	Feeds          []string `yaml:"feeds"`
	Redirect       string   `yaml:"redirect"`
	RedirectIn     string   `yaml:"redirect_in"`
	RedirectOut    string   `yaml:"redirect_out"`
	Assign         string   `yaml:"assign"`
	Host           string   `yaml:"host"`
	UnknownHost    bool     `yaml:"unknown_host"`
	DecodedMatches []string `yaml:"decoded_matches"`
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
	rules   []*rule
	parsers sync.Pool
}

type rule struct {
	Rule
	conds   []cond
	derived bool // has decoded_matches and runs after the other rules
}

type cond struct {
	programs, feeds  names
	args             []*regexp.Regexp
	argline          *regexp.Regexp
	flags            []string
	redir, rin, rout *regexp.Regexp
	assign, host     *regexp.Regexp
	unknownHost      bool
	decodedMatches   []string
}

// Default returns an engine with the embedded default rule set.
func Default() (*Engine, error) {
	return NewEngine(defaultRules)
}

// DefaultRules returns a copy of the embedded default rule set.
func DefaultRules() []byte { return bytes.Clone(defaultRules) }

// NewEngine compiles a YAML rule document of the form {rules: [...]}.
func NewEngine(doc []byte) (*Engine, error) {
	var f struct {
		Rules []Rule `yaml:"rules"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("cmdrule: decode rules: %w", err)
	}
	if len(f.Rules) == 0 {
		return nil, errors.New("cmdrule: no rules")
	}
	e := &Engine{}
	e.parsers.New = func() any { return syntax.NewParser(syntax.Variant(syntax.LangBash)) }
	ids := map[string]bool{}
	for i := range f.Rules {
		r, err := compile(f.Rules[i])
		if err != nil {
			return nil, fmt.Errorf("cmdrule: rule %d (%q): %w", i, f.Rules[i].ID, err)
		}
		if ids[r.ID] {
			return nil, fmt.Errorf("cmdrule: duplicate rule id %q", r.ID)
		}
		ids[r.ID] = true
		e.rules = append(e.rules, r)
	}
	for _, r := range e.rules {
		for _, c := range r.conds {
			for _, id := range c.decodedMatches {
				if id != "*" && !ids[id] {
					return nil, fmt.Errorf("cmdrule: rule %q: decoded_matches names unknown rule %q", r.ID, id)
				}
			}
		}
	}
	return e, nil
}

var techniqueRE = regexp.MustCompile(`^T\d{4}(\.\d{3})?$`)

func compile(r Rule) (*rule, error) {
	switch {
	case r.ID == "":
		return nil, errors.New("missing id")
	case !r.Severity.valid():
		return nil, fmt.Errorf("severity %q is not one of critical, high, medium, low, info", r.Severity)
	case !techniqueRE.MatchString(r.Technique):
		return nil, fmt.Errorf("technique %q is not a MITRE ATT&CK id such as T1059 or T1059.004", r.Technique)
	case len(r.Match) == 0:
		return nil, errors.New("empty match list")
	}
	cr := &rule{Rule: r}
	for i, m := range r.Match {
		c, err := compileCond(m)
		if err != nil {
			return nil, fmt.Errorf("match[%d]: %w", i, err)
		}
		if len(c.decodedMatches) > 0 {
			cr.derived = true
		}
		cr.conds = append(cr.conds, c)
	}
	if cr.derived {
		for _, c := range cr.conds {
			if len(c.decodedMatches) == 0 {
				return nil, errors.New("decoded_matches must be set in every alternative or none")
			}
		}
	}
	return cr, nil
}

func compileCond(m Condition) (cond, error) {
	c := cond{
		programs:       names(m.Program),
		feeds:          names(m.Feeds),
		flags:          m.Flags,
		unknownHost:    m.UnknownHost,
		decodedMatches: m.DecodedMatches,
	}
	re := func(field, s string) (*regexp.Regexp, error) {
		if s == "" {
			return nil, nil
		}
		x, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		return x, nil
	}
	var err error
	for i, s := range m.Args {
		x, err := re(fmt.Sprintf("args[%d]", i), s)
		if err != nil {
			return c, err
		}
		c.args = append(c.args, x)
	}
	for _, f := range []struct {
		dst  **regexp.Regexp
		name string
		src  string
	}{
		{&c.argline, "argline", m.Argline},
		{&c.redir, "redirect", m.Redirect},
		{&c.rin, "redirect_in", m.RedirectIn},
		{&c.rout, "redirect_out", m.RedirectOut},
		{&c.assign, "assign", m.Assign},
		{&c.host, "host", m.Host},
	} {
		if *f.dst, err = re(f.name, f.src); err != nil {
			return c, err
		}
	}
	for _, f := range m.Flags {
		if !strings.HasPrefix(f, "-") && !strings.HasPrefix(f, "+") {
			return c, fmt.Errorf("flag %q must start with - or +", f)
		}
	}
	if len(c.programs) == 0 && len(c.feeds) == 0 && len(c.args) == 0 && c.argline == nil &&
		len(c.flags) == 0 && c.redir == nil && c.rin == nil && c.rout == nil &&
		c.assign == nil && c.host == nil && !c.unknownHost && len(c.decodedMatches) == 0 {
		return c, errors.New("no conditions")
	}
	return c, nil
}

// names matches program names exactly, or by prefix for entries ending
// in "*" (python*, mkfs.*).
type names []string

func (n names) match(p string) bool {
	for _, s := range n {
		if pre, ok := strings.CutSuffix(s, "*"); ok {
			if strings.HasPrefix(p, pre) {
				return true
			}
		} else if s == p {
			return true
		}
	}
	return false
}

// Rules returns the engine's rules in evaluation order.
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
		for _, r := range e.rules {
			if !r.derived && r.match(c, ctx, nil) {
				hit = append(hit, r.ID)
				out = appendMatch(out, r, c)
			}
		}
		if !c.Decoded || len(hit) == 0 {
			continue
		}
		for _, r := range e.rules {
			if r.derived && r.match(c, ctx, hit) {
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

func (r *rule) match(c *Call, ctx EvalContext, hit []string) bool {
	for i := range r.conds {
		if r.conds[i].match(c, ctx, hit) {
			return true
		}
	}
	return false
}

func (k *cond) match(c *Call, ctx EvalContext, hit []string) bool {
	if len(k.programs) > 0 && !k.programs.match(c.Program) {
		return false
	}
	if len(k.feeds) > 0 && !anyName(k.feeds, c.Feeds) {
		return false
	}
	for _, x := range k.args {
		if !anyRE(x, c.Args) {
			return false
		}
	}
	if k.argline != nil && !k.argline.MatchString(strings.Join(c.Args, " ")) {
		return false
	}
	if len(k.flags) > 0 && !hasFlag(c.Args, k.flags) {
		return false
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
	if k.assign != nil && !anyRE(k.assign, c.Assigns) {
		return false
	}
	if k.host != nil || k.unknownHost {
		hosts := Hosts(c.Args)
		if k.host != nil && !anyRE(k.host, hosts) {
			return false
		}
		if k.unknownHost && !anyUnknown(hosts, ctx.AllowedHosts) {
			return false
		}
	}
	if len(k.decodedMatches) > 0 {
		if !c.Decoded || !anyHit(k.decodedMatches, hit) {
			return false
		}
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
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
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
