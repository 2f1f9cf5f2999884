package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/instance"
)

func needSandboxRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("sandbox tests need root and CI=true forbids skipping")
		}
		t.Skip("needs root: cgroups and a user namespace mapped to uid 65534")
	}
}

// TestSandboxRunCLI runs the built binary: exit statuses propagate, the
// default profile's proxy is started by clawhold, exec events reach
// --events, and a bad profile is refused with its file and line.
func TestSandboxRunCLI(t *testing.T) {
	needSandboxRoot(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	evPath := filepath.Join(dir, "events.jsonl")
	env := []string{"PATH=/usr/bin:/bin", "CLAWHOLD_DATA_DIR=" + filepath.Join(dir, "data")}

	cmd := exec.Command(bin, "sandbox", "run", "--events", evPath, "--", "/bin/sh", "-c", `echo "$HTTP_PROXY"; /bin/true marker-arg; exit 3`)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("sandbox run: %v, want exit status 3\n%s", err, out)
	}
	if !strings.Contains(string(out), "http://127.0.0.1:3128") {
		t.Errorf("HTTP_PROXY inside is not the forwarder: %s", out)
	}
	evs := readJSONLines(t, evPath)
	var sawExec, sawExit bool
	for _, ev := range evs {
		if ev["type"] == "process.exec" && strings.Contains(mustJSON(ev["process"]), "marker-arg") {
			sawExec = true
		}
		if ev["type"] == "sandbox.exit" && ev["exit_code"] == float64(3) {
			sawExit = true
		}
	}
	if !sawExec || !sawExit {
		t.Errorf("events: exec of marker-arg %v, sandbox.exit 3 %v; got %d events", sawExec, sawExit, len(evs))
	}

	for _, c := range []struct{ yaml, want string }{
		{"filesystem:\n  etc: [shadow]\n", ":2: filesystem.etc[0] is \"shadow\": /etc/shadow holds host secrets"},
		{"limits:\n  cpus: 2\n", `:2: unknown key "limits.cpus" (did you mean "limits.cpu"?)`},
		{"filesystem:\n  read_write: [/usr/lib]\n", ":2: filesystem.read_write[0] is \"/usr/lib\": a system directory cannot be writable"},
	} {
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte(c.yaml), 0o600)
		cmd = exec.Command(bin, "sandbox", "run", "--profile", bad, "--", "/bin/true")
		cmd.Env = env
		out, err = cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), bad+c.want) {
			t.Errorf("bad profile %q: %v\n%s\nwant %s", c.yaml, err, out, bad+c.want)
		}
	}
}

// TestSandboxDiesWithParent: SIGKILL of clawhold takes the whole sandbox
// with it.
func TestSandboxDiesWithParent(t *testing.T) {
	needSandboxRoot(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	evPath := filepath.Join(dir, "events.jsonl")
	cmd := exec.Command(bin, "sandbox", "run", "--events", evPath, "--", "/bin/sleep", "300")
	cmd.Env = []string{"PATH=/usr/bin:/bin", "CLAWHOLD_DATA_DIR=" + filepath.Join(dir, "data")}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		for _, ev := range readJSONLinesMaybe(evPath) {
			if ev["type"] == "process.exec" && strings.Contains(mustJSON(ev["process"]), "/bin/sleep") {
				var p struct {
					PID int `json:"pid"`
				}
				json.Unmarshal([]byte(mustJSON(ev["process"])), &p)
				pid = p.PID
			}
		}
	}
	if pid == 0 {
		t.Fatal("no exec event for /bin/sleep")
	}
	if err := unix.Kill(pid, 0); err != nil {
		t.Fatalf("sleep (host pid %d) is not running: %v", pid, err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if unix.Kill(pid, 0) != nil {
			return
		}
	}
	t.Fatalf("sandboxed sleep (host pid %d) survived its clawhold", pid)
}

func TestSandboxCheckCLI(t *testing.T) {
	needSandboxRoot(t)
	out, errOut, err := run(t, "", "sandbox", "check", "--json")
	if err != nil {
		t.Fatalf("sandbox check: %v\n%s%s", err, out, errOut)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("check --json: %v\n%s", err, out)
	}
	if _, ok := rep["required"]; !ok {
		t.Errorf("no required layers in %s", out)
	}
}

func readJSONLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	evs := readJSONLinesMaybe(path)
	if len(evs) == 0 {
		t.Fatalf("no events in %s", path)
	}
	return evs
}

func readJSONLinesMaybe(path string) []map[string]any {
	b, _ := os.ReadFile(path)
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSandboxRecordsEvents: with an initialized data directory, sandbox
// events are also records in its system database.
func TestSandboxRecordsEvents(t *testing.T) {
	needSandboxRoot(t)
	bin := buildBinary(t)
	data := filepath.Join(t.TempDir(), "data")
	env := []string{"PATH=/usr/bin:/bin", "CLAWHOLD_DATA_DIR=" + data}
	for _, args := range [][]string{{"init"}, {"sandbox", "run", "--", "/bin/true", "recorded-arg"}} {
		cmd := exec.Command(bin, args...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("clawhold %v: %v\n%s", args, err, out)
		}
	}
	inst, err := instance.Open(context.Background(), instance.Options{DataDir: data, ConfigPath: ""})
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	db, err := inst.DB(context.Background(), instance.SystemTenant)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := events.List(context.Background(), db, events.Filter{Type: "process.exec"})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, ev := range evs {
		if strings.Contains(mustJSON(ev.Detail), "recorded-arg") && strings.HasPrefix(ev.Actor, "sandbox:") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no process.exec record with recorded-arg among %d: %+v", len(evs), evs)
	}
}
