package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/instance"
)

// run executes the real command tree in-process with an isolated
// environment (no config from the machine running the test).
func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	t.Setenv("CLAWHOLD_CONFIG", "")
	t.Setenv("CLAWHOLD_DATA_DIR", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	var out, errb bytes.Buffer
	cmd := newRoot(strings.NewReader(stdin), &out, &errb)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, stdin, args...)
	if err != nil {
		t.Fatalf("clawhold %s: %v\nstderr: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func newDataDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "data")
	mustRun(t, "", "--data-dir", d, "init")
	return d
}

func TestVersionJSON(t *testing.T) {
	var v struct{ Version, Go, OpenClaw string }
	if err := json.Unmarshal([]byte(mustRun(t, "", "version", "--json")), &v); err != nil {
		t.Fatal(err)
	}
	if v.OpenClaw != "2026.9.6" || v.Go == "" {
		t.Fatalf("version = %+v", v)
	}
}

func TestInitWarnsAndCreatesPrivateFiles(t *testing.T) {
	d := filepath.Join(t.TempDir(), "data")
	out, errOut, err := run(t, "", "--data-dir", d, "init", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "WARNING: generated a LOCAL root key") || !strings.Contains(errOut, "KMS") {
		t.Fatalf("no loud root key warning on stderr: %q", errOut)
	}
	var res struct {
		CreatedRootKey string `json:"created_root_key"`
		Provider       struct {
			Command string
			Args    []string
		} `json:"openclaw_secrets_provider"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(res.Provider.Command) || !strings.Contains(strings.Join(res.Provider.Args, " "), "--data-dir "+d+" secrets provider --tenant default") {
		t.Fatalf("provider block = %+v", res.Provider)
	}
	for _, p := range []string{d, filepath.Join(d, "root.key"), filepath.Join(d, "system.db"), filepath.Join(d, "tenants"), filepath.Join(d, "tenants", "default.db")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is mode %04o", p, fi.Mode().Perm())
		}
	}
	// A second init keeps the key and warns no more.
	_, errOut, err = run(t, "", "--data-dir", d, "init")
	if err != nil || strings.Contains(errOut, "generated") {
		t.Fatalf("second init: %v %q", err, errOut)
	}
}

func TestRefusesUnsafePermissions(t *testing.T) {
	d := newDataDir(t)
	os.Chmod(d, 0o755)
	_, _, err := run(t, "", "--data-dir", d, "secrets", "list")
	if err == nil || !strings.Contains(err.Error(), "chmod 700 "+d) {
		t.Fatalf("world-readable data dir: %v", err)
	}
	os.Chmod(d, 0o700)
	key := filepath.Join(d, "root.key")
	os.Chmod(key, 0o644)
	_, _, err = run(t, "", "--data-dir", d, "secrets", "list")
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable root key: %v", err)
	}
	os.Chmod(key, 0o600)
	mustRun(t, "", "--data-dir", d, "secrets", "list")
}

func TestConfigErrorsNameFileLineAndFix(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		want []string
	}{
		{"keys:\n  max_age: 60d\n  rotate_afterr: 10d\n", []string{":3", `"keys.rotate_afterr"`, `(did you mean "keys.rotate_after"?)`}},
		{"keys:\n  max_age: 120d\n", []string{":2", "keys.max_age", "90d"}},
		{"root_key:\n  backend: filee\n", []string{":2", "root_key.backend", "vault-transit"}},
	} {
		cfg := filepath.Join(t.TempDir(), "clawhold.yaml")
		os.WriteFile(cfg, []byte(tt.yaml), 0o600)
		_, _, err := run(t, "", "--config", cfg, "--data-dir", filepath.Join(t.TempDir(), "d"), "init")
		if err == nil {
			t.Fatalf("bad config accepted: %q", tt.yaml)
		}
		for _, want := range append(tt.want, cfg) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("config error lacks %q:\n%s", want, err)
			}
		}
	}
}

func TestSecretsLifecycleNeverLeaksValues(t *testing.T) {
	d := newDataDir(t)
	const value = "sk-live-SECRET-VALUE-0123456789"
	mustRun(t, value+"\n", "--data-dir", d, "secrets", "set", "models/providers/openai/apiKey")
	for _, args := range [][]string{
		{"secrets", "list"},
		{"secrets", "list", "--json"},
		{"secrets", "get", "models/providers/openai/apiKey"},
		{"secrets", "get", "models/providers/openai/apiKey", "--json"},
		{"keys", "status"},
		{"keys", "status", "--json"},
	} {
		out := mustRun(t, "", append([]string{"--data-dir", d}, args...)...)
		if strings.Contains(out, value) {
			t.Fatalf("%v printed the secret value", args)
		}
		if strings.HasSuffix(strings.Join(args, " "), "--json") && !json.Valid([]byte(out)) {
			t.Fatalf("%v --json is not JSON: %q", args, out)
		}
	}
	if out := mustRun(t, "", "--data-dir", d, "secrets", "get", "models/providers/openai/apiKey", "--reveal"); out != value {
		t.Fatalf("--reveal printed %d bytes, not the stored value", len(out))
	}
	// The value never reaches the database in plaintext.
	for _, f := range []string{"system.db", "tenants/default.db", "tenants/default.db-wal"} {
		b, _ := os.ReadFile(filepath.Join(d, f))
		if bytes.Contains(b, []byte(value)) {
			t.Fatalf("%s holds the plaintext", f)
		}
	}
	// Reads are events: who, when, which id.
	in, err := instance.Open(context.Background(), instance.Options{DataDir: d})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	db, _ := in.DB(context.Background(), "default")
	evs, err := events.List(context.Background(), db, events.Filter{Type: events.SecretRead})
	if err != nil || len(evs) != 1 || evs[0].Subject != "models/providers/openai/apiKey" || !strings.HasPrefix(evs[0].Actor, "cli:") {
		t.Fatalf("read events = %+v, %v", evs, err)
	}
	mustRun(t, "", "--data-dir", d, "secrets", "rm", "models/providers/openai/apiKey")
	if _, _, err := run(t, "", "--data-dir", d, "secrets", "get", "models/providers/openai/apiKey", "--reveal"); err == nil {
		t.Fatal("removed secret still readable")
	}
	// Values never come from argv: set takes exactly one argument.
	if _, _, err := run(t, "", "--data-dir", d, "secrets", "set", "x", value); err == nil {
		t.Fatal("set accepted a value on the command line")
	}
	// Unknown tenants are not created by reads.
	if _, _, err := run(t, "", "--data-dir", d, "secrets", "list", "--tenant", "typo"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("list of an unknown tenant: %v", err)
	}
}

func TestTenantsAreSeparate(t *testing.T) {
	d := newDataDir(t)
	mustRun(t, "acme-key", "--data-dir", d, "secrets", "set", "--tenant", "acme", "k")
	mustRun(t, "globex-key", "--data-dir", d, "secrets", "set", "--tenant", "globex", "k")
	if got := mustRun(t, "", "--data-dir", d, "secrets", "get", "--tenant", "acme", "k", "--reveal"); got != "acme-key" {
		t.Fatalf("acme reads %q", got)
	}
	if got := mustRun(t, "", "--data-dir", d, "secrets", "get", "--tenant", "globex", "k", "--reveal"); got != "globex-key" {
		t.Fatalf("globex reads %q", got)
	}
	// Each tenant is one file: copying acme's row into globex's file fails to open.
	for _, f := range []string{"acme.db", "globex.db"} {
		if _, err := os.Stat(filepath.Join(d, "tenants", f)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKeysCommands(t *testing.T) {
	d := newDataDir(t)
	mustRun(t, "v", "--data-dir", d, "secrets", "set", "a")
	if _, _, err := run(t, "", "--data-dir", d, "keys", "rotate"); err == nil {
		t.Fatal("rotate without --tenant or --all")
	}
	mustRun(t, "", "--data-dir", d, "keys", "rotate", "--tenant", "default")
	var st struct {
		Keyrings []struct {
			Keyring  string
			Active   uint32 `json:"active_version"`
			Versions []struct {
				Version uint32
				State   string
				Records int64
			}
		}
	}
	json.Unmarshal([]byte(mustRun(t, "", "--data-dir", d, "keys", "status", "--tenant", "default", "--json")), &st)
	if st.Keyrings[0].Active != 2 || st.Keyrings[0].Versions[1].Records != 1 || st.Keyrings[0].Versions[1].State != "deactivated" {
		t.Fatalf("after rotate: %+v", st)
	}
	if _, _, err := run(t, "", "--data-dir", d, "keys", "retire", "--tenant", "default", "1"); err == nil || !strings.Contains(err.Error(), "rewrap") {
		t.Fatalf("retire with data: %v", err)
	}
	out := mustRun(t, "", "--data-dir", d, "keys", "rewrap")
	if !strings.Contains(out, "tenant:default: rewrapped 1") {
		t.Fatalf("rewrap: %q", out)
	}
	mustRun(t, "", "--data-dir", d, "keys", "retire", "--tenant", "default", "v1")
	if got := mustRun(t, "", "--data-dir", d, "secrets", "get", "a", "--reveal"); got != "v" {
		t.Fatal("secret lost by rotate/rewrap/retire")
	}
	out = mustRun(t, "", "--data-dir", d, "keys", "maintain", "--json")
	if !json.Valid([]byte(out)) {
		t.Fatalf("maintain --json: %q", out)
	}
}

func TestProviderProtocol(t *testing.T) {
	d := newDataDir(t)
	mustRun(t, "tok-0123456789abcdef", "--data-dir", d, "secrets", "set", "gateway/auth/token")
	out := mustRun(t, `{"protocolVersion":1,"provider":"clawhold","ids":["gateway/auth/token","missing/one"]}`,
		"--data-dir", d, "secrets", "provider")
	want := `{"protocolVersion":1,"values":{"gateway/auth/token":"tok-0123456789abcdef"},"errors":{"missing/one":{"code":"NOT_FOUND"}}}` + "\n"
	if out != want {
		t.Fatalf("provider answered %q", out)
	}
	if _, _, err := run(t, `{"protocolVersion":2,"ids":[]}`, "--data-dir", d, "secrets", "provider"); err == nil {
		t.Fatal("protocol version 2 accepted")
	}
}

func TestImportOpenClawConfig(t *testing.T) {
	d := newDataDir(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "openclaw.json")
	orig := `{
  // JSON5, as OpenClaw writes it
  gateway: { mode: "local", auth: { mode: "token", token: "plain-gateway-token-0123456789" } },
  models: { providers: { openai: { baseUrl: "https://api.openai.com/v1", apiKey: "sk-plain-openai-key", models: [], } } },
  hooks: { enabled: true, token: "plain-hooks-token-0123456789" },
}`
	os.WriteFile(cfg, []byte(orig), 0o644)
	out := mustRun(t, "", "--data-dir", d, "secrets", "import", cfg, "--json")
	var rep struct {
		Imported    []struct{ Name string }
		Unsupported []struct{ Path string }
		Backup      string
		AddedAlias  string `json:"added_provider"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Imported) != 2 || len(rep.Unsupported) != 1 || rep.Unsupported[0].Path != "hooks.token" || rep.AddedAlias != "clawhold" {
		t.Fatalf("import report: %s", out)
	}
	rewritten, _ := os.ReadFile(cfg)
	for _, v := range []string{"plain-gateway-token-0123456789", "sk-plain-openai-key"} {
		if bytes.Contains(rewritten, []byte(v)) {
			t.Fatalf("rewritten config still holds an imported value")
		}
	}
	var parsed map[string]any
	if err := json.Unmarshal(rewritten, &parsed); err != nil {
		t.Fatal(err)
	}
	ref := parsed["gateway"].(map[string]any)["auth"].(map[string]any)["token"].(map[string]any)
	if ref["source"] != "exec" || ref["provider"] != "clawhold" || ref["id"] != "gateway/auth/token" {
		t.Fatalf("token ref = %v", ref)
	}
	if parsed["secrets"].(map[string]any)["providers"].(map[string]any)["clawhold"] == nil {
		t.Fatal("provider block not added")
	}
	for _, f := range []string{cfg, rep.Backup} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi.Mode(), err)
		}
	}
	if b, _ := os.ReadFile(rep.Backup); string(b) != orig {
		t.Fatal("backup differs from the original")
	}
	if got := mustRun(t, "", "--data-dir", d, "secrets", "get", "models/providers/openai/apiKey", "--reveal"); got != "sk-plain-openai-key" {
		t.Fatal("imported value does not read back")
	}
}

// Rotating the local root key: a new key file is generated where the new
// configuration points, every keyring moves to it, data still reads, and
// the old key no longer opens anything.
func TestRewrapRootRotatesLocalRootKey(t *testing.T) {
	d := newDataDir(t)
	mustRun(t, "value-1", "--data-dir", d, "secrets", "set", "a")
	mustRun(t, "value-2", "--data-dir", d, "secrets", "set", "--tenant", "acme", "b")
	cfgDir := t.TempDir()
	oldCfg := filepath.Join(cfgDir, "old.yaml")
	newCfg := filepath.Join(cfgDir, "new.yaml")
	newKey := filepath.Join(d, "root-2.key")
	os.WriteFile(oldCfg, []byte("root_key:\n  backend: file\n"), 0o600)
	os.WriteFile(newCfg, []byte("root_key:\n  backend: file\n  file: "+newKey+"\n"), 0o600)

	if _, _, err := run(t, "", "--data-dir", d, "keys", "rewrap-root", "--old-config", oldCfg); err == nil || !strings.Contains(err.Error(), "same root key") {
		t.Fatalf("rewrap-root onto the same root: %v", err)
	}
	out := mustRun(t, "", "--data-dir", d, "--config", newCfg, "keys", "rewrap-root", "--old-config", oldCfg, "--json")
	var res struct {
		To       string
		Keyrings []struct {
			Keyring  string
			Versions int `json:"rewrapped_versions"`
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(res.To, "file:"+newKey+"#") || len(res.Keyrings) != 3 {
		t.Fatalf("rewrap-root result: %s", out)
	}
	for _, k := range res.Keyrings {
		if k.Versions != 1 {
			t.Fatalf("%s: %d versions re-wrapped, want 1", k.Keyring, k.Versions)
		}
	}
	if fi, err := os.Stat(newKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new root key file: %v", err)
	}
	if got := mustRun(t, "", "--data-dir", d, "--config", newCfg, "secrets", "get", "a", "--reveal"); got != "value-1" {
		t.Fatal("secret unreadable under the new root key")
	}
	if got := mustRun(t, "", "--data-dir", d, "--config", newCfg, "secrets", "get", "--tenant", "acme", "b", "--reveal"); got != "value-2" {
		t.Fatal("tenant secret unreadable under the new root key")
	}
	if _, _, err := run(t, "", "--data-dir", d, "secrets", "get", "a", "--reveal"); err == nil {
		t.Fatal("the old root key still opens the data")
	}
	// Repeating the move is harmless.
	mustRun(t, "", "--data-dir", d, "--config", newCfg, "keys", "rewrap-root", "--old-config", oldCfg)
}

// A command on a data dir that was never initialised says so and leaves
// nothing behind (a typo in --data-dir must not create directories).
func TestNotInitializedCreatesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "typo", "data")
	for _, args := range [][]string{{"secrets", "list"}, {"logs", "query"}, {"baselines", "show"}} {
		_, _, err := run(t, "", append([]string{"--data-dir", dir}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "not initialized") {
			t.Errorf("%v: %v, want not initialized", args, err)
		}
		if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v created %s: %v", args, filepath.Dir(dir), err)
		}
	}
}
