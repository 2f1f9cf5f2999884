package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clawhold/clawhold/cell"
	"github.com/clawhold/clawhold/cellfs"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/instance"
)

// upHarness is what the encrypted-state parts of testUp share: the
// binary, its environment and data dir, the door and a signed-in user.
type upHarness struct {
	bin, data, cfgPath, node string
	env                      []string
	port                     int
	alice                    *doorClient
	run                      func(stdin string, args ...string) string
}

// start starts `clawhold up` and returns once the door listens, with
// funcs that stop it cleanly and that SIGKILL it.
func (h *upHarness) start(t *testing.T) (stop, kill func()) {
	t.Helper()
	up := exec.Command(h.bin, "up")
	up.Env = h.env
	var out syncBuffer
	up.Stdout, up.Stderr = &out, &out
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { up.Wait(); close(exited) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			up.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(40 * time.Second):
				t.Errorf("clawhold up did not stop within 40 s")
				up.Process.Kill()
				<-exited
			}
		})
	}
	kill = func() {
		once.Do(func() {
			up.Process.Kill()
			<-exited
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("clawhold up output:\n%s", lastLines(out.String(), 60))
		}
	})
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", h.port))
	return stop, kill
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// volume returns the cellfs volume of tenant's state and its key
// generations, from the keyring of the data dir (clawhold up must not be
// running: this opens its store).
func (h *upHarness) volume(t *testing.T, data, tenant string) (*cellfs.Volume, [][]byte) {
	t.Helper()
	ctx := context.Background()
	in, err := instance.Open(ctx, instance.Options{DataDir: data, ConfigPath: h.cfgPath})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	gens, err := in.StateVolumeKeys(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cellfs.NewVolumeGenerations(gens)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, k := range gens {
			clear(k)
		}
	})
	return v, gens
}

// generations counts the content files under a cellfs ciphertext dir by
// the key generation their header names, and returns each file's by its
// file ID (header bytes 4–20: a file OpenClaw replaces, e.g. by rename,
// is a new file with a new ID; one cellfs re-sealed would keep its ID).
func generations(t *testing.T, cipherDir string) (map[byte]int, map[string]byte) {
	t.Helper()
	counts, each := map[byte]int{}, map[string]byte{}
	filepath.WalkDir(cipherDir, func(p string, d fs.DirEntry, err error) error {
		name := d.Name()
		if err != nil || !d.Type().IsRegular() || name == "cellfs.diriv" || name == "cellfs.conf" || strings.HasSuffix(name, ".name") {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		hdr := make([]byte, 20)
		if _, err := io.ReadFull(f, hdr); err == nil {
			counts[hdr[3]]++
			each[string(hdr[4:20])] = hdr[3]
		}
		return nil
	})
	return counts, each
}

// testKeyGeneration rotates the tenant's keyring with clawhold stopped:
// the cell's next start mounts its volume with a second key generation,
// files OpenClaw creates from then on are sealed under it, the files
// sealed before keep theirs (nothing is rewritten), a rewrap re-seals the
// volume keys, and every database still passes integrity_check.
func testKeyGeneration(t *testing.T, h *upHarness) {
	l := cell.NewLayout(h.data, "acme")
	h.run("", "keys", "rotate", "--tenant", "acme")
	_, before := generations(t, l.CipherHome)
	stop, _ := h.start(t)
	h.waitServed(t)
	if code, err := h.alice.tryPostJSON(context.Background(), "/v1/chat/completions", map[string]any{"model": "openclaw",
		"messages": []any{map[string]any{"role": "user", "content": "after the rotation"}}}); err != nil || code != http.StatusOK {
		t.Fatalf("chat after the rotation: %d %v", code, err)
	}
	stop()
	h.run("", "keys", "rewrap", "--tenant", "acme")
	counts, after := generations(t, l.CipherHome)
	t.Logf("content files by key generation: %v", counts)
	if counts[1] == 0 {
		t.Fatalf("no file sealed under the new key generation: %v", counts)
	}
	kept := 0
	for id, g := range before {
		if ng, ok := after[id]; ok {
			kept++
			if ng != g {
				t.Errorf("file %x was re-sealed from generation %d to %d", id, g, ng)
			}
		}
	}
	if kept == 0 {
		t.Fatal("no file survived the restart: nothing shows that old files keep their generation")
	}
	if dbs, missing := checkOpenClawDatabases(t, h, l, []string{"after the rotation"}); dbs < 2 || len(missing) > 0 {
		t.Fatalf("after the rotation: %d databases, missing %v", dbs, missing)
	}
}

// waitServed waits for alice's cell to serve, and says why not if it
// does not.
func (h *upHarness) waitServed(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		if code, _ := h.alice.get("/"); code == http.StatusOK {
			return
		}
	}
	var exits []string
	for _, e := range tenantEvents(t, h.data, "acme") {
		if e.Type == cell.EventExit {
			exits = append(exits, fmt.Sprint(e.Time.Format("15:04:05.000"), " code ", e.Detail["code"], ": ", e.Detail["error"]))
		}
	}
	t.Fatalf("acme's cell does not serve; cells: %s\nlast exits: %s\ncell log:\n%s", h.run("", "cells", "list", "--json"),
		strings.Join(exits[max(0, len(exits)-8):], "\n"), h.run("", "cells", "logs", "acme", "-n", "60"))
}

// OpenClaw's two databases (../shared/reference/openclaw-integration.md §6),
// relative to the cell's home.
const (
	stateDB = ".openclaw/state/openclaw.sqlite"
	agentDB = ".openclaw/agents/main/agent/openclaw-agent.sqlite"
)

// sqliteIOError is how OpenClaw reports a read that failed with EIO.
var sqliteIOError = regexp.MustCompile(`(?i)disk I/O error|SQLITE_IOERR|\bEIO\b`)

// testTamperKinds damages OpenClaw's shared database on disk in each way
// an attacker with the disk can (a changed byte, blocks swapped inside the
// file, a block taken from another file, blocks cut off the end), one at
// a time with the cell stopped, and starts the cell: each time OpenClaw
// must read an I/O error (never other data) and clawhold must record a
// tamper event naming that file. With the file put back, the cell serves
// its history again.
func testTamperKinds(t *testing.T, h *upHarness) {
	l := cell.NewLayout(h.data, "acme")
	v, _ := h.volume(t, h.data, "acme")
	victim, err := v.CipherPath(l.CipherHome, stateDB)
	if err != nil {
		t.Fatal(err)
	}
	donor, err := v.CipherPath(l.CipherHome, agentDB)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	donorBytes, _ := os.ReadFile(donor)
	off0, n, err := v.Block(victim, 0)
	if err != nil {
		t.Fatal(err)
	}
	blocks := (int64(len(orig)) - off0) / n
	if blocks < 3 || int64(len(donorBytes)) < off0+n {
		t.Fatalf("the state database has %d blocks, the agent database %d bytes: too small to tamper with", blocks, len(donorBytes))
	}
	block := func(b []byte, i int64) []byte { return b[off0+i*n : off0+(i+1)*n] }
	// Block 0 holds SQLite's header page, which every open reads; a cut
	// shows in the size, which every open stats.
	kinds := []struct {
		name   string
		damage func(b []byte) []byte
	}{
		{"a changed byte", func(b []byte) []byte { block(b, 0)[100] ^= 0x20; return b }},
		{"blocks swapped inside the file", func(b []byte) []byte {
			b0 := bytes.Clone(block(b, 0))
			copy(block(b, 0), block(b, 1))
			copy(block(b, 1), b0)
			return b
		}},
		{"a block from another file", func(b []byte) []byte { copy(block(b, 0), block(donorBytes, 0)); return b }},
		{"blocks cut off the end", func(b []byte) []byte { return b[:off0+(blocks-1)*n] }},
	}

	stop, _ := h.start(t)
	defer stop()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			h.run("", "cells", "stop", "acme")
			waitCell(t, h.run, "acme", 60*time.Second, func(s cell.Status) bool { return s.State == cell.StateStopped })
			if err := os.WriteFile(victim, k.damage(bytes.Clone(orig)), 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(victim, orig, 0o600)
			since := time.Now()
			h.alice.get("/") // starts the cell
			ev := waitEventWithin(t, h.data, "acme", 90*time.Second, func(e events.Event) bool {
				return e.Type == cell.EventTamper && e.Subject == "/"+stateDB && !e.Time.Before(since)
			})
			t.Logf("tamper event: block %v: %v", ev.Detail["block"], ev.Detail["error"])
			logs := ""
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
				if logs = h.run("", "cells", "logs", "acme", "-n", "400"); sqliteIOError.MatchString(logs) {
					break
				}
			}
			if !sqliteIOError.MatchString(logs) {
				t.Fatalf("OpenClaw logged no I/O error for the damaged database; cell log:\n%s", lastLines(logs, 40))
			}
			h.run("", "cells", "stop", "acme")
			waitCell(t, h.run, "acme", 60*time.Second, func(s cell.Status) bool { return s.State == cell.StateStopped })
		})
	}

	// Undamaged again: the cell starts, with the chat's session.
	since := time.Now()
	h.waitServed(t)
	if n := sessionCount(t, h.alice); n < 1 {
		t.Fatalf("after the repair: %d sessions, want the chat's", n)
	}
	for _, e := range tenantEvents(t, h.data, "acme") {
		if e.Type == cell.EventTamper && !e.Time.Before(since) {
			t.Errorf("tamper event after the repair: %s %v", e.Subject, e.Detail)
		}
	}
}

// testCrashes kills the gateway (SIGKILL) and then clawhold up itself,
// the FUSE server (SIGKILL), while four clients chat as fast as they can,
// twice each. After every kill: every OpenClaw database passes SQLite's
// integrity_check, and every chat turn the gateway had answered is in the
// transcripts. cellfs writes through to the lower file system before a
// write returns (no write-back cache), so a killed process loses nothing
// it wrote; only a power loss could cost data written since the last fsync.
func testCrashes(t *testing.T, h *upHarness) {
	var answered []string
	l := cell.NewLayout(h.data, "acme")
	started := time.Now()
	for round := range 4 {
		killServer := round%2 == 1
		stop, kill := h.start(t)
		h.waitServed(t)
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		var thisRound int // answered in this round
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					phrase := fmt.Sprintf("crash-round-%d-client-%d-turn-%d", round, w, i)
					if code, err := h.alice.tryPostJSON(ctx, "/v1/chat/completions", map[string]any{"model": "openclaw",
						"messages": []any{map[string]any{"role": "user", "content": phrase}}}); err == nil && code == http.StatusOK {
						mu.Lock()
						answered = append(answered, phrase)
						thisRound++
						mu.Unlock()
					}
				}
			}()
		}
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			mu.Lock()
			n := thisRound
			mu.Unlock()
			if n >= 12 {
				break
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("round %d: only %d chat turns answered in 60 s", round, n)
			}
		}
		// Kill mid-stream: requests are in flight.
		if killServer {
			kill()
		} else {
			pid := gatewayPID(t, cell.IDsFor("acme").UID, h.node)
			syscall.Kill(pid, syscall.SIGKILL)
		}
		mu.Lock()
		want := len(answered)
		mu.Unlock()
		time.Sleep(time.Second) // let the clients see the failure
		cancel()
		wg.Wait()
		if !killServer {
			h.waitServed(t) // the cell restarts by itself
		}
		stop()
		victim := "the gateway"
		if killServer {
			victim = "clawhold up"
		}
		t.Logf("round %d: killed %s after %d answered turns (%d in all)", round, victim, thisRound, want)
		dbs, missing := checkOpenClawDatabases(t, h, l, answered[:want])
		if dbs < 2 {
			t.Fatalf("round %d: found %d OpenClaw databases, want at least %s and %s", round, dbs, stateDB, agentDB)
		}
		if len(missing) > 0 {
			t.Fatalf("round %d: %d of %d answered chat turns are not in the transcripts, e.g. %v", round, len(missing), want, missing[:min(5, len(missing))])
		}
	}
	time.Sleep(1500 * time.Millisecond) // the recorder batches
	for _, e := range tenantEvents(t, h.data, "acme") {
		if e.Type == cell.EventTamper && !e.Time.Before(started) {
			t.Errorf("tamper event after a crash (a kill must never leave a block that fails to authenticate): %s %v", e.Subject, e.Detail)
		}
	}
}

// fsckScript opens every database named in DBS with Node's SQLite (the
// engine OpenClaw uses), runs integrity_check, and lists which PHRASES
// appear in no transcript event.
const fsckScript = `
const {DatabaseSync} = require('node:sqlite');
const zlib = require('node:zlib');
const out = {integrity: {}, missing: []};
let text = '';
for (const p of JSON.parse(process.env.DBS)) {
  const db = new DatabaseSync(p);
  out.integrity[p] = db.prepare('PRAGMA integrity_check').all().map(r => r.integrity_check).join('; ');
  const has = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'transcript_events'").get().n;
  if (has) {
    for (const r of db.prepare('SELECT event_json, event_zstd FROM transcript_events').iterate()) {
      text += r.event_json ?? zlib.zstdDecompressSync(r.event_zstd).toString();
    }
  }
  db.close();
}
out.missing = JSON.parse(process.env.PHRASES).filter(s => !text.includes(s));
console.log(JSON.stringify(out));
`

// checkOpenClawDatabases mounts the cell's encrypted state (this process
// serves it; clawhold up must be stopped), finds every SQLite database in
// it and runs fsckScript on them as the cell's uid in a child process (a
// Go process must not run SQLite on a FUSE mount it serves, and files
// SQLite creates must stay the cell's). It fails the test on any
// integrity error and returns how many databases it checked and which
// phrases are in no transcript.
func checkOpenClawDatabases(t *testing.T, h *upHarness, l cell.Layout, phrases []string) (int, []string) {
	t.Helper()
	_, gens := h.volume(t, h.data, "acme")
	// The cell's uid must reach the mount point: a 0711 directory.
	parent, err := os.MkdirTemp("", "clawhold-fsck-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	os.Chmod(parent, 0o711)
	mnt := filepath.Join(parent, "m")
	os.Mkdir(mnt, 0o700)
	srv, err := cellfs.Mount(context.Background(), l.CipherHome, mnt, cellfs.Options{Keys: gens})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmounting the check mount: %v", err)
		}
	}()
	var dbs []string
	filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return nil
		}
		defer f.Close()
		head := make([]byte, 16)
		if n, _ := io.ReadFull(f, head); n == 16 && string(head) == "SQLite format 3\x00" {
			dbs = append(dbs, p)
		}
		return nil
	})
	dbList, _ := json.Marshal(dbs)
	phraseList, _ := json.Marshal(phrases)
	cmd := exec.Command(h.node, "-e", fsckScript)
	ids := cell.IDsFor("acme")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(ids.UID), Gid: uint32(ids.GID)}}
	cmd.Env = []string{"DBS=" + string(dbList), "PHRASES=" + string(phraseList), "HOME=" + parent}
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("checking the databases: %v\n%s", err, stderr)
	}
	var res struct {
		Integrity map[string]string `json:"integrity"`
		Missing   []string          `json:"missing"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("checker output %q: %v", out, err)
	}
	for p, r := range res.Integrity {
		if r != "ok" {
			t.Errorf("integrity_check of %s: %s", strings.TrimPrefix(p, mnt), r)
		}
	}
	return len(res.Integrity), res.Missing
}

// sessionCount is how many sessions the gateway lists (up to 50).
func sessionCount(t *testing.T, c *doorClient) int {
	t.Helper()
	code, body := c.postJSON("/tools/invoke", map[string]any{"tool": "sessions_list", "args": map[string]any{"limit": 50}})
	var res struct {
		Result struct {
			Details struct {
				Count int `json:"count"`
			} `json:"details"`
		} `json:"result"`
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil {
		t.Fatalf("sessions_list: %d %.300s", code, body)
	}
	return res.Result.Details.Count
}

// waitEventWithin waits for an event of tenant that match accepts.
func waitEventWithin(t *testing.T, data, tenant string, within time.Duration, match func(events.Event) bool) events.Event {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		for _, e := range tenantEvents(t, data, tenant) {
			if match(e) {
				return e
			}
		}
	}
	evs := tenantEvents(t, data, tenant)
	var last []string
	for _, e := range evs[max(0, len(evs)-15):] {
		last = append(last, fmt.Sprintf("%d %s %s %s", e.ID, e.Time.Format("15:04:05.000"), e.Type, e.Subject))
	}
	t.Fatalf("no matching event of %s within %v; %d events, the last:\n%s", tenant, within, len(evs), strings.Join(last, "\n"))
	return events.Event{}
}
