package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/monitor/alert"
)

// hookReceiver verifies each request's HMAC with alert.VerifyWebhook, as
// an operator's receiver would.
type hookReceiver struct {
	key  []byte
	mu   sync.Mutex
	got  []alert.Alert
	errs []error
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := alert.VerifyWebhook(h.key, r.Header.Get(alert.TimestampHeader), r.Header.Get(alert.SignatureHeader), body, time.Now(), time.Minute); err != nil {
		h.errs = append(h.errs, err)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var a alert.Alert
	if err := json.Unmarshal(body, &a); err != nil {
		h.errs = append(h.errs, err)
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	h.got = append(h.got, a)
}

func (h *hookReceiver) received() ([]alert.Alert, []error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]alert.Alert(nil), h.got...), append([]error(nil), h.errs...)
}

func writeConfig(t *testing.T, yaml string) string { return writeTestFile(t, "clawhold.yaml", yaml) }

// writeTestFile writes body to name in a new temporary directory.
func writeTestFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func exitCode(err error) int {
	var c exitCodeError
	if errors.As(err, &c) {
		return int(c)
	}
	if err != nil {
		return -1
	}
	return 0
}

func TestAlertsTestNoSinks(t *testing.T) {
	cfg := writeConfig(t, "alerts:\n  rate_limit: 10\n")
	_, errOut, err := run(t, "", "--config", cfg, "--data-dir", filepath.Join(t.TempDir(), "d"), "alerts", "test")
	if exitCode(err) != 2 {
		t.Fatalf("exit %d (%v), want 2", exitCode(err), err)
	}
	for _, want := range []string{"no alert sink is configured", cfg, "alerts:\n  sinks:", "type: webhook", "clawhold secrets set --tenant system"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestAlertsTestWebhookVerified(t *testing.T) {
	d := newDataDir(t)
	const key = "whsec-0123456789abcdef-SECRETKEY"
	mustRun(t, key+"\n", "--data-dir", d, "secrets", "set", "--tenant", "system", "alerts/hook-key")
	good := &hookReceiver{key: []byte(key)}
	srv := httptest.NewServer(good)
	defer srv.Close()
	wrong := &hookReceiver{key: []byte("a key the sender does not have")}
	srvWrong := httptest.NewServer(wrong)
	defer srvWrong.Close()

	cfg := writeConfig(t, `alerts:
  sinks:
    - name: siem
      type: webhook
      url: `+srv.URL+`/alerts
      secret: alerts/hook-key
      min_severity: critical
    - type: stderr
`)
	out, errOut, err := run(t, "", "--config", cfg, "--data-dir", d, "alerts", "test")
	if err != nil {
		t.Fatalf("alerts test: %v\n%s%s", err, out, errOut)
	}
	got, errs := good.received()
	if len(errs) != 0 || len(got) != 1 || got[0].Rule != "alert.test" || got[0].Severity != alert.High || got[0].Tenant != "system" {
		t.Fatalf("receiver got %+v, errors %v", got, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "siem ") || !strings.Contains(lines[1], "ok (note: min_severity critical: routing would not") ||
		!strings.HasPrefix(lines[2], "stderr ") || !strings.HasSuffix(lines[2], " ok") {
		t.Fatalf("output:\n%s", out)
	}
	if !strings.Contains(errOut, "HIGH alert.test tenant=system") {
		t.Fatalf("stderr sink wrote %q", errOut)
	}
	if strings.Contains(out+errOut, key) {
		t.Fatal("the HMAC key was printed")
	}

	// --sink picks one; --severity and --json.
	out = mustRun(t, "", "--config", cfg, "--data-dir", d, "alerts", "test", "--sink", "siem", "--severity", "critical", "--json")
	var res struct {
		Alert alert.Alert
		Sinks []struct {
			Sink, Type, Error string
			OK, Routed        bool
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Sinks) != 1 || res.Sinks[0].Sink != "siem" || res.Sinks[0].Type != "webhook" || !res.Sinks[0].OK || !res.Sinks[0].Routed || res.Alert.Severity != alert.Critical {
		t.Fatalf("json: %s", out)
	}
	if got, _ := good.received(); len(got) != 2 || got[1].ID != res.Alert.ID {
		t.Fatalf("receiver got %+v", got)
	}
	_, _, err = run(t, "", "--config", cfg, "--data-dir", d, "alerts", "test", "--sink", "pager")
	if err == nil || !strings.Contains(err.Error(), "configured: siem, stderr") {
		t.Fatalf("unknown sink: %v", err)
	}
	_, _, err = run(t, "", "--config", cfg, "--data-dir", d, "alerts", "test", "--severity", "urgent")
	if err == nil || !strings.Contains(err.Error(), "--severity") {
		t.Fatalf("bad severity: %v", err)
	}

	// A receiver that refuses the signature fails the run with status 1;
	// the working sink is still reported.
	cfg = writeConfig(t, `alerts:
  sinks:
    - name: siem
      type: webhook
      url: `+srv.URL+`
      secret: alerts/hook-key
    - name: other
      type: webhook
      url: `+srvWrong.URL+`
      secret: alerts/hook-key
`)
	out, _, err = run(t, "", "--config", cfg, "--data-dir", d, "alerts", "test")
	if exitCode(err) != 1 || !strings.Contains(out, "siem") || !strings.Contains(out, "FAILED: POST "+srvWrong.URL+": 401") {
		t.Fatalf("exit %d (%v):\n%s", exitCode(err), err, out)
	}
	if _, errs := wrong.received(); len(errs) != 1 {
		t.Fatalf("wrong-key receiver: %v", errs)
	}

	// A secret that is not in the store is named by its config key.
	cfg = writeConfig(t, `alerts:
  sinks:
    - type: webhook
      url: `+srv.URL+`
      secret: alerts/missing
`)
	out, _, err = run(t, "", "--config", cfg, "--data-dir", d, "alerts", "test")
	if exitCode(err) != 1 || !strings.Contains(out, `alerts.sinks[0].secret: reading system secret "alerts/missing"`) {
		t.Fatalf("missing secret: exit %d (%v):\n%s", exitCode(err), err, out)
	}
}
