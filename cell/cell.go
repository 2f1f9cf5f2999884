package cell

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clawhold/clawhold/cell/cellapi"
	"github.com/clawhold/clawhold/cell/plugin"
	"github.com/clawhold/clawhold/cellfs"
	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/openclaw"
	"github.com/clawhold/clawhold/sandbox"
	"golang.org/x/sys/unix"
)

// States of a cell.
const (
	StateStopped  = "stopped"
	StateStarting = "starting"
	StateReady    = "ready"
	StateBackoff  = "backoff" // crashed; restarting after a delay
	StateStopping = "stopping"
)

// Cell is one tenant's gateway and its sockets.
type Cell struct {
	m      *Manager
	tenant string
	layout Layout
	ids    IDs

	mu       sync.Mutex
	state    string
	since    time.Time
	used     time.Time
	restarts int
	lastErr  string
	cancel   context.CancelFunc
	done     chan struct{} // closed when the supervisor has ended
	config   []byte        // openclaw.json as last written
	output   *openclaw.TailBuffer
}

func newCell(m *Manager, tenant string) *Cell {
	return &Cell{
		m: m, tenant: tenant,
		layout: NewLayout(m.o.DataDir, tenant),
		ids:    IDsFor(tenant),
		state:  StateStopped, since: time.Now(),
		output: openclaw.NewTailBuffer(256 << 10),
	}
}

func (c *Cell) touch() {
	c.mu.Lock()
	c.used = time.Now()
	c.mu.Unlock()
}

// idleSince returns when the cell was last used, or false when it is not
// ready (a starting or restarting cell is never idle).
func (c *Cell) idleSince() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used, c.state == StateReady
}

func (c *Cell) isRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done != nil
}

func (c *Cell) setState(s, errText string) {
	c.mu.Lock()
	c.state, c.since = s, time.Now()
	if errText != "" {
		c.lastErr = errText
	}
	c.mu.Unlock()
}

func (c *Cell) status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{Tenant: c.tenant, State: c.state, Since: c.since, LastUsed: c.used,
		Restarts: c.restarts, LastError: c.lastErr, UID: c.ids.UID, Socket: c.layout.GatewaySocket()}
}

// ensure starts the supervisor unless it runs; it reports readiness.
func (c *Cell) ensure() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.state == StateReady
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	c.state, c.since = StateStarting, time.Now()
	c.m.wg.Add(1)
	go func() {
		defer c.m.wg.Done()
		c.supervise(ctx)
	}()
	return false
}

// waitReady waits for the cell to be ready, through restarts.
func (c *Cell) waitReady(ctx context.Context) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		c.mu.Lock()
		state, running, lastErr := c.state, c.done != nil, c.lastErr
		c.mu.Unlock()
		switch {
		case state == StateReady:
			return nil
		case !running:
			return fmt.Errorf("cell %s is not running (last error: %s)", c.tenant, lastErr)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("cell %s: waiting until ready: %w (last error: %s)", c.tenant, ctx.Err(), lastErr)
		}
	}
}

// stop ends the supervisor (SIGTERM to the gateway, SIGKILL after the
// sandbox's grace) and waits for it.
func (c *Cell) stop(ctx context.Context, reason string) error {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	if done != nil {
		c.state, c.since = StateStopping, time.Now()
	}
	c.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("cell %s: stopping: %w", c.tenant, ctx.Err())
	}
	c.m.record(c.tenant, events.Event{Type: EventStop, Subject: c.tenant, Detail: map[string]any{"reason": reason}})
	return nil
}

// supervise runs the gateway until ctx ends, restarting it with backoff.
func (c *Cell) supervise(ctx context.Context) {
	defer func() {
		c.mu.Lock()
		done := c.done
		c.state, c.since, c.done, c.cancel = StateStopped, time.Now(), nil, nil
		c.mu.Unlock()
		close(done)
	}()
	backoff := time.Second
	for {
		started := time.Now()
		code, err := c.runOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		msg := fmt.Sprintf("gateway exited with status %d", code)
		if err != nil {
			msg = err.Error()
		}
		if time.Since(started) > 5*time.Minute {
			backoff = time.Second // it ran fine for a while: a fresh failure
		}
		c.mu.Lock()
		c.restarts++
		c.mu.Unlock()
		c.setState(StateBackoff, msg)
		c.m.log.Warn("cell: gateway ended; restarting", "tenant", c.tenant, "err", msg, "in", backoff)
		c.m.record(c.tenant, events.Event{Type: EventExit, Subject: c.tenant, Detail: map[string]any{
			"code": code, "error": msg, "restart_in_ms": backoff.Milliseconds()}})
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// runOnce prepares the cell, runs the gateway in its sandbox and returns
// when it exits.
func (c *Cell) runOnce(ctx context.Context) (int, error) {
	c.setState(StateStarting, "")
	var hostView func() // unmounts the host's view of the decrypted state
	if c.m.o.VolumeKeys != nil {
		unmount, err := c.mountState(ctx)
		if err != nil {
			return -1, err
		}
		defer unmount()
		hostView = func() {
			// The sandbox holds its own copy of the mount; the host keeps
			// only ciphertext in view.
			if err := unix.Unmount(c.layout.Home, unix.MNT_DETACH); err != nil {
				c.m.log.Warn("cell: unmounting the host view of the state", "tenant", c.tenant, "err", err)
			}
		}
	}
	if err := c.prepare(ctx); err != nil {
		return -1, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopSockets, err := c.serveSockets(runCtx)
	if err != nil {
		return -1, err
	}
	defer stopSockets()

	p, err := sandbox.Expand(c.m.o.Profile, map[string]string{
		"OPENCLAW_DIR": c.m.o.OpenClaw.Dir, "STATE_DIR": c.layout.Home, "WORKSPACE": c.layout.Workspace,
	})
	if err != nil {
		return -1, err
	}
	p.Filesystem.ReadOnly = append(p.Filesystem.ReadOnly,
		c.m.o.Exe, c.layout.ConfigDir, c.layout.BinDir, c.layout.RunDir, c.layout.PluginDir)
	p.Filesystem.ReadWrite = append(p.Filesystem.ReadWrite, c.layout.CacheDir)
	env := append(c.m.o.OpenClaw.Env(c.layout.Home),
		"OPENCLAW_CONFIG_PATH="+c.layout.ConfigFile(),
		"OPENCLAW_STATE_DIR="+c.layout.StateDir(),
		"TMPDIR="+filepath.Join(c.layout.Home, "tmp"),
		"NODE_COMPILE_CACHE="+c.layout.CacheDir)
	c.m.record(c.tenant, events.Event{Type: EventStart, Subject: c.tenant, Detail: map[string]any{"uid": c.ids.UID}})
	exited := make(chan struct{})
	var code int
	var runErr error
	go func() {
		defer close(exited)
		code, runErr = sandbox.Run(runCtx, sandbox.Options{
			ID:           "cell-" + c.tenant,
			Profile:      p,
			Argv:         []string{c.m.o.OpenClaw.Node, c.m.o.OpenClaw.CLI, "gateway", "run", "--port", fmt.Sprint(GatewayPort)},
			Env:          env,
			Stdout:       c.output,
			Stderr:       c.output,
			EgressSocket: c.layout.EgressSocket(),
			ExposeSocket: c.layout.GatewaySocket(),
			UID:          c.ids.UID, GID: c.ids.GID,
			Exe:      c.m.o.Exe,
			Prepared: hostView,
			Events:   func(e sandbox.Event) { c.m.o.Record(c.tenant, e.Record()) },
			Logger:   c.m.log,
		})
	}()
	if err := c.waitHealthy(runCtx, exited); err != nil {
		cancel()
		<-exited
		return code, err
	}
	c.mu.Lock()
	c.state, c.since = StateReady, time.Now()
	c.used = c.since // idle time counts from ready, not from a crash
	c.mu.Unlock()
	c.m.record(c.tenant, events.Event{Type: EventReady, Subject: c.tenant})
	c.m.log.Info("cell ready", "tenant", c.tenant)
	<-exited
	return code, runErr
}

// waitHealthy polls /readyz through the gateway socket until it answers
// 200, the gateway exits or the start timeout passes.
func (c *Cell) waitHealthy(ctx context.Context, exited <-chan struct{}) error {
	client := c.gatewayClient()
	deadline := time.Now().Add(c.m.o.StartTimeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return fmt.Errorf("gateway exited while starting: %s", lastLines(c.output.String(), 5))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway not ready after %s", c.m.o.StartTimeout)
		}
	}
}

func (c *Cell) gatewayClient() *http.Client {
	sock := c.layout.GatewaySocket()
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
}

// prepare lays out the cell's directories and writes its config, secret
// provider and plugin.
func (c *Cell) prepare(ctx context.Context) error {
	if err := c.layout.Prepare(c.ids); err != nil {
		return err
	}
	if err := plugin.Write(c.layout.PluginDir); err != nil {
		return fmt.Errorf("cell: writing the tool-call plugin: %w", err)
	}
	// OpenClaw loads only plugins owned by its own uid (or root, which a
	// user namespace cannot map); the read-only mount keeps the cell from
	// changing what it owns.
	if err := chownTree(c.layout.PluginDir, c.ids); err != nil {
		return err
	}
	if err := WriteProvider(c.layout, c.ids, c.m.o.Exe); err != nil {
		return err
	}
	c.mu.Lock()
	c.config = nil // always write at start
	c.mu.Unlock()
	return c.writeConfig(ctx)
}

// writeConfig regenerates openclaw.json and writes it when it changed.
func (c *Cell) writeConfig(ctx context.Context) error {
	members, err := c.m.o.Members(ctx, c.tenant)
	if err != nil {
		return err
	}
	overlays, err := c.m.o.Overlays(c.tenant)
	if err != nil {
		return err
	}
	cfg, err := Generate(ConfigInput{
		Layout: c.layout, Members: members, PublicURL: c.m.o.PublicURL,
		Plugin: plugin.Config(c.layout.PluginDir, c.layout.CellSocket()), Overlays: overlays,
	})
	if err != nil {
		return err
	}
	b, _ := json.Marshal(cfg)
	c.mu.Lock()
	same := bytes.Equal(b, c.config)
	c.mu.Unlock()
	if same {
		return nil
	}
	if err := WriteConfig(c.layout, c.ids, cfg); err != nil {
		return err
	}
	c.mu.Lock()
	first := c.config == nil
	c.config = b
	c.mu.Unlock()
	if !first {
		users := make([]string, len(members))
		for i, u := range members {
			users[i] = u.Name + ":" + u.Role
		}
		c.m.record(c.tenant, events.Event{Type: EventConfig, Subject: c.tenant, Detail: map[string]any{"users": users}})
	}
	return nil
}

// serveSockets serves the cell socket (secrets, tool calls) and the
// cell's egress listener, both connectable only by the cell's uid.
func (c *Cell) serveSockets(ctx context.Context) (stop func(), err error) {
	var closers []func()
	stop = func() {
		for _, f := range closers {
			f()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	listen := func(path string) (net.Listener, error) {
		os.Remove(path)
		ln, err := egress.Listen(ctx, "unix", path)
		if err != nil {
			return nil, fmt.Errorf("cell: listening on %s: %w", path, err)
		}
		if os.Geteuid() == 0 {
			if err := os.Chown(path, c.ids.UID, c.ids.GID); err != nil {
				ln.Close()
				return nil, fmt.Errorf("cell: chown %s: %w", path, err)
			}
		}
		if err := os.Chmod(path, 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("cell: chmod %s: %w", path, err)
		}
		return ln, nil
	}

	eln, err := listen(c.layout.EgressSocket())
	if err != nil {
		return nil, err
	}
	ectx, ecancel := context.WithCancel(ctx)
	edone := make(chan struct{})
	go func() {
		defer close(edone)
		c.m.o.Egress.Serve(ectx, eln, egress.Client{Tenant: c.tenant, Cell: "cell-" + c.tenant, Policy: c.m.o.EgressPolicy(c.tenant)})
	}()
	closers = append(closers, func() { ecancel(); eln.Close(); <-edone })

	cln, err := listen(c.layout.CellSocket())
	if err != nil {
		return nil, err
	}
	h := &cellapi.Handler{
		ToolCall: c.toolCall,
		Secrets: func(ctx context.Context, names []string) (map[string][]byte, error) {
			if c.m.o.Secrets == nil {
				return map[string][]byte{}, nil
			}
			return c.m.o.Secrets(ctx, c.tenant, names)
		},
		Logger: c.m.log.With("tenant", c.tenant),
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(cln)
	closers = append(closers, func() { srv.Close() })
	return stop, nil
}

// toolCall records a hook call and, for before, decides it.
func (c *Cell) toolCall(ctx context.Context, call cellapi.ToolCall) (cellapi.Decision, error) {
	attributed := "hook"
	var candidates []string
	if call.User == "" {
		// The hook names no user for HTTP tool calls: the users with
		// requests in flight through the front door are the candidates.
		attributed = "front-door"
		switch candidates = c.m.inFlight(c.tenant); len(candidates) {
		case 1:
			call.User = candidates[0]
		case 0:
			attributed = "none" // the agent on its own (cron, a channel)
		default:
			attributed = "ambiguous"
		}
	}
	d := cellapi.Decision{Allow: true}
	if call.Phase == "before" {
		d = c.m.o.Decide(call)
	}
	detail := map[string]any{
		"phase": call.Phase, "user": call.User, "tool_call_id": call.ToolCallID,
		"session_key": call.SessionKey, "agent_id": call.AgentID, "run_id": call.RunID,
		"attributed_by": attributed,
	}
	if attributed == "ambiguous" {
		detail["candidates"] = candidates
	}
	if len(call.Params) > 0 {
		detail["params"] = json.RawMessage(call.Params)
	}
	if call.Phase == "before" {
		detail["decision"] = map[bool]string{true: "allow", false: "deny"}[d.Allow]
		if d.Reason != "" {
			detail["reason"] = d.Reason
		}
	} else {
		detail["duration_ms"] = call.DurationMs
		if call.Error != "" {
			detail["error"] = call.Error
		}
	}
	actor := "cell:" + c.tenant
	if call.User != "" {
		actor = "user:" + call.User
	}
	c.m.record(c.tenant, events.Event{Type: EventToolCall, Actor: actor, Subject: call.ToolName, Detail: detail})
	return d, nil
}

// mountState serves the cell's encrypted state (CipherHome) as plaintext
// at Home. It returns a func that stops the server.
func (c *Cell) mountState(ctx context.Context) (func(), error) {
	for _, d := range []struct {
		path  string
		owned bool
	}{{c.layout.Dir, false}, {c.layout.CipherHome, true}, {c.layout.Home, false}} {
		if err := os.MkdirAll(d.path, 0o700); err != nil {
			return nil, fmt.Errorf("cell: %w", err)
		}
		if d.owned && os.Geteuid() == 0 {
			if err := os.Lchown(d.path, c.ids.UID, c.ids.GID); err != nil {
				return nil, fmt.Errorf("cell: %w", err)
			}
		}
	}
	// A mount left by a crashed clawhold would hide the mount point.
	unix.Unmount(c.layout.Home, unix.MNT_DETACH)
	gens, err := c.m.o.VolumeKeys(ctx, c.tenant)
	if err != nil {
		return nil, err
	}
	defer clearAll(gens)
	srv, err := cellfs.Mount(ctx, c.layout.CipherHome, c.layout.Home, cellfs.Options{
		Keys:   gens,
		Logger: c.m.log.With("tenant", c.tenant),
		OnTamper: func(path string, block int64, err error) {
			c.m.log.Warn("cell: tampered state", "tenant", c.tenant, "path", path, "block", block, "err", err)
			c.m.record(c.tenant, events.Event{Type: EventTamper, Subject: path, Detail: map[string]any{
				"block": block, "error": err.Error()}})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cell: mounting the encrypted state of %s: %w", c.tenant, err)
	}
	return func() { srv.Unmount() }, nil
}

func chownTree(root string, ids IDs) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := os.Lchown(path, ids.UID, ids.GID); err != nil {
			return fmt.Errorf("cell: chown %s: %w", path, err)
		}
		return nil
	})
}

func (c *Cell) logs(n int) string { return lastLines(c.output.String(), n) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if n > 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
