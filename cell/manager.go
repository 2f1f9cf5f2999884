// Package cell runs one sandboxed OpenClaw gateway per tenant — its cell —
// and everything a cell talks to: the unix socket the front door reaches
// its gateway through, the cell socket its secret provider and tool-call
// plugin ask clawhold on, and its own listener on the egress proxy.
//
// A cell starts on its tenant's first request, is ready when /readyz
// answers 200, restarts with backoff when its gateway dies, stops when idle
// and comes back on the next request. Its openclaw.json is generated and
// rewritten (OpenClaw reloads it) when the tenant's users or roles change.
package cell

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/clawhold/clawhold/cell/cellapi"
	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/openclaw"
	"github.com/clawhold/clawhold/sandbox"
)

// Event types a cell records in its tenant's database.
const (
	EventStart    = "cell.start"
	EventReady    = "cell.ready"
	EventExit     = "cell.exit"   // detail: code, error, restart_in
	EventStop     = "cell.stop"   // detail: reason (idle, request, shutdown)
	EventToolCall = "tool.call"   // detail: phase, user, params, decision, reason, ...
	EventConfig   = "cell.config" // openclaw.json rewritten
	EventTamper   = "cell.tamper" // an encrypted block failed authentication
)

// ErrUnknownTenant is returned for a tenant that does not exist.
var ErrUnknownTenant = errors.New("no such tenant")

// Options configure a Manager.
type Options struct {
	DataDir   string
	OpenClaw  *openclaw.Install
	Exe       string // the clawhold binary (bound read-only into every cell)
	PublicURL string // the front door's origin
	// Profile is the sandbox profile, unexpanded (default: built-in openclaw).
	Profile *sandbox.Profile
	Egress  *egress.Proxy
	// EgressPolicy names a tenant's egress policy.
	EgressPolicy func(tenant string) string
	// Members lists a tenant's enabled users; ErrUnknownTenant (wrapped)
	// when the tenant does not exist.
	Members func(ctx context.Context, tenant string) ([]Member, error)
	// Overlays are the tenant's OpenClaw config overlays.
	Overlays func(tenant string) ([]map[string]any, error)
	// Secrets resolves secret names in a tenant's store.
	Secrets func(ctx context.Context, tenant string, names []string) (map[string][]byte, error)
	// VolumeKeys, when set, encrypts each cell's state dir (cellfs): it
	// returns the key generations of the tenant's state volume, oldest
	// first (cell.VolumeKeys). Nil keeps the state in plaintext.
	VolumeKeys func(ctx context.Context, tenant string) ([][]byte, error)
	// Decide answers a before_tool_call.
	Decide func(c cellapi.ToolCall) cellapi.Decision
	// Record stores an event in a tenant's database.
	Record func(tenant string, ev events.Event)

	StartTimeout time.Duration
	IdleTimeout  time.Duration // 0: never stop idle cells
	Logger       *slog.Logger
}

// Manager runs the cells.
type Manager struct {
	o   Options
	log *slog.Logger

	mu     sync.Mutex
	cells  map[string]*Cell
	active map[string]map[string]int // tenant → user → requests in flight
	closed bool
	wg     sync.WaitGroup
}

// NewManager returns a Manager; Run drives its housekeeping.
func NewManager(o Options) (*Manager, error) {
	if o.OpenClaw == nil || o.Exe == "" || o.DataDir == "" || o.Egress == nil || o.Members == nil {
		return nil, errors.New("cell: NewManager needs DataDir, OpenClaw, Exe, Egress and Members")
	}
	if o.Profile == nil {
		p, err := sandbox.LoadProfile("openclaw")
		if err != nil {
			return nil, err
		}
		o.Profile = p
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.EgressPolicy == nil {
		o.EgressPolicy = func(string) string { return "default" }
	}
	if o.Overlays == nil {
		o.Overlays = func(string) ([]map[string]any, error) { return nil, nil }
	}
	if o.Decide == nil {
		o.Decide = func(cellapi.ToolCall) cellapi.Decision { return cellapi.Decision{Allow: true} }
	}
	if o.Record == nil {
		o.Record = func(string, events.Event) {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Manager{o: o, log: o.Logger, cells: map[string]*Cell{}, active: map[string]map[string]int{}}, nil
}

// cell returns tenant's Cell, creating its record (not starting it).
func (m *Manager) cell(ctx context.Context, tenant string) (*Cell, error) {
	m.mu.Lock()
	c, ok := m.cells[tenant]
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, errors.New("cell: shutting down")
	}
	if ok {
		return c, nil
	}
	if _, err := m.o.Members(ctx, tenant); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.cells[tenant]; ok {
		return c, nil
	}
	c = newCell(m, tenant)
	m.cells[tenant] = c
	return c, nil
}

// Ensure starts tenant's cell unless it runs and reports whether it is
// ready to serve. It counts as use of the cell.
func (m *Manager) Ensure(ctx context.Context, tenant string) (bool, error) {
	c, err := m.cell(ctx, tenant)
	if err != nil {
		return false, err
	}
	c.touch()
	return c.ensure(), nil
}

// WaitReady starts tenant's cell if needed and waits until it is ready.
func (m *Manager) WaitReady(ctx context.Context, tenant string) error {
	c, err := m.cell(ctx, tenant)
	if err != nil {
		return err
	}
	c.touch()
	c.ensure()
	return c.waitReady(ctx)
}

// Dial connects to tenant's gateway (through the cell's init relay).
func (m *Manager) Dial(ctx context.Context, tenant string) (net.Conn, error) {
	c, err := m.cell(ctx, tenant)
	if err != nil {
		return nil, err
	}
	c.touch()
	var d net.Dialer
	return d.DialContext(ctx, "unix", c.layout.GatewaySocket())
}

// Enter records that user has a request (or WebSocket) in flight to
// tenant's cell until leave is called. A tool call whose hook names no
// user is attributed to the user in flight when there is exactly one.
func (m *Manager) Enter(tenant, user string) (leave func()) {
	m.mu.Lock()
	if m.active[tenant] == nil {
		m.active[tenant] = map[string]int{}
	}
	m.active[tenant][user]++
	m.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.active[tenant][user]--; m.active[tenant][user] <= 0 {
				delete(m.active[tenant], user)
			}
		})
	}
}

// inFlight returns the users with requests in flight to tenant's cell.
func (m *Manager) inFlight(tenant string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	users := make([]string, 0, len(m.active[tenant]))
	for u := range m.active[tenant] {
		users = append(users, u)
	}
	sort.Strings(users)
	return users
}

// Touch records use of tenant's cell (keeps it from idling out).
func (m *Manager) Touch(tenant string) {
	m.mu.Lock()
	c := m.cells[tenant]
	m.mu.Unlock()
	if c != nil {
		c.touch()
	}
}

// Start starts tenant's cell (no-op when running).
func (m *Manager) Start(ctx context.Context, tenant string) error {
	return m.WaitReady(ctx, tenant)
}

// Stop stops tenant's cell and waits for it.
func (m *Manager) Stop(ctx context.Context, tenant string) error {
	c, err := m.cell(ctx, tenant)
	if err != nil {
		return err
	}
	return c.stop(ctx, "request")
}

// Restart stops tenant's cell and starts it again.
func (m *Manager) Restart(ctx context.Context, tenant string) error {
	if err := m.Stop(ctx, tenant); err != nil {
		return err
	}
	return m.WaitReady(ctx, tenant)
}

// Status describes one cell.
type Status struct {
	Tenant    string    `json:"tenant"`
	State     string    `json:"state"`
	Since     time.Time `json:"since"`
	LastUsed  time.Time `json:"last_used,omitzero"`
	Restarts  int       `json:"restarts"`
	LastError string    `json:"last_error,omitempty"`
	UID       int       `json:"uid"`
	Socket    string    `json:"socket"`
}

// List returns the status of every cell this manager knows, by tenant.
func (m *Manager) List() []Status {
	m.mu.Lock()
	cs := make([]*Cell, 0, len(m.cells))
	for _, c := range m.cells {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	out := make([]Status, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
	return out
}

// Logs returns the last n lines of tenant's gateway output.
func (m *Manager) Logs(ctx context.Context, tenant string, n int) (string, error) {
	c, err := m.cell(ctx, tenant)
	if err != nil {
		return "", err
	}
	return c.logs(n), nil
}

// Run does the housekeeping until ctx ends — idle stops, config rewrites
// when a tenant's users change — then stops every cell.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return m.shutdown()
		case <-t.C:
			for _, c := range m.running() {
				if used, ready := c.idleSince(); m.o.IdleTimeout > 0 && ready && time.Since(used) > m.o.IdleTimeout && len(m.inFlight(c.tenant)) == 0 {
					go c.stop(context.WithoutCancel(ctx), "idle")
					continue
				}
				if err := c.writeConfig(ctx); err != nil {
					m.log.Warn("cell: updating openclaw.json", "tenant", c.tenant, "err", err)
				}
			}
		}
	}
}

func (m *Manager) running() []*Cell {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Cell
	for _, c := range m.cells {
		if c.isRunning() {
			out = append(out, c)
		}
	}
	return out
}

// shutdown stops every cell, in parallel, and waits for them.
func (m *Manager) shutdown() error {
	m.mu.Lock()
	m.closed = true
	cs := make([]*Cell, 0, len(m.cells))
	for _, c := range m.cells {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), sandbox.StopGrace+10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(cs))
	for i, c := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.stop(ctx, "shutdown") }()
	}
	wg.Wait()
	m.wg.Wait()
	return errors.Join(errs...)
}

func (m *Manager) record(tenant string, ev events.Event) {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.Actor == "" {
		ev.Actor = "cell:" + tenant
	}
	m.o.Record(tenant, ev)
}
