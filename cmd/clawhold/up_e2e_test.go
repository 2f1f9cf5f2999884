package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pquerna/otp/totp"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/cellfs"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/frontdoor/proxy"
	"github.com/clawhold/clawhold/frontdoor/tlsconf"
	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/monitor/auditlog"
	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

// TestUp is the end-to-end test of `clawhold up` on a fresh data dir with
// the real pinned OpenClaw: first-admin setup through the printed link,
// tenants and users from the CLI, sign-in with password and TOTP through
// the front door, a WebSocket client's hello-ok with the user's identity
// and role scopes, /tools/invoke recorded with the user, the model key
// served by the exec provider, isolation between two tenants, a tool
// execution inside the cell that cannot forge identity headers or read
// the other cell, crash restart, idle stop and return, clean shutdown.
//
// The model provider is a local stand-in (no real one is reachable here):
// it asks for one exec tool call, the probe, and records the API key it
// was sent. Everything else is real.
func TestUp(t *testing.T) { testUp(t, false) }

// TestUpEncryptedState is TestUp with cells.encrypted_state: OpenClaw runs
// on cellfs, and at the end no known plaintext is on the disk.
func TestUpEncryptedState(t *testing.T) { testUp(t, true) }

func testUp(t *testing.T, encrypted bool) {
	needSandboxRoot(t)
	inst := openclawtest.Install(t)
	bin := buildBinary(t)

	model := &probeModel{results: make(chan string, 4)}
	ms := httptest.NewServer(model)
	defer ms.Close()
	modelPort := ms.Listener.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	port := freePort(t)
	origin := fmt.Sprintf("https://127.0.0.1:%d", port)
	models, agents := openclawtest.OpenAIProvider(ms.URL+"/v1",
		map[string]any{"source": "exec", "provider": cell.ProviderAlias, "id": "model-key"})
	overlay, _ := json.Marshal(map[string]any{
		"models": models, "agents": agents,
		"gateway": map[string]any{"http": map[string]any{"endpoints": map[string]any{"chatCompletions": map[string]any{"enabled": true}}}},
		// The probe runs through the exec tool without an approver.
		"tools": map[string]any{"toolSearch": false, "exec": map[string]any{"mode": "full"}},
	})
	overlayPath := filepath.Join(dir, "openclaw-overlay.json")
	os.WriteFile(overlayPath, overlay, 0o600)
	sinks, alertsYAML := startMonitorSinks(t, dir)
	cfgPath := filepath.Join(dir, "clawhold.yaml")
	os.WriteFile(cfgPath, []byte(alertsYAML+fmt.Sprintf(`frontdoor:
  listen: 127.0.0.1:%d
  http_listen: ""
  public_url: %s
cells:
  openclaw_config: %s
  idle_timeout: 40s
  encrypted_state: %v
  tool_rules:
    - tool: sessions_history
      action: deny
      reason: transcripts stay private here
egress:
  policies:
    default:
      profile: openclaw
      rules:
        - action: allow
          host: 127.0.0.1
          ports: [%d]
          cidrs: [127.0.0.1/32]
`, port, origin, overlayPath, encrypted, modelPort)), 0o600)
	env := []string{"PATH=/usr/bin:/bin", "CLAWHOLD_DATA_DIR=" + data, "CLAWHOLD_CONFIG=" + cfgPath, "CLAWHOLD_OPENCLAW_DIR=" + inst.Dir}
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Stdin = env, strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("clawhold %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	if out := run("", "up", "--check"); !strings.Contains(out, "and host: ok") {
		t.Fatalf("up --check: %s", out)
	}
	up := exec.Command(bin, "up")
	up.Env = env
	var out syncBuffer
	up.Stdout, up.Stderr = &out, &out
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- up.Wait() }()
	defer func() {
		up.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(40 * time.Second):
			up.Process.Kill()
		}
		if t.Failed() {
			t.Logf("clawhold up output:\n%s", out.String())
		}
	}()
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", port))

	fp := regexp.MustCompile(`fingerprint ([0-9A-F:]{95})`).FindStringSubmatch(out.String())
	link := regexp.MustCompile(`(https://\S+/\.clawhold/setup\?token=\S+)`).FindStringSubmatch(out.String())
	if fp == nil || link == nil || !strings.Contains(out.String(), "generated a local root key") {
		t.Fatalf("first start must print the certificate fingerprint, the setup link and the root key warning:\n%s", out.String())
	}
	d := &upDoor{t: t, origin: origin, fingerprint: fp[1]}

	// The first administrator, through the one-time link.
	admin := d.client()
	u, _ := url.Parse(link[1])
	if code, page := admin.post("/.clawhold/setup", url.Values{"token": {u.Query().Get("token")}, "user": {"root-admin"},
		"password": {"a long passphrase 4 tests"}, "password2": {"a long passphrase 4 tests"}}); code != 200 {
		t.Fatalf("setup: %d\n%s", code, page)
	}

	run("", "tenants", "add", "acme")
	run("", "tenants", "add", "globex")
	run("first user long passphrase\n", "users", "add", "alice", "--tenant", "acme", "--role", "operator")
	run("second user long passphrase\n", "users", "add", "bob", "--tenant", "globex", "--role", "operator")
	const acmeKey, globexKey = "sk-acme-0123456789abcdef", "sk-globex-fedcba9876543210"
	run(acmeKey, "secrets", "set", "--tenant", "acme", "model-key")
	run(globexKey, "secrets", "set", "--tenant", "globex", "model-key")
	sinks.storeSecrets(run)
	if list := run("", "tenants", "list"); !strings.Contains(list, "acme") || !strings.Contains(list, "globex") {
		t.Fatalf("tenants list:\n%s", list)
	}

	alice := d.client()
	alice.signIn("alice", "first user long passphrase")
	bob := d.client()
	bob.signIn("bob", "second user long passphrase")

	t.Run("first request sees a starting page, then the gateway", func(t *testing.T) {
		code, page := alice.get("/")
		if code != http.StatusServiceUnavailable || !strings.Contains(page, "is starting") {
			t.Fatalf("first request: %d, want 503 with the starting page\n%.400s", code, page)
		}
		alice.waitServed(t, "/")
	})

	t.Run("WebSocket hello-ok carries the user's identity and role scopes", func(t *testing.T) {
		c, hello := alice.dialGateway(t)
		defer c.CloseNow()
		want, _ := proxy.ScopesForRole("operator")
		if hello.Method != "trusted-proxy" || !slices.Equal(sorted(hello.Scopes), sorted(want)) {
			t.Fatalf("hello-ok auth = %+v, want trusted-proxy with %v", hello, want)
		}
	})

	t.Run("tool calls are reported with the user and decided by clawhold", func(t *testing.T) {
		code, body := alice.postJSON("/tools/invoke", map[string]any{"tool": "sessions_list", "args": map[string]any{"limit": 1}})
		if code != 200 {
			t.Fatalf("/tools/invoke: %d %s", code, body)
		}
		ev := waitEvent(t, data, "acme", func(e events.Event) bool {
			return e.Type == cell.EventToolCall && e.Subject == "sessions_list" && e.Detail["decision"] == "allow"
		})
		if ev.Actor != "user:alice" || ev.Detail["user"] != "alice" {
			t.Fatalf("tool call event %+v: want it attributed to alice", ev)
		}
		if p, _ := json.Marshal(ev.Detail["params"]); string(p) != `{"limit":1}` {
			t.Fatalf("tool call params %s, want the full parameters", p)
		}
		// A static rule denies sessions_history: the gateway blocks the
		// call with clawhold's reason, and the decision is recorded.
		code, body = alice.postJSON("/tools/invoke", map[string]any{"tool": "sessions_history", "args": map[string]any{"sessionKey": "main"}})
		if code != http.StatusForbidden || !strings.Contains(body, "transcripts stay private here") {
			t.Fatalf("denied tool: %d %s, want 403 with the rule's reason", code, body)
		}
		waitEvent(t, data, "acme", func(e events.Event) bool {
			return e.Type == cell.EventToolCall && e.Subject == "sessions_history" && e.Detail["decision"] == "deny"
		})
	})

	t.Run("the exec provider serves the model key; a tool execution cannot forge identity or read the other cell", func(t *testing.T) {
		globexHome := cell.NewLayout(data, "globex").Home
		model.setProbe(fmt.Sprintf(`echo probe-ran; curl --noproxy '*' -sS -m 5 -o /dev/null -H 'x-forwarded-user: alice' -H 'x-forwarded-for: 203.0.113.9' -H 'x-forwarded-proto: https' -H 'x-forwarded-host: x' http://127.0.0.1:%d/tools/invoke; echo curl_exit=$?; ls %s; echo ls_exit=$?`, cell.GatewayPort, globexHome))
		code, body := alice.postJSON("/v1/chat/completions", map[string]any{"model": "openclaw", "messages": []any{map[string]any{"role": "user", "content": "run the probe"}}})
		if code != 200 {
			t.Fatalf("chat: %d %s\ncell log:\n%s", code, body, run("", "cells", "logs", "acme", "-n", "60"))
		}
		if auths := model.authorizations(); len(auths) == 0 || auths[0] != "Bearer "+acmeKey {
			t.Fatalf("the model provider got %v, want the acme key from clawhold's provider", describe(auths))
		}
		var result string
		select {
		case result = <-model.results:
		case <-time.After(30 * time.Second):
			t.Fatal("the probe's tool result never reached the model")
		}
		t.Logf("probe output: %s", result)
		if !strings.Contains(result, "probe-ran") {
			t.Fatalf("the probe did not run: %s", result)
		}
		if !strings.Contains(result, "curl_exit=7") {
			t.Errorf("curl to the gateway's port from inside the cell must fail to connect (exit 7): %s", result)
		}
		if !regexp.MustCompile(`ls_exit=[12]\b`).MatchString(result) {
			t.Errorf("listing the other tenant's home from inside the cell must fail: %s", result)
		}
	})

	t.Run("a command in the cell is detected and alerted by webhook and mail within 2 s; a credential-file read is attributed", func(t *testing.T) {
		checkMonitoring(t, data, inst.Node, alice, model, sinks)
	})

	var backupID string
	if encrypted {
		t.Run("a backup of the running encrypted cell, online", func(t *testing.T) {
			pid := gatewayPID(t, cell.IDsFor("acme").UID, inst.Node)
			out := run("", "backup", "create", "--tenant", "acme")
			m := regexp.MustCompile(`backup (\S+) of tenant acme`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("backup create printed no id:\n%s", out)
			}
			backupID = m[1]
			run("", "backup", "verify", backupID)
			if got := gatewayPID(t, cell.IDsFor("acme").UID, inst.Node); got != pid {
				t.Errorf("the backup restarted the cell's gateway (pid %d, now %d)", pid, got)
			}
			alice.waitServed(t, "/")
		})
	}

	t.Run("killing the OpenClaw process restarts the cell", func(t *testing.T) {
		// Nothing so far may have ended the gateway.
		for _, e := range tenantEvents(t, data, "acme") {
			if e.Type == cell.EventExit {
				t.Errorf("the gateway ended before the kill, at %s: %v", e.Time.Format("15:04:05.000"), e.Detail)
			}
		}
		// Running and just used: an idle stop (cells.idle_timeout) must
		// not race the kill.
		alice.waitServed(t, "/")
		ids := cell.IDsFor("acme")
		pid := gatewayPID(t, ids.UID, inst.Node)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitCell(t, run, "acme", 90*time.Second, func(s cell.Status) bool { return s.State == cell.StateReady && s.Restarts >= 1 })
		alice.waitServed(t, "/")
		if got := gatewayPID(t, ids.UID, inst.Node); got == pid {
			t.Fatal("the same gateway process is still there")
		}
		// The history survived: the session the chat created is listed.
		if n := sessionCount(t, alice); n < 1 {
			t.Fatalf("after the restart: %d sessions, want the chat's", n)
		}
	})

	t.Run("a new user reaches the running cell once clawhold rewrites its config", func(t *testing.T) {
		run("third user long passphrase\n", "users", "add", "carol", "--tenant", "acme", "--role", "viewer")
		carol := d.client()
		carol.signIn("carol", "third user long passphrase")
		// Before the rewrite the gateway does not know carol (401); after
		// it, her viewer scopes refuse a write tool (403).
		deadline := time.Now().Add(45 * time.Second)
		for {
			code, body := carol.postJSON("/tools/invoke", map[string]any{"tool": "sessions_list", "args": map[string]any{"limit": 1}})
			if code == http.StatusForbidden && strings.Contains(body, "operator.write") {
				break
			}
			// 503: the cell is (re)starting, e.g. after an idle stop.
			if code != http.StatusUnauthorized && code != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("carol: %d %s", code, body)
			}
			time.Sleep(500 * time.Millisecond)
		}
		c, hello := carol.dialGateway(t)
		c.CloseNow()
		if want, _ := proxy.ScopesForRole("viewer"); !slices.Equal(sorted(hello.Scopes), sorted(want)) {
			t.Fatalf("carol's hello-ok scopes %v, want %v", hello.Scopes, want)
		}
	})

	t.Run("a second tenant's user cannot reach the first tenant's cell", func(t *testing.T) {
		bob.waitServed(t, "/")
		attacks := []struct {
			name string
			mod  func(*http.Request)
		}{
			{"plain", nil},
			{"Host of the other cell", func(r *http.Request) { r.Host = "acme.cell" }},
			{"forged identity and tenant headers", func(r *http.Request) {
				r.Header.Set("X-Forwarded-User", "alice")
				r.Header.Set("X-Tenant", "acme")
				r.Header.Set("X-Forwarded-Host", "acme.cell")
				r.Header.Set("X-Openclaw-Scopes", "operator.admin")
			}},
			{"path naming the other tenant", func(r *http.Request) { r.URL.Path = "/acme/../tools/invoke" }},
			{"second session cookie", func(r *http.Request) { r.Header.Add("Cookie", "__Host-clawhold_tenant=acme") }},
		}
		before := countEvents(t, data, "acme", cell.EventToolCall)
		served := 0
		for i, a := range attacks {
			code, body := bob.postJSONWith("/tools/invoke", map[string]any{"tool": "sessions_list", "args": map[string]any{"limit": 100 + i}}, a.mod)
			t.Logf("%s: %d %.200s", a.name, code, body)
			if code == 200 {
				served++
			}
		}
		if after := countEvents(t, data, "acme", cell.EventToolCall); after != before {
			t.Fatalf("acme's cell saw %d tool calls from bob's requests", after-before)
		}
		// What was served ran in globex's cell, as bob.
		var bobs int
		for _, e := range tenantEvents(t, data, "globex") {
			if e.Type == cell.EventToolCall && e.Detail["phase"] == "before" {
				if e.Detail["user"] != "bob" {
					t.Errorf("globex tool call attributed to %v", e.Detail["user"])
				}
				bobs++
			}
		}
		if served == 0 || bobs != served {
			t.Fatalf("%d requests served, %d tool calls recorded in globex's cell", served, bobs)
		}
		c, hello := bob.dialGateway(t)
		c.CloseNow()
		want, _ := proxy.ScopesForRole("operator")
		if !slices.Equal(sorted(hello.Scopes), sorted(want)) {
			t.Fatalf("bob's hello-ok scopes %v, want the operator's %v", hello.Scopes, want)
		}
		// With both cells running, neither may hold a /dev/fuse
		// descriptor: it would let it read and answer the file system
		// requests of a volume (the other tenant's among them).
		alice.waitServed(t, "/")
		bob.waitServed(t, "/")
		for _, tenant := range []string{"acme", "globex"} {
			pids := processesOf(cell.IDsFor(tenant).UID)
			if len(pids) == 0 {
				t.Fatalf("no process of %s's cell", tenant)
			}
			for _, pid := range pids {
				fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
				for _, fd := range fds {
					if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); target == "/dev/fuse" {
						t.Errorf("process %d of %s's cell holds /dev/fuse (descriptor %s)", pid, tenant, fd.Name())
					}
				}
			}
		}
	})

	t.Run("an idle cell stops and comes back on the next request", func(t *testing.T) {
		waitCell(t, run, "globex", 90*time.Second, func(s cell.Status) bool { return s.State == cell.StateStopped })
		if _, err := os.Stat(cell.NewLayout(data, "globex").GatewaySocket()); err == nil {
			t.Error("a stopped cell's gateway socket is still there")
		}
		code, _ := bob.get("/")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("first request after the idle stop: %d, want the starting page", code)
		}
		bob.waitServed(t, "/")
	})

	t.Run("the continuous audit finds no critical in clawhold's own deployment, then drift", func(t *testing.T) {
		// The watcher audits the data dir and every cell's generated
		// openclaw.json within a poll (5 s) of seeing it.
		time.Sleep(6 * time.Second)
		for _, tenant := range []string{instance.SystemTenant, "acme", "globex"} {
			for _, e := range tenantEvents(t, data, tenant) {
				if e.Type == "audit.critical" { // up.EventAuditCritical (the package name is shadowed here)
					t.Errorf("%s: critical posture finding %s at %v: %v", tenant, e.Subject, e.Detail["location"], e.Detail["evidence"])
				}
			}
		}
		// Drift: acme's generated config made writable by anyone. The
		// change to the file is seen within a poll, not an hour later.
		cfgFile := cell.NewLayout(data, "acme").ConfigFile()
		touch := func(mode os.FileMode) {
			os.Chmod(cfgFile, mode)
			now := time.Now()
			os.Chtimes(cfgFile, now, now)
		}
		fi, err := os.Stat(cfgFile)
		if err != nil {
			t.Fatal(err)
		}
		orig := fi.Mode().Perm()
		touch(0o666)
		defer os.Chmod(cfgFile, orig)
		ev := waitEventWithin(t, data, "acme", 30*time.Second, func(e events.Event) bool {
			return e.Type == "audit.critical" && e.Subject == "fs.config_writable"
		})
		t.Logf("drift event: %v", ev.Detail["evidence"])
		touch(orig)
		waitEventWithin(t, data, "acme", 30*time.Second, func(e events.Event) bool {
			return e.Type == "audit.resolved" && e.Subject == "fs.config_writable"
		})
	})

	t.Run("SIGTERM stops everything, cells included", func(t *testing.T) {
		up.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			exited <- err // for the deferred cleanup
			if err != nil {
				t.Fatalf("clawhold up exited with %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Fatal("clawhold up did not stop within 40 s")
		}
		for _, tenant := range []string{"acme", "globex"} {
			if pids := processesOf(cell.IDsFor(tenant).UID); len(pids) > 0 {
				t.Errorf("cell %s left processes %v", tenant, pids)
			}
		}
	})

	t.Run("the audit logs verify, and hold the alerts", func(t *testing.T) {
		if out := run("", "logs", "verify"); !strings.Contains(out, "acme") {
			t.Errorf("logs verify:\n%s", out)
		}
		if out := run("", "logs", "query", "--tenant", "acme", "--type", "alert"); !strings.Contains(out, "cmd.download-exec") {
			t.Errorf("logs query --type alert:\n%s", out)
		}
	})

	if encrypted {
		t.Run("the state on disk is ciphertext", func(t *testing.T) {
			l := cell.NewLayout(data, "acme")
			var files int
			var bytes int64
			filepath.WalkDir(l.CipherHome, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					fi, _ := d.Info()
					files++
					bytes += fi.Size()
				}
				return nil
			})
			if files < 10 || bytes < 100<<10 {
				t.Fatalf("the encrypted state holds %d files, %d bytes: OpenClaw's state is not there", files, bytes)
			}
			if n := countEvents(t, data, "acme", cell.EventTamper); n != 0 {
				t.Errorf("%d tamper events in normal use", n)
			}
			if ents, _ := os.ReadDir(l.Home); len(ents) != 0 {
				t.Errorf("the plaintext mount point %s holds %d entries on the host", l.Home, len(ents))
			}
			// OpenClaw's agent workspace is ~/.openclaw/workspace, inside
			// the encrypted state; the layout's workspace/ is only the
			// gateway's working directory and must stay empty.
			if ents, _ := os.ReadDir(l.Workspace); len(ents) != 0 {
				t.Errorf("%d entries in plaintext in the cell's workspace/ on the host", len(ents))
			}
			// The transcript (the chat's prompt and the probe's output),
			// the model key and the device private key are all in
			// OpenClaw's state: none may be readable on disk.
			for _, canary := range []string{"run the probe", "probe-ran", acmeKey, "PRIVATE KEY", "SQLite format 3"} {
				if files := openclawtest.FilesContaining(t, l.CipherHome, canary); len(files) > 0 {
					t.Errorf("%q in plaintext on disk: %v", canary, files)
				}
			}
			if files := openclawtest.FilesContaining(t, l.CipherHome, "openclaw"); len(files) > 0 {
				t.Errorf("file contents mention openclaw on disk: %v", files)
			}
			filepath.WalkDir(l.CipherHome, func(p string, d os.DirEntry, err error) error {
				if err == nil && (strings.Contains(d.Name(), "openclaw") || strings.Contains(d.Name(), "sqlite") || strings.Contains(d.Name(), "workspace")) {
					t.Errorf("a plaintext name on disk: %s", p)
				}
				return nil
			})
		})
	}

	h := &upHarness{bin: bin, data: data, cfgPath: cfgPath, node: inst.Node, env: env, port: port, alice: alice, run: run}
	if encrypted {
		t.Run("each kind of damage to a block is an I/O error to OpenClaw and a tamper event", func(t *testing.T) {
			testTamperKinds(t, h)
		})
		t.Run("kill -9 of the gateway and of clawhold during heavy writes, repeated: databases intact, no answered turn lost", func(t *testing.T) {
			testCrashes(t, h)
		})
		t.Run("a key rotation seals new files under a new key generation; nothing is rewritten", func(t *testing.T) {
			testKeyGeneration(t, h)
		})
	}

	if encrypted {
		t.Run("backup, wipe, restore: the same transcript is readable", func(t *testing.T) {
			if backupID == "" {
				t.Skip("no backup was taken")
			}
			fresh := filepath.Join(dir, "fresh")
			os.MkdirAll(fresh, 0o700)
			key, _ := os.ReadFile(filepath.Join(data, "root.key"))
			os.WriteFile(filepath.Join(fresh, "root.key"), key, 0o600)
			cmd := exec.Command(bin, "--data-dir", fresh, "backup", "restore", backupID, "--backup-dir", filepath.Join(data, "backups"))
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("restore: %v\n%s", err, out)
			}
			l := cell.NewLayout(fresh, "acme")
			if files := openclawtest.FilesContaining(t, l.CipherHome, "run the probe"); len(files) > 0 {
				t.Fatalf("the restored state is in plaintext on disk: %v", files)
			}
			// Read it back through the restored volume, with plain reads
			// only (no SQLite on a mount this process serves).
			_, vk := h.volume(t, fresh, "acme")
			mnt := t.TempDir()
			srv, err := cellfs.Mount(context.Background(), l.CipherHome, mnt, cellfs.Options{Keys: vk})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Unmount()
			if files := openclawtest.FilesContaining(t, mnt, "run the probe"); len(files) == 0 {
				t.Fatal("the chat's transcript is not in the restored state")
			}
		})
	}

	t.Run("tenants rm removes the tenant's data", func(t *testing.T) {
		cmd := exec.Command(bin, "tenants", "rm", "globex")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "still has users (bob)") {
			t.Fatalf("tenants rm of a tenant with users: %v\n%s", err, out)
		}
		run("", "tenants", "rm", "globex", "--force")
		for _, p := range []string{filepath.Join(data, "tenants", "globex.db"), cell.NewLayout(data, "globex").Dir} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s survived tenants rm: %v", p, err)
			}
		}
		if list := run("", "tenants", "list"); strings.Contains(list, "globex") || !strings.Contains(list, "acme") {
			t.Errorf("tenants list after rm:\n%s", list)
		}
	})
}

// upDoor reaches the door over TLS, checking the printed fingerprint.
type upDoor struct {
	t           *testing.T
	origin      string
	fingerprint string
}

type doorClient struct {
	d *upDoor
	c *http.Client
}

func (d *upDoor) tlsConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		if got := tlsconf.Fingerprint(cs.PeerCertificates[0].Raw); got != d.fingerprint {
			return fmt.Errorf("certificate fingerprint %s, printed %s", got, d.fingerprint)
		}
		return nil
	}}
}

func (d *upDoor) client() *doorClient {
	jar, _ := cookiejar.New(nil)
	return &doorClient{d: d, c: &http.Client{Jar: jar, Timeout: 2 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: d.tlsConfig(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}}
}

func (c *doorClient) do(req *http.Request) (int, string) {
	c.d.t.Helper()
	resp, err := c.c.Do(req)
	if err != nil {
		c.d.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *doorClient) get(path string) (int, string) {
	req, _ := http.NewRequest("GET", c.d.origin+path, nil)
	req.Header.Set("Accept", "text/html")
	return c.do(req)
}

func (c *doorClient) post(path string, form url.Values) (int, string) {
	req, _ := http.NewRequest("POST", c.d.origin+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", c.d.origin)
	req.Header.Set("Accept", "text/html")
	return c.do(req)
}

// tryPostJSON is postJSON for other goroutines than the test's: it
// returns transport errors instead of failing the test.
func (c *doorClient) tryPostJSON(ctx context.Context, path string, body any) (int, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(ctx, "POST", c.d.origin+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", c.d.origin)
	resp, err := c.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

func (c *doorClient) postJSON(path string, body any) (int, string) {
	return c.postJSONWith(path, body, nil)
}

func (c *doorClient) postJSONWith(path string, body any, mod func(*http.Request)) (int, string) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", c.d.origin+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", c.d.origin)
	if mod != nil {
		mod(req)
	}
	return c.do(req)
}

var (
	upCSRF   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	upSecret = regexp.MustCompile(`<code class="secret">([A-Z2-7]+)</code>`)
)

// signIn signs in with the password and enrols TOTP (first sign-in).
func (c *doorClient) signIn(user, password string) {
	t := c.d.t
	t.Helper()
	_, page := c.get("/.clawhold/login")
	m := upCSRF.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no login form:\n%s", page)
	}
	code, page := c.post("/.clawhold/login", url.Values{"csrf": {m[1]}, "user": {user}, "password": {password}, "next": {"/"}})
	s, f := upSecret.FindStringSubmatch(page), upCSRF.FindStringSubmatch(page)
	if s == nil || f == nil {
		t.Fatalf("sign-in of %s: %d, want TOTP enrolment\n%s", user, code, page)
	}
	totpCode, _ := totp.GenerateCode(s[1], time.Now())
	code, page = c.post("/.clawhold/mfa/enroll", url.Values{"csrf": {f[1]}, "code": {totpCode}, "next": {"/"}})
	if code != 200 || !strings.Contains(page, "recovery") {
		t.Fatalf("TOTP enrolment of %s: %d\n%s", user, code, page)
	}
}

// waitServed polls path until the cell serves it (not the starting page).
func (c *doorClient) waitServed(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, page := c.get(path)
		if code == 200 {
			return
		}
		if code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("GET %s: %d\n%.600s", path, code, page)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// dialGateway opens OpenClaw's WebSocket through the door and completes
// the operator handshake.
func (c *doorClient) dialGateway(t *testing.T) (*websocket.Conn, openclawtest.HelloAuth) {
	t.Helper()
	u, _ := url.Parse(c.d.origin)
	h := http.Header{"Origin": {c.d.origin}}
	for _, ck := range c.c.Jar.Cookies(u) {
		h.Add("Cookie", ck.Name+"="+ck.Value)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c.d.tlsConfig()}}
	conn, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(c.d.origin, "https")+"/", &websocket.DialOptions{HTTPHeader: h, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	auth, _, err := openclawtest.Handshake(ctx, conn, []string{"operator.read", "operator.write", "operator.admin"})
	if err != nil {
		conn.CloseNow()
		t.Fatal(err)
	}
	return conn, auth
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func describe(auths []string) []string {
	out := make([]string, len(auths))
	for i, a := range auths {
		out[i] = openclawtest.DescribeAuth(a)
	}
	return out
}

// tenantEvents reads a tenant's events while up runs: its audit log
// (where up's monitor moves them) and what is still waiting in the raw
// event table.
func tenantEvents(t *testing.T, data, tenant string) []events.Event {
	t.Helper()
	ctx := context.Background()
	in, err := instance.Open(ctx, instance.Options{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	l, err := in.AuditLog(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := l.Query(ctx, auditlog.Filter{Limit: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	db, err := in.DB(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	var evs []events.Event
	for _, r := range recs {
		evs = append(evs, events.Event{ID: r.Seq, Time: r.Time, Type: r.Type, Actor: r.Actor, Subject: r.Subject, Detail: r.Detail})
	}
	raw, err := events.List(ctx, db, events.Filter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	return append(evs, raw...)
}

func countEvents(t *testing.T, data, tenant, typ string) int {
	// The recorder batches: give it time to flush what is pending.
	time.Sleep(1500 * time.Millisecond)
	n := 0
	for _, e := range tenantEvents(t, data, tenant) {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func waitEvent(t *testing.T, data, tenant string, match func(events.Event) bool) events.Event {
	t.Helper()
	return waitEventWithin(t, data, tenant, 20*time.Second, match)
}

// waitCell polls `clawhold cells list --json` until tenant's cell matches.
func waitCell(t *testing.T, run func(string, ...string) string, tenant string, within time.Duration, ok func(cell.Status) bool) {
	t.Helper()
	var last []cell.Status
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		last = nil
		json.Unmarshal([]byte(run("", "cells", "list", "--json")), &last)
		for _, s := range last {
			if s.Tenant == tenant && ok(s) {
				return
			}
		}
	}
	t.Fatalf("cell %s never reached the expected state: %+v", tenant, last)
}

// processesOf lists the pids of processes whose real uid is uid (from
// /proc/PID/status: the owner of /proc/PID is root for a process that is
// not dumpable).
func processesOf(uid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" && f[1] == strconv.Itoa(uid) {
				out = append(out, pid)
			}
		}
	}
	// ReadDir sorts by name: "100234" before "98765".
	slices.Sort(out)
	return out
}

// gatewayPID finds the cell's gateway: the node process running as the
// cell's uid whose parent is not node (the sandbox's init is clawhold; the
// gateway's own node children, such as `npm root -g`, have it as parent).
func gatewayPID(t *testing.T, uid int, node string) int {
	t.Helper()
	var names []string
	exeOf := func(pid int) string { exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); return exe }
	for _, pid := range processesOf(uid) {
		exe := exeOf(pid)
		names = append(names, fmt.Sprintf("%d:%s", pid, exe))
		if exe == node && exeOf(parentPID(pid)) != node {
			return pid
		}
	}
	t.Fatalf("no gateway process runs as uid %d (processes: %v)", uid, names)
	return 0
}

// probeModel is the stand-in model provider: asked anything, it requests
// one exec tool call running the probe command, then answers with what
// the tool returned. It records the Authorization of every request.
type probeModel struct {
	mu      sync.Mutex
	probe   string
	auths   []string
	results chan string
}

func (m *probeModel) setProbe(cmd string) { m.mu.Lock(); m.probe = cmd; m.mu.Unlock() }

func (m *probeModel) authorizations() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.auths)
}

func (m *probeModel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
		http.NotFound(w, r)
		return
	}
	m.mu.Lock()
	m.auths = append(m.auths, r.Header.Get("Authorization"))
	probe := m.probe
	m.mu.Unlock()
	var req struct {
		Model    string `json:"model"`
		Stream   bool   `json:"stream"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var toolResult string
	for _, msg := range req.Messages {
		if msg.Role == "tool" {
			toolResult = string(msg.Content)
		}
	}
	msg := map[string]any{"role": "assistant", "content": "done"}
	finish := "stop"
	switch {
	case toolResult != "":
		select {
		case m.results <- toolResult:
		default:
		}
	case probe != "":
		args, _ := json.Marshal(map[string]any{"command": probe})
		finish = "tool_calls"
		msg = map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{map[string]any{
			"index": 0, "id": "call_probe_1", "type": "function",
			"function": map[string]any{"name": "exec", "arguments": string(args)},
		}}}
	}
	usage := map[string]any{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"id": "chatcmpl-probe", "object": "chat.completion", "created": 1, "model": req.Model,
			"usage": usage, "choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish}}})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	for _, chunk := range []map[string]any{
		{"choices": []any{map[string]any{"index": 0, "delta": msg, "finish_reason": nil}}},
		{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": finish}}, "usage": usage},
	} {
		chunk["id"], chunk["object"], chunk["created"], chunk["model"] = "chatcmpl-probe", "chat.completion.chunk", 1, req.Model
		b, _ := json.Marshal(chunk)
		fmt.Fprintf(w, "data: %s\n\n", b)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// parentPID reads pid's parent from /proc, or 0.
func parentPID(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "PPid:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}
