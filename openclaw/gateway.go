package openclaw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/clawhold/clawhold/datadir"
)

// DefaultStopGrace is how long Stop waits after SIGTERM before it kills the
// gateway's process group. An idle gateway exits in 0.5–5 s; one with an
// agent run in flight drains it first.
const DefaultStopGrace = 15 * time.Second

// GatewayOptions configure StartGateway.
type GatewayOptions struct {
	// Home is the gateway's own HOME (absolute). It is created with mode
	// 0700; OpenClaw keeps all its state under Home/.openclaw.
	Home string

	// Config is written to Home/.openclaw/openclaw.json (mode 0600). It may
	// be nil, a JSON document (json.RawMessage, []byte, string) or any value
	// that encodes to a JSON object, such as a map[string]any. The runner
	// sets gateway.port and, unless present, gateway.mode "local",
	// logging.file Home/logs/gateway.log, update.checkOnStart false and
	// discovery.mdns.mode "off".
	Config any

	// Port is the loopback port. Zero picks the config's gateway.port if
	// set, else a free port.
	Port int

	// Env holds extra KEY=value entries, added to (and overriding) the
	// minimal environment of Install.Env. The caller's environment is not
	// inherited.
	Env []string

	// Stdout and Stderr, if set, receive the gateway's output.
	Stdout, Stderr io.Writer

	// StopGrace overrides DefaultStopGrace.
	StopGrace time.Duration

	// Logger receives the runner's own events; nil means slog.Default().
	Logger *slog.Logger
}

// Gateway is a running OpenClaw gateway ("openclaw gateway run") in its own
// process group.
type Gateway struct {
	home       string
	configPath string
	logPath    string
	port       int
	pid        int
	proc       *os.Process
	stopGrace  time.Duration
	secrets    []string
	logger     *slog.Logger
	client     *http.Client
	output     *TailBuffer

	done    chan struct{} // closed once the process has exited
	waitErr error         // set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// StartGateway writes the config into opts.Home and starts the gateway of
// inst. It returns once the process is running; call WaitHealthy to wait for
// it to serve. The gateway lives until Stop is called or ctx is done,
// whichever comes first.
func StartGateway(ctx context.Context, inst *Install, opts GatewayOptions) (*Gateway, error) {
	if inst == nil {
		return nil, errors.New("openclaw: StartGateway: nil Install")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("openclaw: starting gateway: %w", err)
	}
	if err := PrepareHome(opts.Home); err != nil {
		return nil, err
	}
	stateDir := filepath.Join(opts.Home, ".openclaw")
	logDir := filepath.Join(opts.Home, "logs")
	for _, d := range []string{stateDir, logDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("openclaw: creating %s: %w", d, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("openclaw: chmod %s: %w", d, err)
		}
	}

	port := opts.Port
	if port == 0 {
		p, err := configPort(opts.Config)
		if err != nil {
			return nil, err
		}
		port = p
	}
	if port == 0 {
		p, err := freePort(ctx)
		if err != nil {
			return nil, err
		}
		port = p
	}

	cfg, logPath, err := gatewayConfig(opts.Config, port, filepath.Join(logDir, "gateway.log"))
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(stateDir, "openclaw.json")
	if err := datadir.WriteFileAtomic(configPath, cfg, 0o600); err != nil {
		return nil, fmt.Errorf("openclaw: %w", err)
	}

	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	grace := opts.StopGrace
	if grace <= 0 {
		grace = DefaultStopGrace
	}
	env := append(inst.Env(opts.Home), opts.Env...)
	g := &Gateway{
		home:       opts.Home,
		configPath: configPath,
		logPath:    logPath,
		port:       port,
		stopGrace:  grace,
		secrets:    collectSecrets(cfg, opts.Env),
		logger:     logger.With("component", "openclaw-gateway", "port", port),
		client: &http.Client{
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
			Timeout:   5 * time.Second,
		},
		output: NewTailBuffer(64 << 10),
		done:   make(chan struct{}),
	}

	// Not exec.CommandContext: cancellation must stop the whole process
	// group gracefully, which Stop does.
	cmd := exec.Command(inst.Node, inst.CLI, "gateway", "run", "--port", strconv.Itoa(port))
	cmd.Env = env
	cmd.Dir = opts.Home
	cmd.Stdout = teeWriter(g.output, opts.Stdout)
	cmd.Stderr = teeWriter(g.output, opts.Stderr)
	// Workers may hold the output pipes after the gateway exits.
	cmd.WaitDelay = 2 * time.Second
	if err := setProcessGroup(cmd); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("openclaw: starting gateway: %w", err)
	}
	g.pid = cmd.Process.Pid
	g.proc = cmd.Process
	g.logger.Info("started", "pid", g.pid, "home", opts.Home)

	go func() {
		err := cmd.Wait()
		if errors.Is(err, exec.ErrWaitDelay) {
			err = nil
		}
		g.logger.Info("exited", "pid", g.pid, "err", err)
		g.waitErr = err
		close(g.done)
	}()
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace+10*time.Second)
			defer cancel()
			if err := g.Stop(sctx); err != nil {
				g.logger.Warn("stop on context end", "err", err)
			}
		case <-g.done:
		}
	}()
	return g, nil
}

// URL is the gateway's HTTP base URL, http://127.0.0.1:<port>.
func (g *Gateway) URL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(g.port))
}

// Port is the gateway's port.
func (g *Gateway) Port() int { return g.port }

// PID is the gateway's process id, which is also its process group id.
func (g *Gateway) PID() int { return g.pid }

// Home is the gateway's HOME.
func (g *Gateway) Home() string { return g.home }

// ConfigPath is the gateway's openclaw.json.
func (g *Gateway) ConfigPath() string { return g.configPath }

// LogPath is the gateway's JSONL log file (logging.file).
func (g *Gateway) LogPath() string { return g.logPath }

// Done is closed when the gateway process has exited.
func (g *Gateway) Done() <-chan struct{} { return g.done }

// Err returns the gateway's exit error once Done is closed, else nil.
func (g *Gateway) Err() error {
	select {
	case <-g.done:
		return g.waitErr
	default:
		return nil
	}
}

// WaitHealthy polls /healthz and then /readyz every 100 ms until each
// answers 200, the gateway exits, or ctx is done.
func (g *Gateway) WaitHealthy(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for _, path := range []string{"/healthz", "/readyz"} {
		for {
			lastErr := g.probe(ctx, path)
			if lastErr == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("openclaw gateway %s: %s not ready: %w (last probe: %v)", g.URL(), path, ctx.Err(), lastErr)
			case <-g.done:
				return fmt.Errorf("openclaw gateway exited before %s was ready: %v", path, g.waitErr)
			case <-tick.C:
			}
		}
	}
	return nil
}

func (g *Gateway) probe(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.URL()+path, nil)
	if err != nil {
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

// Stop sends SIGTERM to the gateway, waits up to the stop grace (or until ctx
// is done) for it to exit, then SIGKILLs its whole process group and waits
// until no process of the group is left. It is safe to call more than once
// and concurrently; later calls return the first call's result.
func (g *Gateway) Stop(ctx context.Context) error {
	g.stopOnce.Do(func() { g.stopErr = g.stop(ctx) })
	return g.stopErr
}

func (g *Gateway) stop(ctx context.Context) error {
	defer g.client.CloseIdleConnections()
	var errs []error
	exitedBefore := false
	select {
	case <-g.done:
		exitedBefore = true
	default:
		start := time.Now()
		if err := g.proc.Signal(terminateSignal); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("openclaw: SIGTERM gateway pid %d: %w", g.pid, err))
		}
		timer := time.NewTimer(g.stopGrace)
		defer timer.Stop()
		select {
		case <-g.done:
			g.logger.Info("stopped", "pid", g.pid, "after", time.Since(start).Round(time.Millisecond))
		case <-timer.C:
			errs = append(errs, fmt.Errorf("openclaw: gateway pid %d did not exit within %v of SIGTERM; killed", g.pid, g.stopGrace))
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("openclaw: stopping gateway pid %d: %w; killed", g.pid, ctx.Err()))
		}
	}

	// Whatever is left of the group (workers, tool processes) goes now.
	if err := killGroup(g.pid); err != nil {
		errs = append(errs, fmt.Errorf("openclaw: killing process group %d: %w", g.pid, err))
	}
	if err := g.waitGroupGone(ctx); err != nil {
		errs = append(errs, err)
	}
	if !exitedBefore && len(errs) == 0 && g.waitErr != nil && !terminatedBySIGTERM(g.waitErr) {
		errs = append(errs, fmt.Errorf("openclaw: gateway exited uncleanly after SIGTERM: %w", g.waitErr))
	}
	return errors.Join(errs...)
}

// waitGroupGone waits for the main process to be reaped and for the process
// group to be empty.
func (g *Gateway) waitGroupGone(ctx context.Context) error {
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	select {
	case <-g.done:
	case <-deadline.C:
		return fmt.Errorf("openclaw: gateway pid %d not reaped after SIGKILL", g.pid)
	case <-ctx.Done():
		return fmt.Errorf("openclaw: waiting for gateway pid %d: %w", g.pid, ctx.Err())
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for groupAlive(g.pid) {
		select {
		case <-deadline.C:
			return fmt.Errorf("openclaw: process group %d still has members after SIGKILL", g.pid)
		case <-ctx.Done():
			return fmt.Errorf("openclaw: waiting for process group %d: %w", g.pid, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// configPort returns gateway.port from cfg, or 0.
func configPort(cfg any) (int, error) {
	m, err := configObject(cfg)
	if err != nil {
		return 0, err
	}
	gw, _ := m["gateway"].(map[string]any)
	switch p := gw["port"].(type) {
	case nil:
		return 0, nil
	case interface{ Int64() (int64, error) }: // json.Number
		n, err := p.Int64()
		if err != nil || n <= 0 || n > 65535 {
			return 0, fmt.Errorf("openclaw: config gateway.port %v is not a port", p)
		}
		return int(n), nil
	default:
		return 0, fmt.Errorf("openclaw: config gateway.port is %T, want a number", p)
	}
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the gateway binds; callers that care retry.
func freePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("openclaw: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// teeWriter copies the gateway's output to buf and, if set, w. Errors from w
// are dropped: a failing consumer must not break the gateway's stdout pipe.
func teeWriter(buf *TailBuffer, w io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return writerFunc(func(p []byte) (int, error) {
		buf.Write(p)
		w.Write(p)
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// terminatedBySIGTERM reports whether a process ended because of the SIGTERM
// we sent: killed by the signal, or exiting with 128+15 after a graceful
// shutdown, which is what the gateway does once it has drained (seen on
// 2026.9.6: "received SIGTERM; shutting down", then exit status 143).
func terminatedBySIGTERM(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
		return true
	}
	return ee.ExitCode() == 128+int(syscall.SIGTERM)
}
