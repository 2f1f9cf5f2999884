package openclaw_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

func TestGatewayTokenAuth(t *testing.T) {
	inst := openclawtest.Install(t)
	token := "tok-" + openclawtest.RandomHex(t, 24)
	g := openclawtest.Start(t, inst, map[string]any{
		"gateway": map[string]any{
			"bind": "loopback",
			"auth": map[string]any{"mode": "token", "token": token},
		},
	})

	// Files: private home, private config with our defaults.
	for path, want := range map[string]fs.FileMode{g.Home(): 0o700, filepath.Dir(g.ConfigPath()): 0o700, g.ConfigPath(): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}
	if !strings.HasPrefix(g.LogPath(), g.Home()+string(filepath.Separator)) {
		t.Errorf("log path %s is not inside home %s", g.LogPath(), g.Home())
	}
	if fi, err := os.Stat(g.LogPath()); err != nil || fi.Size() == 0 {
		t.Errorf("gateway log %s missing or empty (err %v)", g.LogPath(), err)
	}

	code, body := openclawtest.Do(t, http.MethodGet, g.URL()+"/healthz", "", nil)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"ok":true`)) {
		t.Errorf("GET /healthz = %d %s, want 200 ok:true", code, body)
	}

	invoke := map[string]any{"tool": "sessions_list"}
	code, body = openclawtest.Do(t, http.MethodPost, g.URL()+"/tools/invoke", token, invoke)
	var res struct {
		OK bool `json:"ok"`
	}
	if code != http.StatusOK || json.Unmarshal(body, &res) != nil || !res.OK {
		t.Errorf("POST /tools/invoke with the gateway token = %d %.300s, want 200 ok:true\n%s", code, body, g.LogTail(20))
	}
	for name, bearer := range map[string]string{"wrong token": "tok-" + openclawtest.RandomHex(t, 24), "no token": ""} {
		if code, body := openclawtest.Do(t, http.MethodPost, g.URL()+"/tools/invoke", bearer, invoke); code != http.StatusUnauthorized {
			t.Errorf("POST /tools/invoke with %s = %d %.300s, want 401", name, code, body)
		}
	}

	// Stop leaves nothing behind: no process in the group, port closed.
	pgid := g.PID()
	if err := syscall.Kill(-pgid, 0); err != nil {
		t.Fatalf("process group %d not alive before Stop: %v", pgid, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := g.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v\n%s", err, g.LogTail(30))
	}
	t.Logf("Stop took %v", time.Since(start).Round(10*time.Millisecond))
	if err := syscall.Kill(-pgid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(-%d, 0) after Stop = %v, want ESRCH (process group gone)", pgid, err)
	}
	select {
	case <-g.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(g.Port())), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still accepts connections after Stop", g.Port())
	}
	if err := g.Stop(ctx); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
