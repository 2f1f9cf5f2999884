// Command clawhold makes a self-hosted OpenClaw deployment safe to run.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	gitleakslog "github.com/zricethezav/gitleaks/v8/logging"

	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/sandbox"
)

func main() {
	// Everything clawhold creates is private: database files, WAL files,
	// backups, keys. Set before any file is created.
	syscall.Umask(0o077)
	// gitleaks (the audit's secret scanner) logs to stderr by itself,
	// git's errors included; the audit reports what it needs to.
	gitleakslog.Logger = zerolog.Nop()
	if err := harden(); err != nil {
		fmt.Fprintln(os.Stderr, "clawhold:", err)
		os.Exit(1)
	}
	// The sandbox's init and exec stages are this binary re-executed.
	sandbox.Reexec()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	var code exitCodeError
	if errors.As(err, &code) {
		os.Exit(int(code))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "clawhold:", err)
		os.Exit(1)
	}
}

// app holds the global flags and streams for every command.
type app struct {
	dataDir, configPath string
	json                bool
	verbose             bool
	stdin               io.Reader
	stdout, stderr      io.Writer
}

func newRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "clawhold",
		Short:         "Make a self-hosted OpenClaw deployment safe to run",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&a.dataDir, "data-dir", "", "data directory (default: $CLAWHOLD_DATA_DIR, config data_dir, /var/lib/clawhold for root, else $XDG_DATA_HOME/clawhold)")
	pf.StringVar(&a.configPath, "config", "", "configuration file (default: $CLAWHOLD_CONFIG, /etc/clawhold/clawhold.yaml for root, else $XDG_CONFIG_HOME/clawhold/clawhold.yaml; absent means defaults)")
	pf.BoolVar(&a.json, "json", false, "print machine-readable JSON")
	pf.BoolVarP(&a.verbose, "verbose", "v", false, "log what clawhold does to stderr")
	root.AddCommand(a.versionCmd(), a.initCmd(), a.keysCmd(), a.secretsCmd(), a.egressCmd(), a.sandboxCmd(),
		a.usersCmd(), a.sessionsCmd(), a.frontdoorCmd(), a.openclawCmd(), a.upCmd(), a.tenantsCmd(), a.cellsCmd(), a.backupCmd(), a.auditCmd(),
		a.logsCmd(), a.rulesCmd(), a.alertsCmd(), a.baselinesCmd(), a.policyCmd())
	return root
}

func (a *app) logger() *slog.Logger {
	if !a.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// open opens the installation named by the global flags.
func (a *app) open(ctx context.Context, createRootKey bool) (*instance.Instance, error) {
	return instance.Open(ctx, instance.Options{
		DataDir:       a.dataDir,
		ConfigPath:    a.configPath,
		CreateRootKey: createRootKey,
		Logger:        a.logger(),
	})
}
