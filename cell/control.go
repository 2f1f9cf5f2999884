package cell

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"github.com/clawhold/clawhold/store"
)

// ControlHandler serves `clawhold cells` on the control socket of a
// running `clawhold up` (root-only, 0600 in the data dir):
//
//	GET  /cells                   → []Status
//	POST /cells/{tenant}/start    (waits until ready)
//	POST /cells/{tenant}/stop
//	POST /cells/{tenant}/restart
//	GET  /cells/{tenant}/logs?n=  → text
func ControlHandler(m *Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cells", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m.List())
	})
	action := func(f func(context.Context, string) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			t := r.PathValue("tenant")
			if err := store.ValidTenantName(t); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err := f(r.Context(), t); err != nil {
				status := http.StatusInternalServerError
				if errors.Is(err, ErrUnknownTenant) {
					status = http.StatusNotFound
				}
				http.Error(w, err.Error(), status)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("POST /cells/{tenant}/start", action(m.Start))
	mux.HandleFunc("POST /cells/{tenant}/stop", action(m.Stop))
	mux.HandleFunc("POST /cells/{tenant}/restart", action(m.Restart))
	mux.HandleFunc("GET /cells/{tenant}/logs", func(w http.ResponseWriter, r *http.Request) {
		t := r.PathValue("tenant")
		if err := store.ValidTenantName(t); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		s, err := m.Logs(r.Context(), t, n)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, ErrUnknownTenant) {
				status = http.StatusNotFound
			}
			http.Error(w, err.Error(), status)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, s+"\n")
	})
	return mux
}

// Control is the client of ControlHandler.
type Control struct {
	c *http.Client
}

// NewControl returns a client for the control socket at path.
func NewControl(path string) *Control {
	return &Control{c: &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, fmt.Errorf("is clawhold up running? %w", err)
			}
			return c, nil
		},
	}}}
}

func (c *Control) do(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://clawhold"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s", string(trimSpace(b)))
	}
	return b, nil
}

// List returns the cells' status.
func (c *Control) List(ctx context.Context) ([]Status, error) {
	b, err := c.do(ctx, http.MethodGet, "/cells")
	if err != nil {
		return nil, err
	}
	var out []Status
	return out, json.Unmarshal(b, &out)
}

// Act starts, stops or restarts tenant's cell.
func (c *Control) Act(ctx context.Context, tenant, action string) error {
	_, err := c.do(ctx, http.MethodPost, "/cells/"+tenant+"/"+action)
	return err
}

// Logs returns the last n lines of tenant's gateway output.
func (c *Control) Logs(ctx context.Context, tenant string, n int) (string, error) {
	b, err := c.do(ctx, http.MethodGet, "/cells/"+tenant+"/logs?n="+strconv.Itoa(n))
	return string(b), err
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
