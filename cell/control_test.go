package cell

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/clawhold/clawhold/egress"
	"github.com/clawhold/clawhold/openclaw"
)

// testManager returns a Manager whose tenants are all names but "nosuch"
// (and "broken", whose lookup fails otherwise). No cell is ever started.
func testManager(t *testing.T) *Manager {
	t.Helper()
	proxy, err := egress.New(egress.Config{Policies: map[string]egress.Policy{"default": {}}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(Options{
		DataDir:  t.TempDir(),
		OpenClaw: &openclaw.Install{Dir: "/nonexistent", Node: "/bin/false", CLI: "/x"},
		Exe:      "/bin/true",
		Egress:   proxy,
		Members: func(_ context.Context, tenant string) ([]Member, error) {
			switch tenant {
			case "nosuch":
				return nil, fmt.Errorf("looking up %s: %w", tenant, ErrUnknownTenant)
			case "broken":
				return nil, errors.New("database is locked")
			}
			return nil, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNewManagerRequires(t *testing.T) {
	proxy, err := egress.New(egress.Config{})
	if err != nil {
		t.Fatal(err)
	}
	full := func() Options {
		return Options{
			DataDir: t.TempDir(), OpenClaw: &openclaw.Install{}, Exe: "/bin/true", Egress: proxy,
			Members: func(context.Context, string) ([]Member, error) { return nil, nil },
		}
	}
	for _, tt := range []struct {
		name  string
		unset func(*Options)
	}{
		{"DataDir", func(o *Options) { o.DataDir = "" }},
		{"OpenClaw", func(o *Options) { o.OpenClaw = nil }},
		{"Exe", func(o *Options) { o.Exe = "" }},
		{"Egress", func(o *Options) { o.Egress = nil }},
		{"Members", func(o *Options) { o.Members = nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := full()
			tt.unset(&o)
			if _, err := NewManager(o); err == nil {
				t.Errorf("NewManager without %s succeeded", tt.name)
			}
		})
	}
	if _, err := NewManager(full()); err != nil {
		t.Errorf("NewManager with everything: %v", err)
	}
}

func TestControlHandler(t *testing.T) {
	m := testManager(t)
	h := ControlHandler(m)
	do := func(method, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), method, path, nil))
		return w
	}

	// Before any request names a tenant, the manager knows no cell.
	w := do(http.MethodGet, "/cells")
	if w.Code != http.StatusOK || strings.TrimSpace(w.Body.String()) != "[]" {
		t.Fatalf("GET /cells = %d %q, want 200 []", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /cells Content-Type %q", ct)
	}

	tests := []struct {
		method, path string
		code         int
		body         string // substring of the response body
	}{
		{http.MethodPost, "/cells/nosuch/stop", http.StatusNotFound, "no such tenant"},
		{http.MethodPost, "/cells/nosuch/start", http.StatusNotFound, "no such tenant"},
		{http.MethodPost, "/cells/nosuch/restart", http.StatusNotFound, "no such tenant"},
		{http.MethodGet, "/cells/nosuch/logs", http.StatusNotFound, "no such tenant"},
		{http.MethodPost, "/cells/BAD!/stop", http.StatusBadRequest, "invalid tenant name"},
		{http.MethodPost, "/cells/Acme/start", http.StatusBadRequest, "invalid tenant name"},
		{http.MethodPost, "/cells/1acme/restart", http.StatusBadRequest, "invalid tenant name"},
		{http.MethodGet, "/cells/a_b/logs", http.StatusBadRequest, "invalid tenant name"},
		{http.MethodGet, "/cells/" + strings.Repeat("a", 64) + "/logs", http.StatusBadRequest, "invalid tenant name"},
		{http.MethodPost, "/cells/broken/stop", http.StatusInternalServerError, "database is locked"},
		// A known tenant whose cell never started: stopping it is a no-op
		// and its log is empty.
		{http.MethodPost, "/cells/idle/stop", http.StatusNoContent, ""},
		{http.MethodGet, "/cells/idle/logs", http.StatusOK, ""},
		{http.MethodGet, "/cells/idle/logs?n=5", http.StatusOK, ""},
		{http.MethodGet, "/cells/quiet/logs?n=bogus", http.StatusOK, ""},
		// Wrong methods and unknown actions.
		{http.MethodGet, "/cells/idle/stop", http.StatusMethodNotAllowed, ""},
		{http.MethodPost, "/cells", http.StatusMethodNotAllowed, ""},
		{http.MethodPost, "/cells/idle/logs", http.StatusMethodNotAllowed, ""},
		{http.MethodPost, "/cells/idle/explode", http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			w := do(tt.method, tt.path)
			if w.Code != tt.code {
				t.Errorf("status %d, want %d (body %q)", w.Code, tt.code, w.Body)
			}
			if !strings.Contains(w.Body.String(), tt.body) {
				t.Errorf("body %q does not contain %q", w.Body, tt.body)
			}
			if tt.code == http.StatusOK && strings.TrimSpace(w.Body.String()) != "" {
				t.Errorf("log of a never-started cell = %q, want empty", w.Body)
			}
		})
	}

	// Naming a known tenant created its (stopped) record; unknown and
	// invalid tenants left none.
	w = do(http.MethodGet, "/cells")
	var list []Status
	if err := json.Unmarshal(w.Body.Bytes(), &list); err != nil {
		t.Fatalf("GET /cells: %v: %q", err, w.Body)
	}
	var tenants []string
	for _, s := range list {
		tenants = append(tenants, s.Tenant)
		if s.State != StateStopped {
			t.Errorf("%s: state %s, want %s", s.Tenant, s.State, StateStopped)
		}
		if want := NewLayout(m.o.DataDir, s.Tenant).GatewaySocket(); s.Socket != want {
			t.Errorf("%s: socket %s, want %s", s.Tenant, s.Socket, want)
		}
		if s.UID != IDsFor(s.Tenant).UID {
			t.Errorf("%s: uid %d, want %d", s.Tenant, s.UID, IDsFor(s.Tenant).UID)
		}
	}
	if want := []string{"idle", "quiet"}; !slices.Equal(tenants, want) {
		t.Errorf("GET /cells lists %q, want %q", tenants, want)
	}
}

// Control, the client, against ControlHandler on a unix socket.
func TestControlClient(t *testing.T) {
	m := testManager(t)
	sock := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(ControlHandler(m))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)

	c := NewControl(sock)
	ctx := t.Context()
	list, err := c.List(ctx)
	if err != nil || len(list) != 0 {
		t.Fatalf("List = %v, %v; want none", list, err)
	}
	for _, tt := range []struct {
		tenant, action string
		err            string
	}{
		{"idle", "stop", ""},
		{"nosuch", "stop", "no such tenant"},
		{"BAD!", "stop", "invalid tenant name"},
		{"idle", "explode", "404 page not found"},
	} {
		err := c.Act(ctx, tt.tenant, tt.action)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Act(%s, %s) = %v, want %q", tt.tenant, tt.action, err, tt.err)
		}
	}
	if s, err := c.Logs(ctx, "idle", 10); err != nil || strings.TrimSpace(s) != "" {
		t.Errorf("Logs(idle) = %q, %v; want empty", s, err)
	}
	if _, err := c.Logs(ctx, "nosuch", 10); err == nil || !strings.Contains(err.Error(), "no such tenant") {
		t.Errorf("Logs(nosuch) error %v", err)
	}
	list, err = c.List(ctx)
	if err != nil || len(list) != 1 || list[0].Tenant != "idle" || list[0].State != StateStopped {
		t.Errorf("List = %+v, %v; want idle, stopped", list, err)
	}

	// No server: the error says so.
	if _, err := NewControl(filepath.Join(t.TempDir(), "none.sock")).List(ctx); err == nil || !strings.Contains(err.Error(), "is clawhold up running?") {
		t.Errorf("List without a server: %v", err)
	}
}

func TestManagerEnterInFlight(t *testing.T) {
	m := testManager(t)
	type step struct {
		do   string // "enter <tenant> <user>" or "leave <n>" (n-th enter, from 0)
		want map[string][]string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"attribution", []step{
			{"enter acme alice", map[string][]string{"acme": {"alice"}, "other": {}}},
			{"enter acme alice", map[string][]string{"acme": {"alice"}}},
			{"enter acme bob", map[string][]string{"acme": {"alice", "bob"}}},
			{"enter other carol", map[string][]string{"acme": {"alice", "bob"}, "other": {"carol"}}},
			{"leave 0", map[string][]string{"acme": {"alice", "bob"}}}, // alice has one more
			{"leave 0", map[string][]string{"acme": {"alice", "bob"}}}, // idempotent
			{"leave 0", map[string][]string{"acme": {"alice", "bob"}}},
			{"leave 2", map[string][]string{"acme": {"alice"}, "other": {"carol"}}},
			{"leave 2", map[string][]string{"acme": {"alice"}}},
			{"leave 1", map[string][]string{"acme": {}, "other": {"carol"}}},
			{"leave 1", map[string][]string{"acme": {}}},
			{"leave 3", map[string][]string{"acme": {}, "other": {}}},
			{"enter acme alice", map[string][]string{"acme": {"alice"}}}, // counts restart from zero
		}},
		{"sorted", []step{
			{"enter t zoe", map[string][]string{"t": {"zoe"}}},
			{"enter t mallory", map[string][]string{"t": {"mallory", "zoe"}}},
			{"enter t alice", map[string][]string{"t": {"alice", "mallory", "zoe"}}},
			{"enter t bob", map[string][]string{"t": {"alice", "bob", "mallory", "zoe"}}},
			{"leave 1", map[string][]string{"t": {"alice", "bob", "zoe"}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var leaves []func()
			for i, s := range tt.steps {
				f := strings.Fields(s.do)
				switch f[0] {
				case "enter":
					leaves = append(leaves, m.Enter(f[1], f[2]))
				case "leave":
					var n int
					fmt.Sscan(f[1], &n)
					leaves[n]()
				}
				for tenant, want := range s.want {
					if got := m.inFlight(tenant); !slices.Equal(got, want) {
						t.Errorf("step %d (%s): inFlight(%s) = %q, want %q", i, s.do, tenant, got, want)
					}
				}
			}
			for _, l := range leaves {
				l()
			}
		})
	}
	if got := m.inFlight("never"); len(got) != 0 {
		t.Errorf("inFlight(never) = %q", got)
	}
}

// Concurrent enters and leaves (run with -race) balance out.
func TestManagerEnterConcurrent(t *testing.T) {
	m := testManager(t)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leave := m.Enter("acme", fmt.Sprintf("u%d", i%5))
			_ = m.inFlight("acme")
			leave()
			leave()
		}()
	}
	wg.Wait()
	if got := m.inFlight("acme"); len(got) != 0 {
		t.Errorf("after all left: inFlight = %q", got)
	}
}
