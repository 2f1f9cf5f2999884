package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runBinErr runs the built binary and returns its output and error.
func runBinErr(bin, stdin string, args ...string) (string, string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// TestBackupCLI drives the real binary: init and secrets on one data
// directory, backup create/list/verify, then restore onto a fresh data
// directory holding only the copied root key.
func TestBackupCLI(t *testing.T) {
	bin := buildBinary(t)
	base := t.TempDir()
	data, backups := filepath.Join(base, "data"), filepath.Join(base, "backups")
	const value = "sk-backup-cli-canary-9d2e"

	runBin(t, bin, "", "--data-dir", data, "init")
	runBin(t, bin, value, "--data-dir", data, "secrets", "set", "--tenant", "acme", "models/providers/openai/apiKey")
	runBin(t, bin, "other", "--data-dir", data, "secrets", "set", "--tenant", "globex", "k")

	var created []struct{ ID, Tenant string }
	out := runBin(t, bin, "", "--data-dir", data, "--json", "backup", "create", "--all", "--backup-dir", backups)
	// init created the default tenant: three in all.
	if err := json.Unmarshal([]byte(out), &created); err != nil || len(created) != 3 {
		t.Fatalf("create --all = %s (%v)", out, err)
	}
	var id string
	for _, c := range created {
		if c.Tenant == "acme" {
			id = c.ID
		}
	}
	if id == "" {
		t.Fatalf("no backup of acme in %s", out)
	}

	var listed []struct{ ID, Tenant, Status string }
	out = runBin(t, bin, "", "--data-dir", data, "--json", "backup", "list", "--backup-dir", backups)
	if err := json.Unmarshal([]byte(out), &listed); err != nil || len(listed) != 3 || listed[0].Status != "complete" {
		t.Fatalf("list = %s (%v)", out, err)
	}
	if out := runBin(t, bin, "", "--data-dir", data, "backup", "verify", "--all", "--backup-dir", backups); strings.Count(out, "ok ") != 3 {
		t.Fatalf("verify --all = %s", out)
	}

	// Restore onto a fresh data directory with the same root key.
	fresh := filepath.Join(base, "fresh")
	if err := os.Mkdir(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := runBinErr(bin, "", "--data-dir", fresh, "backup", "restore", id, "--backup-dir", backups)
	if err == nil || !strings.Contains(errOut, "copy the root key") {
		t.Fatalf("restore without a root key = %v, %s", err, errOut)
	}
	key, err := os.ReadFile(filepath.Join(data, "root.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fresh, "root.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	runBin(t, bin, "", "--data-dir", fresh, "backup", "restore", id, "--backup-dir", backups)
	if got := runBin(t, bin, "", "--data-dir", fresh, "secrets", "get", "--tenant", "acme", "models/providers/openai/apiKey", "--reveal"); got != value {
		t.Fatalf("restored secret = %q", got)
	}
	if out := runBin(t, bin, "", "--data-dir", fresh, "tenants", "list"); !strings.Contains(out, "acme") {
		t.Fatalf("tenants list after restore = %s", out)
	}
	if _, errOut, err := runBinErr(bin, "", "--data-dir", fresh, "backup", "restore", id, "--backup-dir", backups); err == nil || !strings.Contains(errOut, "--force") {
		t.Fatalf("second restore = %v, %s; want a refusal", err, errOut)
	}
	runBin(t, bin, "", "--data-dir", fresh, "backup", "restore", id, "--force", "--backup-dir", backups)

	// A modified blob fails verify, naming the file.
	blob := filepath.Join(backups, id, "blobs", "000001")
	b, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(blob, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = runBinErr(bin, "", "--data-dir", data, "backup", "verify", id, "--backup-dir", backups)
	if err == nil || !strings.Contains(out, "FAILED") || !strings.Contains(out, "store/tenant.db") {
		t.Fatalf("verify of a modified backup = %v, %s", err, out)
	}
	if _, errOut, err := runBinErr(bin, "", "--data-dir", fresh, "backup", "restore", id, "--force", "--backup-dir", backups); err == nil || !strings.Contains(errOut, "nothing was written") {
		t.Fatalf("restore of a modified backup = %v, %s", err, errOut)
	}
}
