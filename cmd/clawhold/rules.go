package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/monitor/cmdrule"
)

// Exit codes of `clawhold rules test`: 1 when a match meets --fail-on,
// 2 when the rules or the input cannot be read, so CI tells the two apart.
const (
	rulesExitMatched = 1
	rulesExitError   = 2
)

func (a *app) rulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "List the command rules and test them on command lines",
		Long: `The command rules flag dangerous shell command lines run in cells (see
docs/monitoring.md). The set is the built-in default rules, plus the files
in monitor.rules (a rule with the id of a default rule replaces it), minus
the ids in monitor.disable_rules.`,
	}
	cmd.AddCommand(a.rulesListCmd(), a.rulesTestCmd(), a.rulesDefaultsCmd())
	return cmd
}

// rulesDefaultsCmd prints the built-in rule file: replacing a default
// rule starts from a copy of it.
func (a *app) rulesDefaultsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "defaults",
		Short: "Print the built-in rule file (YAML), to copy a rule from and override it",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := a.stdout.Write(cmdrule.DefaultRules())
			return err
		},
	}
}

// ruleEngine loads the rule set the monitor uses, plus extra files.
func (a *app) ruleEngine(extra []string) (*cmdrule.Engine, error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	files := append(slices.Clone(cfg.Monitor.Rules), extra...)
	return cmdrule.Load(cmdrule.DefaultRules(), files, cfg.Monitor.DisableRules)
}

// rulesError reports err and exits 2.
func (a *app) rulesError(err error) error {
	fmt.Fprintln(a.stderr, "clawhold:", err)
	return exitCodeError(rulesExitError)
}

type ruleJSON struct {
	ID          string `json:"id"`
	Severity    string `json:"severity"`
	Technique   string `json:"technique"`
	Description string `json:"description"`
	Enabled     bool   `json:"enabled"`
	File        string `json:"file"`
	Line        int    `json:"line"`
}

func (a *app) rulesListCmd() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the command rules in effect",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.ruleEngine(files)
			if err != nil {
				return a.rulesError(err)
			}
			rules := e.Rules()
			if a.json {
				out := make([]ruleJSON, 0, len(rules))
				for _, r := range rules {
					out = append(out, ruleJSON{ID: r.ID, Severity: string(r.Severity), Technique: r.Technique,
						Description: r.Description, Enabled: r.IsEnabled(), File: r.File, Line: r.Line})
				}
				return writeJSON(a.stdout, out)
			}
			rows := make([][]string, 0, len(rules))
			for _, r := range rules {
				sev := string(r.Severity)
				if !r.IsEnabled() {
					sev += " (off)"
				}
				src := "default"
				if r.File != cmdrule.DefaultFile {
					src = r.File + ":" + strconv.Itoa(r.Line)
				}
				rows = append(rows, []string{r.ID, sev, r.Technique, r.Description, src})
			}
			return table(a.stdout, []string{"ID", "SEVERITY", "TECHNIQUE", "DESCRIPTION", "FROM"}, rows)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return a.rulesError(err) })
	cmd.Flags().StringArrayVar(&files, "rules", nil, "extra rule file (YAML) on top of the configured set (repeatable)")
	return cmd
}

type matchJSON struct {
	Rule      string `json:"rule"`
	Severity  string `json:"severity"`
	Technique string `json:"technique"`
	Part      string `json:"part"`
}

type lineJSON struct {
	Line    int         `json:"line"`
	Cmd     string      `json:"cmd"`
	Matches []matchJSON `json:"matches"`
}

func (a *app) rulesTestCmd() *cobra.Command {
	var (
		files, hosts []string
		failOn       string
	)
	cmd := &cobra.Command{
		Use:   "test FILE",
		Short: "Evaluate the rules on a file of command lines and print the matches per line",
		Long: `test reads FILE ("-" for standard input): one command line per line, or
JSON lines with a "cmd" field (a command line) or an "argv" field (an exec
argv, quoted word by word as the monitor does). Blank lines and lines
starting with # are skipped. Each line is printed with its number and the
rules that match it, most severe first:

  3: critical download-exec, medium download-unknown-host
  4: -

With --json, one object per line: {"line", "cmd", "matches": [{"rule",
"severity", "technique", "part"}]}. Hosts given with --allow-host count as
the egress allowlist for download-unknown-host.

Exit status: 0, or 1 when --fail-on is given and a match is at least that
severe, or 2 when the rules or FILE cannot be read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var min cmdrule.Severity
			if failOn != "" {
				var err error
				if min, err = cmdrule.ParseSeverity(failOn); err != nil {
					return a.rulesError(fmt.Errorf("--fail-on: %w", err))
				}
			}
			e, err := a.ruleEngine(files)
			if err != nil {
				return a.rulesError(err)
			}
			name := args[0]
			var in io.Reader = a.stdin
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return a.rulesError(err)
				}
				defer f.Close()
				in = f
			} else {
				name = "<stdin>"
			}
			lines, err := readCommandLines(in, name)
			if err != nil {
				return a.rulesError(err)
			}
			ctx := cmdrule.EvalContext{AllowedHosts: hosts}
			failed, matched := false, 0
			enc := json.NewEncoder(a.stdout)
			enc.SetEscapeHTML(false) // command lines are full of < > &
			for _, l := range lines {
				ms := e.Evaluate(l.cmd, ctx)
				if len(ms) > 0 {
					matched++
				}
				for _, m := range ms {
					if min != "" && m.Severity.AtLeast(min) {
						failed = true
					}
				}
				if a.json {
					out := lineJSON{Line: l.n, Cmd: l.cmd, Matches: []matchJSON{}}
					for _, m := range ms {
						out.Matches = append(out.Matches, matchJSON{Rule: m.Rule, Severity: string(m.Severity), Technique: m.Technique, Part: m.Part})
					}
					if err := enc.Encode(out); err != nil {
						return a.rulesError(err)
					}
					continue
				}
				fmt.Fprintf(a.stdout, "%d: %s\n", l.n, summarize(ms))
			}
			if !a.json {
				fmt.Fprintf(a.stderr, "%d command lines, %d matched\n", len(lines), matched)
			}
			if failed {
				return exitCodeError(rulesExitMatched)
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return a.rulesError(err) })
	f := cmd.Flags()
	f.StringArrayVar(&files, "rules", nil, "extra rule file (YAML) on top of the configured set (repeatable)")
	f.StringArrayVar(&hosts, "allow-host", nil, "host on the egress allowlist; subdomains included (repeatable)")
	f.StringVar(&failOn, "fail-on", "", "exit 1 when a match is at least this severe: critical, high, medium, low or info")
	return cmd
}

// summarize renders a line's matches as "critical download-exec, high
// x": one entry per rule, most severe first.
func summarize(ms []cmdrule.Match) string {
	if len(ms) == 0 {
		return "-"
	}
	var uniq []cmdrule.Match
	for _, m := range ms {
		if !slices.ContainsFunc(uniq, func(u cmdrule.Match) bool { return u.Rule == m.Rule }) {
			uniq = append(uniq, m)
		}
	}
	slices.SortStableFunc(uniq, func(x, y cmdrule.Match) int {
		switch {
		case x.Severity == y.Severity:
			return strings.Compare(x.Rule, y.Rule)
		case x.Severity.AtLeast(y.Severity):
			return -1
		}
		return 1
	})
	parts := make([]string, len(uniq))
	for i, m := range uniq {
		parts[i] = string(m.Severity) + " " + m.Rule
	}
	return strings.Join(parts, ", ")
}

type commandLine struct {
	n   int
	cmd string
}

// readCommandLines reads the lines of a rules test file. A line starting
// with "{" is JSON with a "cmd" string or an "argv" array; an error names
// name and the line.
func readCommandLines(r io.Reader, name string) ([]commandLine, error) {
	var out []commandLine
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if !strings.HasPrefix(text, "{") {
			out = append(out, commandLine{n, text})
			continue
		}
		var v struct {
			Cmd  *string  `json:"cmd"`
			Argv []string `json:"argv"`
		}
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		switch {
		case v.Cmd != nil:
			out = append(out, commandLine{n, *v.Cmd})
		case len(v.Argv) > 0:
			out = append(out, commandLine{n, cmdrule.CommandLine(v.Argv)})
		default:
			return nil, fmt.Errorf(`%s:%d: a JSON line needs a "cmd" string or an "argv" array`, name, n)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s: a line is longer than 1 MiB", name)
		}
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return out, nil
}
