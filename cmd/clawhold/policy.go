package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/monitor/cmdrule"
	"github.com/clawhold/clawhold/policy"
)

// Exit codes of `clawhold policy check|test`: 1 when a case's expectation
// fails, 2 when the policies or the cases cannot be read, so CI tells
// the two apart.
const (
	policyExitMismatch = 1
	policyExitError    = 2
)

func (a *app) policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check policy files and test decisions offline",
		Long: `Policies decide whether a cell's tool call, egress to a new host, secret
read or skill install is allowed, denied or waits for a human (ask). They
are Cedar files loaded on top of the built-in default policy (see
docs/policy.md).`,
	}
	cmd.AddCommand(a.policyCheckCmd(), a.policyTestCmd(), a.policyDefaultsCmd())
	return cmd
}

// policyError reports err and exits 2.
func (a *app) policyError(err error) error {
	fmt.Fprintln(a.stderr, "clawhold:", err)
	return exitCodeError(policyExitError)
}

func (a *app) policyDefaultsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "defaults",
		Short: "Print the built-in policy file (Cedar)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := a.stdout.Write(policy.DefaultPolicy())
			return err
		},
	}
}

func (a *app) policyCheckCmd() *cobra.Command {
	var noDefault bool
	cmd := &cobra.Command{
		Use:   "check [FILE...]",
		Short: "Validate policy files (on top of the built-in policy) and print OK or the errors",
		Long: `check loads the built-in policy plus each FILE and prints OK, or every
error as file:line:col: message. Exit status 2 on errors.`,
		RunE: func(_ *cobra.Command, files []string) error {
			e, err := policy.NewEngine(policy.Options{Files: files, NoDefault: noDefault})
			if err != nil {
				return a.policyError(err)
			}
			fmt.Fprintf(a.stdout, "OK: %d policies\n", e.Set().Len())
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return a.policyError(err) })
	cmd.Flags().BoolVar(&noDefault, "no-default", false, "leave the built-in policy out")
	return cmd
}

// policyCase is one line of a `policy test` cases file.
type policyCase struct {
	policy.Request
	Expect string `json:"expect,omitempty"`
}

type policyCaseResult struct {
	Line int `json:"line"`
	policy.Decision
	Expect string `json:"expect,omitempty"`
	OK     bool   `json:"ok"`
}

func (a *app) policyTestCmd() *cobra.Command {
	var (
		files     []string
		noDefault bool
		defaults  []string
	)
	cmd := &cobra.Command{
		Use:   "test [--policy FILE ...] CASES",
		Short: "Decide each request of a JSON-lines file and compare with its expectation",
		Long: `test reads CASES ("-" for standard input): one request per line in JSON,
with the fields kind, tenant, user, role, time (RFC 3339), tool, params,
command, programs, command_rules, path, in_workspace, host, port,
secret_id, package, package_findings, risk, and an optional "expect"
("allow", "deny" or "ask"). When a command is given without programs and
command_rules, they are filled in with the built-in command rules. Blank
lines and lines starting with # are skipped. Each case prints as

  3: ask write-outside-workspace
  4: deny exec-critical-command (expected allow) FAIL

Exit status: 0, 1 when an expectation fails, 2 when the policies or CASES
cannot be read.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defs := map[string]policy.Effect{}
			for _, d := range defaults {
				kind, eff, ok := strings.Cut(d, "=")
				e, err := policy.ParseEffect(eff)
				if !ok || err != nil {
					return a.policyError(fmt.Errorf("--default %q: want KIND=allow|deny|ask", d))
				}
				defs[kind] = e
			}
			eng, err := policy.NewEngine(policy.Options{Files: files, NoDefault: noDefault, Defaults: defs})
			if err != nil {
				return a.policyError(err)
			}
			rules, err := cmdrule.Default()
			if err != nil {
				return a.policyError(err)
			}
			name := args[0]
			var in io.Reader = a.stdin
			if name != "-" {
				f, err := os.Open(name)
				if err != nil {
					return a.policyError(err)
				}
				defer f.Close()
				in = f
			} else {
				name = "<stdin>"
			}
			failed, err := a.runPolicyCases(cmd.Context(), eng, rules, in, name)
			if err != nil {
				return a.policyError(err)
			}
			if failed > 0 {
				fmt.Fprintf(a.stderr, "clawhold: %d case(s) failed\n", failed)
				return exitCodeError(policyExitMismatch)
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return a.policyError(err) })
	cmd.Flags().StringArrayVar(&files, "policy", nil, "policy file (Cedar) on top of the built-in policy (repeatable)")
	cmd.Flags().BoolVar(&noDefault, "no-default", false, "leave the built-in policy out")
	cmd.Flags().StringArrayVar(&defaults, "default", nil, "effect when no policy matches, as KIND=EFFECT (repeatable; unlisted kinds deny)")
	return cmd
}

// runPolicyCases decides every case in r and prints the results; it
// returns how many expectations failed. All cases are read before any is
// printed, so a malformed line fails the run without partial output.
func (a *app) runPolicyCases(ctx context.Context, eng *policy.Engine, rules *cmdrule.Engine, r io.Reader, name string) (int, error) {
	type numbered struct {
		n int
		c policyCase
	}
	var cases []numbered
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields() // a misspelt field would silently not apply
		var c policyCase
		if err := dec.Decode(&c); err != nil {
			return 0, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		if c.Expect != "" {
			if _, err := policy.ParseEffect(c.Expect); err != nil {
				return 0, fmt.Errorf("%s:%d: expect: %w", name, n, err)
			}
		}
		if c.Command != "" && c.Programs == nil && c.CommandRules == nil {
			// A parse error still leaves the rule matches cmdrule found,
			// which is what the monitor would act on too.
			c.Programs, c.CommandRules, _ = policy.AnalyzeCommand(rules, c.Command, cmdrule.EvalContext{})
		}
		cases = append(cases, numbered{n, c})
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	failed := 0
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	for _, c := range cases {
		d, err := eng.Decide(ctx, c.c.Request)
		if err != nil {
			return 0, fmt.Errorf("%s:%d: %w", name, c.n, err)
		}
		ok := c.c.Expect == "" || policy.Effect(c.c.Expect) == d.Effect
		if !ok {
			failed++
		}
		if a.json {
			if err := enc.Encode(policyCaseResult{Line: c.n, Decision: d, Expect: c.c.Expect, OK: ok}); err != nil {
				return 0, err
			}
			continue
		}
		by := strings.Join(d.Policies, ", ")
		if by == "" {
			by = "(no policy matched: default)"
		}
		line := fmt.Sprintf("%d: %s %s", c.n, d.Effect, by)
		if !ok {
			line += fmt.Sprintf(" (expected %s) FAIL", c.c.Expect)
		}
		fmt.Fprintln(a.stdout, line)
	}
	return failed, nil
}
