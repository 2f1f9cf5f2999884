package main

import (
	"bufio"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawhold/clawhold/monitor/auditlog"
)

func TestLogsQueryExportVerifyAndTamper(t *testing.T) {
	d := newDataDir(t)
	const value = "sk-live-LOGS-SECRET-0123456789"
	const name = "models/providers/openai/apiKey"
	mustRun(t, value+"\n", "--data-dir", d, "secrets", "set", name)
	mustRun(t, "", "--data-dir", d, "secrets", "get", name, "--reveal")
	mustRun(t, "", "--data-dir", d, "secrets", "get", name, "--reveal")

	// query ships the raw events into the log and shows them.
	out := mustRun(t, "", "--data-dir", d, "logs", "query", "--tenant", "default", "--type", "secret.*")
	if !strings.Contains(out, "secret.write") || strings.Count(out, "secret.read") != 2 || !strings.Contains(out, name) {
		t.Fatalf("query:\n%s", out)
	}
	var lines []auditlog.ExportLine
	if err := json.Unmarshal([]byte(mustRun(t, "", "--data-dir", d, "logs", "query", "--type", "secret.read", "--since", "1h", "--limit", "1", "--json")), &lines); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 1 || lines[0].Tenant != "default" || lines[0].Type != "secret.read" || lines[0].Seq != 3 {
		t.Fatalf("query --json = %+v", lines)
	}
	if out := mustRun(t, "", "--data-dir", d, "logs", "query", "--until", "2000-01-01T00:00:00Z"); strings.Contains(out, "secret") {
		t.Fatalf("--until in the past matched:\n%s", out)
	}
	if _, _, err := run(t, "", "--data-dir", d, "logs", "query", "--since", "yesterday"); err == nil || !strings.Contains(err.Error(), "RFC 3339") {
		t.Fatalf("bad --since: %v", err)
	}

	// export: JSON lines with the chain hash, to stdout or a private file.
	exported := filepath.Join(t.TempDir(), "siem.jsonl")
	mustRun(t, "", "--data-dir", d, "logs", "export", "--tenant", "default", "-o", exported)
	f, err := os.Open(exported)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, _ := f.Stat(); fi.Mode().Perm() != 0o600 {
		t.Fatalf("export file mode %v", fi.Mode())
	}
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
		var l auditlog.ExportLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Tenant != "default" || len(l.Hash) != 64 || l.Seq != int64(n+1) {
			t.Fatalf("export line %d: %s (%v)", n, sc.Text(), err)
		}
	}
	if n != 3 {
		t.Fatalf("exported %d records, want 3", n)
	}

	// verify: every log OK.
	out = mustRun(t, "", "--data-dir", d, "logs", "verify")
	if !strings.Contains(out, "system: OK") || !strings.Contains(out, "default: OK: 3 records") {
		t.Fatalf("verify:\n%s", out)
	}
	for _, args := range [][]string{{"logs", "query"}, {"logs", "query", "--json"}, {"logs", "export"}, {"logs", "verify", "--json"}} {
		if out := mustRun(t, "", append([]string{"--data-dir", d}, args...)...); strings.Contains(out, value) {
			t.Fatalf("%v printed the secret value", args)
		}
	}

	// Tamper with the SQLite file directly: flip a byte of record 2.
	db, err := sql.Open("sqlite", filepath.Join(d, "tenants", "default.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var body []byte
	if err := db.QueryRow(`SELECT body FROM audit_log WHERE seq = 2`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	body[len(body)/2] ^= 0x40
	if _, err := db.Exec(`UPDATE audit_log SET body = ? WHERE seq = 2`, body); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "", "--data-dir", d, "logs", "verify")
	var code exitCodeError
	if !errors.As(err, &code) || code != logsExitBroken {
		t.Fatalf("verify of a tampered log: %v\n%s", err, out)
	}
	if !strings.Contains(out, "default: BROKEN at seq 2: modified") || !strings.Contains(out, "system: OK") {
		t.Fatalf("verify output:\n%s", out)
	}

	// A deleted record is named too, and --tenant limits the check.
	if _, err := db.Exec(`DELETE FROM audit_log WHERE seq = 1`); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "", "--data-dir", d, "logs", "verify", "--tenant", "default", "--json")
	var reps []auditlog.Report
	if json.Unmarshal([]byte(out), &reps) != nil || len(reps) != 1 || reps[0].FirstBroken == nil ||
		reps[0].FirstBroken.Seq != 1 || reps[0].FirstBroken.Kind != auditlog.Deleted || !errors.As(err, &code) || code != logsExitBroken {
		t.Fatalf("verify --json: %v\n%s", err, out)
	}
	if _, _, err := run(t, "", "--data-dir", d, "logs", "verify", "--checkpoints", filepath.Join(d, "nope")); !errors.As(err, &code) || code != logsExitError {
		t.Fatalf("missing --checkpoints file: %v", err)
	}
}
