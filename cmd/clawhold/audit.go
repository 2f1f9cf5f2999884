package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/clawhold/clawhold/audit"
	"github.com/clawhold/clawhold/config"
	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/openclaw"
)

// Exit codes of clawhold audit (docs/audit.md).
const (
	auditExitFindings = 1 // a finding met --fail-on
	auditExitError    = 2 // usage or runtime error, or an incomplete audit
)

func (a *app) auditCmd() *cobra.Command {
	var (
		stateDir, configPath, failOn, openclawFlag string
		repos, images                              []string
		live, sarif, fix, dryRun                   bool
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Audit an OpenClaw deployment's security posture (exit 1 when a finding meets --fail-on)",
		Long: `Audit an OpenClaw state dir and config, git repositories, container images,
the live host and clawhold's own data dir. Findings are grouped by area;
--json and --sarif print machine-readable reports (docs/audit.md).

Exit status: 0 when no finding meets --fail-on, 1 when one does, 2 on a
usage or runtime error or when part of the audit could not run.

Here --config names OpenClaw's openclaw.json; clawhold's own configuration
is read from $CLAWHOLD_CONFIG or its default path.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return a.auditError(fmt.Errorf("audit takes no arguments, got %q", args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			threshold, err := audit.ParseSeverity(failOn)
			if err != nil {
				return a.auditError(fmt.Errorf("--fail-on: %w", err))
			}
			if a.json && sarif {
				return a.auditError(errors.New("--json and --sarif are exclusive"))
			}
			if dryRun && !fix {
				return a.auditError(errors.New("--dry-run needs --fix"))
			}
			env := environ()
			dataDir, clawholdConfig, err := a.auditDataDir()
			if err != nil {
				return a.auditError(err)
			}
			target := func() (*audit.Target, error) {
				t, err := audit.NewTarget(stateDir, configPath, env)
				if err != nil {
					return nil, err
				}
				t.Repos, t.Images, t.Live, t.DataDir, t.ClawholdConfig = repos, images, live, dataDir, clawholdConfig
				return t, nil
			}
			t, err := target()
			if err != nil {
				return a.auditError(err)
			}
			var opts audit.Options
			if opts.OpenClaw, err = a.openclawArgv(openclawFlag, dataDir); err != nil {
				return a.auditError(err)
			}
			ctx := cmd.Context()
			rep, err := audit.Run(ctx, t, opts)
			if err != nil {
				return a.auditError(err)
			}
			if fix {
				// What --fix does goes where it does not corrupt a
				// machine-readable report.
				out := a.stdout
				if a.json || sarif {
					out = a.stderr
				}
				fo := audit.FixOptions{DryRun: dryRun, Out: out}
				if dataDir != "" {
					fo.MoveSecrets = a.auditMoveSecrets(out, dataDir)
				}
				if err := audit.Fix(ctx, t, rep, fo); err != nil {
					return a.auditError(err)
				}
				if !dryRun {
					// Audit again: the report and the exit code say
					// what is left.
					if t, err = target(); err != nil {
						return a.auditError(fmt.Errorf("after fixing: %w", err))
					}
					if rep, err = audit.Run(ctx, t, opts); err != nil {
						return a.auditError(fmt.Errorf("after fixing: %w", err))
					}
					if out == a.stdout {
						fmt.Fprintln(out, "\naudit after fixing:")
					}
				}
				if out == a.stdout {
					fmt.Fprintln(out)
				}
			}
			switch {
			case a.json:
				err = audit.WriteJSON(a.stdout, rep)
			case sarif:
				err = audit.WriteSARIF(a.stdout, rep, sarifRoot(env))
			default:
				err = audit.WriteText(a.stdout, rep, a.colorOut(env))
			}
			if err != nil {
				return a.auditError(err)
			}
			if rep.Fails(threshold) {
				return exitCodeError(auditExitFindings)
			}
			// A part that did not run may hide a finding: a CI gate must
			// not pass on it. OpenClaw's own audits are an extra when
			// found (--openclaw auto): the native checks never depend on
			// them, so their failure alone is reported, not fatal.
			var blocking int
			for _, e := range rep.Errors {
				merged := strings.HasPrefix(e, audit.SourceOpenClawAudit) || strings.HasPrefix(e, audit.SourceOpenClawSecrets)
				if !merged || openclawFlag != "auto" {
					blocking++
				}
			}
			if blocking > 0 {
				return a.auditError(fmt.Errorf("audit incomplete: %d part(s) could not run (listed in the report)", blocking))
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return a.auditError(err) })
	f := cmd.Flags()
	f.StringVar(&stateDir, "state-dir", "", "OpenClaw state dir (default: $OPENCLAW_STATE_DIR, else ~/.openclaw)")
	// Shadows the global --config (clawhold's file) on this command: the
	// audit's subject is OpenClaw's config.
	f.StringVar(&configPath, "config", "", "OpenClaw config file (default: $OPENCLAW_CONFIG_PATH, else openclaw.json in the state dir)")
	f.StringArrayVar(&repos, "repo", nil, "git repository to scan for secrets, files and history (repeatable)")
	f.StringArrayVar(&images, "image", nil, "container image tarball (docker save or OCI layout) to scan layer by layer (repeatable)")
	f.BoolVar(&live, "live", false, "inspect the running host: listeners and whether the gateway answers off loopback")
	f.BoolVar(&sarif, "sarif", false, "print SARIF 2.1.0 (for GitHub code scanning)")
	f.StringVar(&failOn, "fail-on", "critical", "exit 1 when a finding is at least this severe: critical, warn or info")
	f.StringVar(&openclawFlag, "openclaw", "auto", "merge OpenClaw's own audits: auto (use its CLI when found), off, or the path of an install dir or openclaw executable")
	f.BoolVar(&fix, "fix", false, "fix what is safe to fix automatically, then audit again")
	f.BoolVar(&dryRun, "dry-run", false, "with --fix: show the changes without making them")
	return cmd
}

// auditMoveSecrets moves the plaintext credentials of an OpenClaw config
// into clawhold's secret store in dataDir, as `clawhold secrets import
// --format openclaw` does (SecretRefs in the file, a 0600 backup beside
// it), writing what it does to out.
func (a *app) auditMoveSecrets(out io.Writer, dataDir string) func(ctx context.Context, path string, dryRun bool) error {
	return func(ctx context.Context, path string, dryRun bool) error {
		sub := *a
		sub.stdout, sub.stderr, sub.json, sub.dataDir = out, out, false, dataDir
		cmd := sub.secretsImportCmd()
		args := []string{"--format", "openclaw", path}
		if dryRun {
			args = append(args, "--dry-run")
		}
		cmd.SetArgs(args)
		cmd.SetOut(out)
		cmd.SetErr(out)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		return cmd.ExecuteContext(ctx)
	}
}

// auditError reports err and exits 2: the exit code CI tells apart from
// "findings met the threshold".
func (a *app) auditError(err error) error {
	fmt.Fprintln(a.stderr, "clawhold:", err)
	return exitCodeError(auditExitError)
}

// auditDataDir returns clawhold's data dir when there is one ("" when
// none exists: an OpenClaw install without clawhold) and clawhold's
// config file when there is one. A --data-dir that does not exist is an
// error; the defaults are only used when present.
func (a *app) auditDataDir() (dataDir, configFile string, err error) {
	cfg, err := config.LoadDefault()
	if err != nil {
		return "", "", fmt.Errorf("reading clawhold's config: %w", err)
	}
	d := datadir.Resolve(a.dataDir, cfg)
	if fi, err := os.Stat(d); d == "" || err != nil || !fi.IsDir() {
		if a.dataDir != "" {
			return "", "", fmt.Errorf("--data-dir %s is not a directory", a.dataDir)
		}
		return "", cfg.Path, nil
	}
	// Absolute: --fix writes it into the SecretRef provider's command.
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", "", fmt.Errorf("resolving the data dir %s: %w", d, err)
	}
	return abs, cfg.Path, nil
}

// openclawArgv resolves --openclaw to the argv prefix that runs the
// OpenClaw CLI, or nil for none.
func (a *app) openclawArgv(flag, dataDir string) ([]string, error) {
	switch flag {
	case "off":
		return nil, nil
	case "auto", "":
		// The install clawhold manages, then one on PATH; none is fine.
		var dirs []string
		if d := os.Getenv(openclaw.DirEnv); d != "" {
			dirs = append(dirs, d)
		}
		if dataDir != "" {
			dirs = append(dirs, filepath.Join(dataDir, "openclaw"))
		}
		for _, d := range dirs {
			if in, err := openclaw.FindInstall(d); err == nil {
				return []string{in.Node, in.CLI}, nil
			}
		}
		if p, err := exec.LookPath("openclaw"); err == nil {
			return []string{p}, nil
		}
		return nil, nil
	}
	fi, err := os.Stat(flag)
	if err != nil {
		return nil, fmt.Errorf("--openclaw: %w", err)
	}
	if fi.IsDir() {
		in, err := openclaw.FindInstall(flag)
		if err != nil {
			return nil, fmt.Errorf("--openclaw: %w", err)
		}
		return []string{in.Node, in.CLI}, nil
	}
	abs, err := filepath.Abs(flag)
	if err != nil {
		return nil, fmt.Errorf("--openclaw: %w", err)
	}
	return []string{abs}, nil
}

// colorOut reports whether text output gets color: stdout is a terminal
// and NO_COLOR (no-color.org) is unset.
func (a *app) colorOut(env map[string]string) bool {
	if _, ok := env["NO_COLOR"]; ok {
		return false
	}
	f, ok := a.stdout.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// sarifRoot is the directory SARIF locations are relative to: the
// checkout in GitHub Actions, else the working directory, since code
// scanning matches paths against the repository root.
func sarifRoot(env map[string]string) string {
	if w := env["GITHUB_WORKSPACE"]; w != "" {
		return w
	}
	wd, _ := os.Getwd()
	return wd
}

// environ is the process environment as a map.
func environ() map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}
