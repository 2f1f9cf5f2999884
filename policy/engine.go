package policy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/clawhold/clawhold/monitor/cmdrule"
)

// Options configure an Engine.
type Options struct {
	// Files are operator policy files, loaded after the embedded default
	// policy.
	Files []string
	// NoDefault leaves the embedded default policy out, for operators
	// who replace it wholesale.
	NoDefault bool
	// Defaults gives the effect per kind when no policy matches; a kind
	// not listed is denied.
	Defaults map[string]Effect
	// Logger receives reload failures; nil means slog.Default().
	Logger *slog.Logger
}

// Engine decides requests against the current policy set. It is safe
// for concurrent use; Reload swaps the set atomically so decisions in
// flight finish on the set they started with.
type Engine struct {
	opts Options
	log  *slog.Logger
	set  atomic.Pointer[Set]
}

// NewEngine loads the policy set and returns an Engine for it.
func NewEngine(opts Options) (*Engine, error) {
	for k, v := range opts.Defaults {
		if _, err := ParseEffect(string(v)); err != nil {
			return nil, fmt.Errorf("policy: default for %q: %w", k, err)
		}
	}
	e := &Engine{opts: opts, log: opts.Logger}
	if e.log == nil {
		e.log = slog.Default()
	}
	s, err := loadFiles(!opts.NoDefault, opts.Files)
	if err != nil {
		return nil, err
	}
	e.set.Store(s)
	return e, nil
}

// Set returns the policy set in use.
func (e *Engine) Set() *Set { return e.set.Load() }

// Decide returns the decision for req. ctx is accepted for callers that
// bound the decision; evaluation itself does not block.
func (e *Engine) Decide(ctx context.Context, req Request) (Decision, error) {
	if err := ctx.Err(); err != nil {
		return Decision{}, err
	}
	return e.set.Load().decide(req, e.opts.Defaults)
}

// Reload reads the policy files again. On error the current set stays in
// use and the error is returned.
func (e *Engine) Reload() error {
	s, err := loadFiles(!e.opts.NoDefault, e.opts.Files)
	if err != nil {
		return err
	}
	e.set.Store(s)
	return nil
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	mod  time.Time
	size int64
	err  bool
}

func statFiles(files []string) []fileStamp {
	st := make([]fileStamp, len(files))
	for i, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			st[i] = fileStamp{err: true}
			continue
		}
		st[i] = fileStamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return st
}

// Watch polls the policy files' modification times and sizes every
// interval and reloads when one changes, until ctx is done. A failed
// reload is logged and the previous set stays in use; the next change
// is tried again. Polling rather than inotify keeps it working for
// files replaced by rename and on bind mounts.
func (e *Engine) Watch(ctx context.Context, every time.Duration) {
	last := e.set.Load().stamps
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := statFiles(e.opts.Files)
		if slices.Equal(cur, last) {
			continue
		}
		last = cur
		if err := e.Reload(); err != nil {
			e.log.Error("policy reload failed; keeping the previous policies", "err", err)
			continue
		}
		e.log.Info("policy reloaded", "files", e.opts.Files, "policies", e.set.Load().Len())
	}
}

// AnalyzeCommand fills a request's Programs and CommandRules from a shell
// command with the monitor's command rules, so policies see the same
// parsed form the monitor does. A parse error is returned with the rule
// matches found anyway (cmdrule evaluates what it can).
func AnalyzeCommand(rules *cmdrule.Engine, command string, ec cmdrule.EvalContext) (programs, ruleIDs []string, err error) {
	cmd, perr := rules.Parse(command)
	if perr != nil {
		err = fmt.Errorf("policy: parse command: %w", perr)
	} else {
		for _, c := range cmd.Calls {
			if c.Program != "" && !slices.Contains(programs, c.Program) {
				programs = append(programs, c.Program)
			}
		}
	}
	for _, m := range rules.Evaluate(command, ec) {
		if !slices.Contains(ruleIDs, m.Rule) {
			ruleIDs = append(ruleIDs, m.Rule)
		}
	}
	return programs, ruleIDs, err
}
