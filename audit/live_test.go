package audit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// The live cases start real listeners: a child process of the test binary
// that names itself like OpenClaw's running gateway ("openclaw-gateway",
// the process title OpenClaw 2026.9.6 sets) and serves HTTP, so the rules
// see what they would see on a host. TestLiveRealGateway runs the real
// gateway bound to lan.

// liveHelperEnv tells the test binary to act as a listener (see
// TestLiveHelperProcess); its value lists what to open, comma-separated:
// "any" (HTTP on 0.0.0.0), "lo" (HTTP on 127.0.0.1), "child" (a child
// process, named "chromium", listening on 0.0.0.0), "mdns" (UDP 0.0.0.0:5353).
const liveHelperEnv = "CLAWHOLD_AUDIT_LIVE_HELPER"

// liveHelper is a started helper process.
type liveHelper struct {
	pid   int
	ports map[string]int // "any", "lo", "child" → port
}

// startLiveHelper starts the test binary as a listener process whose
// argv[0] is name, and waits until it listens.
func startLiveHelper(t *testing.T, name, what string) *liveHelper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestLiveHelperProcess$")
	cmd.Args[0] = name
	cmd.Env = append(os.Environ(), liveHelperEnv+"="+what)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // closing it ends the helper
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	h := &liveHelper{pid: cmd.Process.Pid, ports: map[string]int{}}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 1 && f[0] == "ready" {
			go io.Copy(io.Discard, out)
			return h
		}
		if len(f) == 3 && f[0] == "port" {
			h.ports[f[1]], _ = strconv.Atoi(f[2])
		}
	}
	t.Fatalf("live helper %s (%s) exited before it was ready", name, what)
	return nil
}

// TestLiveHelperProcess is not a test: it is the listener process that
// startLiveHelper runs. It serves until its stdin closes.
func TestLiveHelperProcess(t *testing.T) {
	what := os.Getenv(liveHelperEnv)
	if what == "" {
		t.Skip("helper process for the live checks' tests")
	}
	serve := func(addr string) int {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "live helper:", err)
			os.Exit(2)
		}
		go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "{}") }))
		return l.Addr().(*net.TCPAddr).Port
	}
	for _, w := range strings.Split(what, ",") {
		switch w {
		case "any":
			fmt.Printf("port any %d\n", serve("0.0.0.0:0"))
		case "lo":
			fmt.Printf("port lo %d\n", serve("127.0.0.1:0"))
		case "mdns":
			c, err := net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", mdnsPort))
			if err != nil {
				fmt.Fprintln(os.Stderr, "live helper:", err)
				os.Exit(2)
			}
			defer c.Close()
		case "child":
			child := startLiveHelper(t, "chromium", "any")
			fmt.Printf("port child %d\n", child.ports["any"])
		}
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	os.Exit(0) // skip the test framework's output: the parent reads ours
}

// liveCases break the baseline for each live rule.
func liveCases() []ruleCase {
	return []ruleCase{
		{id: ruleLiveGatewayExposed, name: "process named openclaw-gateway on 0.0.0.0", break_: func(f *fixture) {
			startLiveHelper(f.t, "openclaw-gateway", "any,lo")
			f.target.Live = true
		}},
		{id: ruleLiveGatewayExposed, name: "listener on the configured gateway.port", break_: func(f *fixture) {
			l, err := net.Listen("tcp", "0.0.0.0:0")
			if err != nil {
				f.t.Fatal(err)
			}
			f.t.Cleanup(func() { l.Close() })
			f.set("gateway.port", l.Addr().(*net.TCPAddr).Port)
			f.target.Live = true
		}},
		{id: ruleLiveGatewayRoot, name: "gateway process with uid 0", break_: func(f *fixture) {
			requireRoot(f.t)
			startLiveHelper(f.t, "openclaw-gateway", "lo")
			f.target.Live = true
		}},
		{id: ruleLiveGatewayTreePort, name: "browser child of the gateway on 0.0.0.0", break_: func(f *fixture) {
			startLiveHelper(f.t, "openclaw-gateway", "lo,child")
			f.target.Live = true
		}},
		{id: ruleLiveGatewayMDNS, name: "gateway holds UDP 5353", break_: func(f *fixture) {
			startLiveHelper(f.t, "openclaw-gateway", "lo,mdns")
			f.target.Live = true
		}},
	}
}

// requireRoot skips a test that needs root, except in CI, where the tests
// run as root and must not skip.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: this test needs root")
		}
		t.Skip("needs root")
	}
}

// liveAudit runs the audit of a fresh fixture with Live set.
func liveAudit(t *testing.T, live bool, cfg func(f *fixture)) *Report {
	t.Helper()
	f := newFixture(t)
	if cfg != nil {
		cfg(f)
	}
	f.target.Live = live
	return f.run()
}

// mentions returns the findings of id whose evidence names pid's process.
func mentions(r *Report, id string, pid int) []Finding {
	var out []Finding
	for _, f := range findingsOf(r, id) {
		if strings.Contains(f.Evidence, fmt.Sprintf("process %d ", pid)) {
			out = append(out, f)
		}
	}
	return out
}

// hasNonLoopbackAddr reports whether this host has an address the
// answers probe can dial.
func hasNonLoopbackAddr(t *testing.T) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

func TestLiveGatewayHelper(t *testing.T) {
	h := startLiveHelper(t, "openclaw-gateway", "any,lo,child")

	t.Run("not without Live", func(t *testing.T) {
		rep := liveAudit(t, false, nil)
		for _, f := range rep.Findings {
			if strings.HasPrefix(f.ID, "live.") {
				t.Errorf("live finding without Live: %+v", f)
			}
		}
	})

	rep := liveAudit(t, true, nil)
	t.Logf("errors: %v", rep.Errors)
	exposed := mentions(rep, ruleLiveGatewayExposed, h.pid)
	if len(exposed) != 1 {
		t.Fatalf("want one %s finding for helper %d, got %+v", ruleLiveGatewayExposed, h.pid, exposed)
	}
	e := exposed[0]
	if want := fmt.Sprintf(":%d", h.ports["any"]); !strings.Contains(e.Evidence, want) {
		t.Errorf("evidence %q lacks the port %s", e.Evidence, want)
	}
	if strings.Contains(e.Evidence, strconv.Itoa(h.ports["lo"])) {
		t.Errorf("evidence %q names the loopback listener", e.Evidence)
	}
	if hasNonLoopbackAddr(t) {
		if e.Severity != Critical || !strings.Contains(e.Evidence, "answers HTTP") {
			t.Errorf("the port answers HTTP from a non-loopback address; want critical, got %s: %s", e.Severity, e.Evidence)
		}
	} else {
		t.Log("no non-loopback address on this host: the answers probe is not exercised")
	}
	tree := findingsOf(rep, ruleLiveGatewayTreePort)
	if !slices.ContainsFunc(tree, func(f Finding) bool {
		return strings.Contains(f.Evidence, fmt.Sprintf("gateway process %d", h.pid)) &&
			strings.Contains(f.Evidence, fmt.Sprintf(":%d", h.ports["child"]))
	}) {
		t.Errorf("no %s finding for the child's port %d: %+v", ruleLiveGatewayTreePort, h.ports["child"], tree)
	}
	root := mentions(rep, ruleLiveGatewayRoot, h.pid)
	if (os.Geteuid() == 0) != (len(root) == 1) {
		t.Errorf("euid %d: %s findings %+v", os.Geteuid(), ruleLiveGatewayRoot, root)
	}
}

// TestLiveLoopbackOnly: a gateway that listens on loopback only raises no
// exposure finding.
func TestLiveLoopbackOnly(t *testing.T) {
	h := startLiveHelper(t, "openclaw-gateway", "lo")
	rep := liveAudit(t, true, nil)
	if got := mentions(rep, ruleLiveGatewayExposed, h.pid); len(got) > 0 {
		t.Errorf("loopback-only gateway reported as exposed: %+v", got)
	}
	if got := mentions(rep, ruleLiveGatewayTreePort, h.pid); len(got) > 0 {
		t.Errorf("loopback-only gateway reported a tree listener: %+v", got)
	}
}

// TestLiveRealGateway runs OpenClaw's gateway bound to lan and audits its
// state dir live: the gateway port is found listening beyond loopback and
// answering HTTP there.
func TestLiveRealGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real OpenClaw gateway")
	}
	inst := openclawtest.Install(t)
	g := openclawtest.Start(t, inst, map[string]any{"gateway": map[string]any{
		"bind": "lan",
		"auth": map[string]any{"mode": "token", "token": openclawtest.RandomHex(t, 32)},
	}})
	tg, err := NewTarget(filepath.Join(g.Home(), ".openclaw"), "", map[string]string{"HOME": g.Home()})
	if err != nil {
		t.Fatal(err)
	}
	tg.Live = true
	start := time.Now()
	rep, err := Run(context.Background(), tg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("audit took %v; errors: %v", time.Since(start), rep.Errors)
	var got []Finding
	for _, f := range findingsOf(rep, ruleLiveGatewayExposed) {
		if strings.Contains(f.Evidence, fmt.Sprintf(":%d ", g.Port())) {
			got = append(got, f)
		}
	}
	if len(got) != 1 {
		t.Fatalf("want one %s finding for port %d, got %+v (all: %v)", ruleLiveGatewayExposed, g.Port(), got, ids(rep))
	}
	f := got[0]
	t.Logf("%s %s: %s (%s)", f.Severity, f.ID, f.Evidence, f.Location)
	if !strings.Contains(f.Evidence, fmt.Sprintf("process %d ", g.PID())) || !strings.Contains(f.Evidence, `gateway.bind is "lan"`) {
		t.Errorf("evidence %q does not name gateway process %d and its bind", f.Evidence, g.PID())
	}
	if f.Location.Key != "gateway.bind" || f.Location.File != tg.ConfigPath {
		t.Errorf("location %+v, want %s gateway.bind", f.Location, tg.ConfigPath)
	}
	if hasNonLoopbackAddr(t) && f.Severity != Critical {
		t.Errorf("the gateway answers from a non-loopback address; want critical, got %s", f.Severity)
	}
	if root := mentions(rep, ruleLiveGatewayRoot, g.PID()); (os.Geteuid() == 0) != (len(root) == 1) {
		t.Errorf("euid %d: %s findings %+v", os.Geteuid(), ruleLiveGatewayRoot, root)
	}
}

func TestParseSocketLine(t *testing.T) {
	for _, c := range []struct {
		line, proto string
		want        string // addr, or "" when skipped
		ino         uint64
	}{
		{"   1: 00000000:7075 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 65100812 1 0000000072c2a8e4 100 0 0 10 0", "tcp", "0.0.0.0:28789", 65100812},
		{"   0: 0100007F:B297 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 65076700 2 00000000988544e9 100 0 0 10 0", "tcp", "127.0.0.1:45719", 65076700},
		{"   2: 0100007F:B297 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 65076701 2 00000000988544e9 100 0 0 10 0", "tcp", "", 0}, // established
		{"   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0", "tcp", "[::1]:8080", 4242},
		{"   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4243 1 0000000000000000 100 0 0 10 0", "tcp", "[::]:8080", 4243},
		{"   0: 0000000000000000FFFF00000202000C0:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4244 1 0000000000000000 100 0 0 10 0", "tcp", "", 0}, // malformed (33 hex digits)
		{"   0: 0000000000000000FFFF00000200000C:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4245 1 0000000000000000 100 0 0 10 0", "tcp", "12.0.0.2:8080", 4245},
		{"  12: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0", "udp", "0.0.0.0:5353", 777},
		{"  12: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0000000000000000 0", "tcp", "", 0},
	} {
		s, ok := parseSocketLine(c.line, c.proto)
		if c.want == "" {
			if ok {
				t.Errorf("%q: parsed as %s, want skipped", c.line, s.addr())
			}
			continue
		}
		if !ok || s.addr() != c.want || s.inode != c.ino {
			t.Errorf("%q: got %v %s inode %d, want %s inode %d", c.line, ok, s.addr(), s.inode, c.want, c.ino)
		}
	}
}

func TestIsGateway(t *testing.T) {
	for _, c := range []struct {
		argv []string
		exe  string
		want bool
	}{
		{[]string{"openclaw-gateway"}, "/usr/bin/node", true},
		{[]string{"/opt/node/bin/node", "/opt/openclaw/openclaw.mjs", "gateway", "run", "--port", "1"}, "/opt/node/bin/node", true},
		{[]string{"node", "/usr/lib/node_modules/openclaw/openclaw.mjs", "gateway"}, "", true},
		{[]string{"node", "/opt/openclaw/openclaw.mjs", "security", "audit"}, "/usr/bin/node", false},
		{[]string{"/opt/node/bin/node", "/opt/openclaw/dist/process/spawn-broker/worker.js"}, "/opt/node/bin/node", false},
		{[]string{"/tmp/go-build/audit.test", "-test.run=TestOpenClawGateway", "gateway"}, "/tmp/go-build/audit.test", false},
		{nil, "", false},
	} {
		if got := (proc{argv: c.argv, exe: c.exe}).isGateway(); got != c.want {
			t.Errorf("%q (exe %s): got %v, want %v", c.argv, c.exe, got, c.want)
		}
	}
}
