package alert

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/config"
)

func TestFromConfig(t *testing.T) {
	secrets := map[string][]byte{"alerts/hmac": []byte("hmac-key-0123456789"), "alerts/smtp": []byte("pw")}
	var asked []string
	secret := func(_ context.Context, name string) ([]byte, error) {
		asked = append(asked, name)
		v, ok := secrets[name]
		if !ok {
			return nil, errors.New("secret not found")
		}
		return v, nil
	}
	var stderr bytes.Buffer
	cfg := config.Alerts{Sinks: []config.AlertSink{
		{Type: "webhook", URL: "https://siem.example.com/hook", Secret: "alerts/hmac", MinSeverity: "high"},
		{Name: "chat", Type: "slack", URL: "https://hooks.slack.com/services/T/B/X", Rules: []string{"cmd.*"}},
		{Type: "smtp", Address: "smtp.example.com:587", From: "clawhold@example.com", To: []string{"sec@example.com"}, Username: "alerts", Secret: "alerts/smtp"},
		{Type: "syslog", Address: "udp://127.0.0.1:514"},
		{Type: "stderr", MinSeverity: "info"},
	}}
	routes, err := FromConfig(cfg, secret, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range routes {
		names = append(names, r.Sink.Name())
	}
	if strings.Join(names, ",") != "webhook,chat,smtp,syslog,stderr" {
		t.Fatalf("names %v", names)
	}
	if routes[0].MinSeverity != High || routes[1].MinSeverity != Medium || routes[4].MinSeverity != Info || routes[1].Rules[0] != "cmd.*" {
		t.Fatalf("routes %+v", routes)
	}
	if w := routes[0].Sink.(*Webhook); string(w.key) != "hmac-key-0123456789" {
		t.Fatal("webhook key not from the secret")
	}
	if s := routes[2].Sink.(*SMTP); string(s.cfg.Password) != "pw" || s.cfg.StartTLS != "required" {
		t.Fatalf("smtp %+v", s.cfg)
	}
	if s := routes[3].Sink.(*Syslog); s.facility != 4 {
		t.Fatalf("facility %d", s.facility)
	}
	if strings.Join(asked, ",") != "alerts/hmac,alerts/smtp" {
		t.Fatalf("asked for %v", asked)
	}
	routes[4].Sink.Send(t.Context(), Alert{Rule: "r", Title: "hello"})
	if !strings.Contains(stderr.String(), `"hello"`) {
		t.Fatalf("stderr sink wrote %q", stderr.String())
	}
}

func TestFromConfigErrorsNameTheKey(t *testing.T) {
	secret := func(_ context.Context, name string) ([]byte, error) {
		if name == "present" {
			return []byte("k"), nil
		}
		return nil, errors.New("secret not found")
	}
	caBad := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caBad, []byte("not pem"), 0o600)
	ok := config.AlertSink{Type: "stderr"}
	for _, tt := range []struct {
		sink config.AlertSink
		want string
	}{
		{config.AlertSink{Type: "webhook", URL: "https://x.example/h"}, "alerts.sinks[1].secret"},
		{config.AlertSink{Type: "webhook", URL: "http://x.example/h", Secret: "present"}, "alerts.sinks[1].url"},
		{config.AlertSink{Type: "slack", URL: ""}, "alerts.sinks[1].url"},
		{config.AlertSink{Type: "slack", URL: "https://x.example/h", CAFile: caBad}, "alerts.sinks[1].ca_file"},
		{config.AlertSink{Type: "smtp", Address: "smtp.example.com:587", From: "a@example.com", To: []string{"b@example.com"}, StartTLS: "none"}, "alerts.sinks[1] (smtp smtp)"},
		{config.AlertSink{Type: "syslog", Address: "udp://h"}, "alerts.sinks[1].address"},
		{config.AlertSink{Type: "syslog", Address: "udp://h:514", Facility: "local9"}, "alerts.sinks[1].facility"},
		{config.AlertSink{Name: "e2", Type: "stderr", MinSeverity: "urgent"}, "alerts.sinks[1].min_severity"},
		{config.AlertSink{Type: "pager"}, "alerts.sinks[1].type"},
		{config.AlertSink{Type: "stderr"}, `alerts.sinks[1].name: a second sink named "stderr"`},
	} {
		_, err := FromConfig(config.Alerts{Sinks: []config.AlertSink{ok, tt.sink}}, secret, os.Stderr)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want %q", tt.sink, err, tt.want)
		}
	}
}

// A sink whose secret is not stored yet is built at its first send: up
// starts (and warns) before an operator can store it, and the send fails
// naming the key until then.
func TestFromConfigMissingSecretDeferred(t *testing.T) {
	stored := map[string][]byte{}
	secret := func(_ context.Context, name string) ([]byte, error) {
		if v, ok := stored[name]; ok {
			return v, nil
		}
		return nil, errors.New("secret not found")
	}
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := VerifyWebhook([]byte("late-key"), r.Header.Get(TimestampHeader), r.Header.Get(SignatureHeader), body, time.Now(), 0); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		got = append(got, string(body))
	}))
	defer srv.Close()
	routes, err := FromConfig(config.Alerts{Sinks: []config.AlertSink{
		{Type: "webhook", URL: srv.URL, Secret: "hook"},
		{Type: "smtp", Address: "127.0.0.1:1", From: "a@example.com", To: []string{"b@example.com"}, Username: "u", Secret: "missing"},
	}}, secret, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if errs := Unresolved(routes); len(errs) != 2 || !strings.Contains(errs[0].Error(), `alerts.sinks[0].secret: reading system secret "hook"`) ||
		!strings.Contains(errs[1].Error(), "alerts.sinks[1].secret") {
		t.Fatalf("Unresolved = %v", errs)
	}
	a := Alert{Rule: "r", Title: "t", Severity: High}
	if err := routes[0].Sink.Send(t.Context(), a); err == nil || !strings.Contains(err.Error(), "alerts.sinks[0].secret") {
		t.Fatalf("send before the secret exists: %v", err)
	}
	stored["hook"] = []byte("late-key")
	if err := routes[0].Sink.Send(t.Context(), a); err != nil || len(got) != 1 {
		t.Fatalf("send after the secret was stored: %v (%d delivered)", err, len(got))
	}
	if errs := Unresolved(routes); len(errs) != 1 {
		t.Fatalf("Unresolved after the webhook resolved = %v", errs)
	}
}
