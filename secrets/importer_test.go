package secrets

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/titanous/json5"
)

func TestParseDotEnv(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "import", "dotenv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseDotEnv(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, value string }{
		{"ANTHROPIC_API_KEY", "sk-ant-TESTONLY-2"},
		{"MULTI", "line1\nline2"},
		{"OPENAI_API_KEY", "sk-proj-TESTONLY-dotenv-1"},
		{"TELEGRAM_BOT_TOKEN", "123:ABC-TESTONLY"},
		{"YAML_STYLE", "yaml-TESTONLY-3"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d secrets, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Name != w.name || g.Source != ".env:"+w.name {
			t.Errorf("secret %d: name %q source %q, want %q", i, g.Name, g.Source, w.name)
		}
		if string(g.Value) != w.value {
			t.Errorf("secret %s: value %s, want %s", w.name, fingerprint(g.Value), fingerprint([]byte(w.value)))
		}
	}
}

func TestParseDotEnvErrors(t *testing.T) {
	const leak = "LEAKCHECK"
	tests := []struct {
		name    string
		src     string
		wantMsg string // in the error
	}{
		{"invalid name", "A=1\n_PRIVATE=sk-" + leak + "\n", `variable "_PRIVATE" (line 2)`},
		{"invalid name crlf", "A=1\r\n\r\nexport .hidden=sk-" + leak + "\r\n", `(line 3)`},
		{"value without name", "A=1\n# c\nsk-" + leak + "-abc\n", "line 3"},
		{"unterminated quote", "A=1\nB=\"sk-" + leak + "\nC=2\n", "line 2: unterminated quoted value"},
		{"space in name", "A B=sk-" + leak + "\n", "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseDotEnv(strings.NewReader(tt.src))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, leak) {
				t.Fatalf("error quotes a value (%d bytes of message)", len(msg))
			}
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q lacks %q", msg, tt.wantMsg)
			}
		})
	}
}

func TestParseDotEnvTooLarge(t *testing.T) {
	if _, err := ParseDotEnv(bytes.NewReader(make([]byte, maxImportBytes+1))); err == nil {
		t.Error("no error for an oversized file")
	}
}

// at returns the value at a slash-separated path in a decoded JSON tree.
func at(t *testing.T, root any, path string) any {
	t.Helper()
	v := root
	for _, k := range strings.Split(path, "/") {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: %q is not inside an object", path, k)
		}
		if v, ok = m[k]; !ok {
			t.Fatalf("%s: no %q", path, k)
		}
	}
	return v
}

func TestExtractOpenClaw(t *testing.T) {
	config, err := os.ReadFile(filepath.Join("testdata", "import", "openclaw.json5"))
	if err != nil {
		t.Fatal(err)
	}
	found, rewritten, unsupported, err := ExtractOpenClaw(config, "clawhold")
	if err != nil {
		t.Fatal(err)
	}

	want := []struct{ name, value string }{
		{"channels/telegram/accounts/main/botToken", "123456789:AAF-TESTONLY-telegram-main"},
		{"gateway/auth/password", "local-bypass-TESTONLY-77x"},
		{"gateway/auth/token", "oc-gw-TESTONLY-3f9a1c7e5b2d4f60a8e1"},
		{"models/providers/local/headers/Authorization", "Bearer lm-TESTONLY-local-9c8b7a"},
		{"models/providers/openai/apiKey", "sk-proj-TESTONLY-4n8v2q6x0z3b7d1f5h9k"},
	}
	if len(found) != len(want) {
		names := make([]string, len(found))
		for i, f := range found {
			names[i] = f.Name
		}
		t.Fatalf("found %q, want %d secrets", names, len(want))
	}
	for i, w := range want {
		f := found[i]
		wantSource := "openclaw.json:" + strings.ReplaceAll(w.name, "/", ".")
		if f.Name != w.name || f.Source != wantSource {
			t.Errorf("found[%d] = %q from %q, want %q from %q", i, f.Name, f.Source, w.name, wantSource)
		}
		if err := ValidName(f.Name); err != nil {
			t.Errorf("found[%d]: %v", i, err)
		}
		if string(f.Value) != w.value {
			t.Errorf("found[%d] value: got %s, want %s", i, fingerprint(f.Value), fingerprint([]byte(w.value)))
		}
		if bytes.Contains(rewritten, f.Value) {
			t.Errorf("rewritten config still holds the value of %s", f.Name)
		}
	}
	if want := []Unsupported{{Path: "hooks.token"}}; len(unsupported) != 1 || unsupported[0].Path != want[0].Path || unsupported[0].Reason == "" {
		t.Errorf("unsupported = %+v, want hooks.token with a reason", unsupported)
	}

	// The rewritten config is plain JSON (so also JSON5) and every imported
	// field is now an exec SecretRef.
	var root any
	d := json.NewDecoder(bytes.NewReader(rewritten))
	d.UseNumber()
	if err := d.Decode(&root); err != nil {
		t.Fatalf("rewritten config is not JSON: %v", err)
	}
	var root5 any
	if err := json5.Unmarshal(rewritten, &root5); err != nil {
		t.Fatalf("rewritten config is not JSON5: %v", err)
	}
	for _, w := range want {
		ref, ok := at(t, root, w.name).(map[string]any)
		wantRef := map[string]any{"source": "exec", "provider": "clawhold", "id": w.name}
		if !ok || len(ref) != 3 || ref["source"] != "exec" || ref["provider"] != "clawhold" || ref["id"] != w.name {
			t.Errorf("%s = %v, want %v", w.name, ref, wantRef)
		}
	}

	// Everything else is as it was.
	for path, want := range map[string]any{
		"gateway/remote/token":                      "${OPENCLAW_REMOTE_TOKEN}",
		"models/providers/local/request/auth/token": "$LOCAL_LLM_TOKEN",
		"channels/discord/token":                    "__OPENCLAW_REDACTED__",
		"hooks/token":                               "hooks-TESTONLY-shared-secret-51b0", // unsupported: left in place
		"gateway/port":                              json.Number("18789"),
		"gateway/auth/mode":                         "token",
	} {
		if got := at(t, root, path); got != want {
			t.Errorf("%s changed", path)
		}
	}
	if got := at(t, root, "models/providers/anthropic/apiKey"); !equalJSON(got, map[string]any{
		"source": "exec", "provider": "clawhold", "id": "models/providers/anthropic/apiKey"}) {
		t.Errorf("existing SecretRef changed: %v", got)
	}
	if got := at(t, root, "channels/telegram/accounts/alerts/botToken"); !equalJSON(got, map[string]any{
		"source": "env", "provider": "default", "id": "TELEGRAM_ALERTS_TOKEN"}) {
		t.Errorf("existing env SecretRef changed: %v", got)
	}
	if got := at(t, root, "channels/telegram/accounts/main/allowFrom"); !equalJSON(got, []any{json.Number("123456789012345678901")}) {
		t.Errorf("large integer changed: %v", got)
	}
	if got := at(t, root, "secrets/providers/clawhold/args"); !equalJSON(got, []any{"secrets", "provider"}) {
		t.Errorf("provider args changed: %v", got)
	}

	// Running again finds nothing more and leaves the file alone.
	found2, rewritten2, unsupported2, err := ExtractOpenClaw(rewritten, "clawhold")
	if err != nil {
		t.Fatal(err)
	}
	if len(found2) != 0 || rewritten2 != nil || len(unsupported2) != 1 {
		t.Errorf("second run: %d found, rewritten %d bytes, %d unsupported; want 0, nil, 1", len(found2), len(rewritten2), len(unsupported2))
	}
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
}

func TestExtractOpenClawPaths(t *testing.T) {
	config := `{
		gateway: { remote: { token: "t1", password: "p1" }, auth: { token: "" } },
		models: { providers: {
			x: { request: { auth: { token: "t2", value: "v2" }, headers: { "X-Api-Key": "h1" } } },
			"bad name": { apiKey: "k1" },
			"a/b": { apiKey: "k2" },
			a: { "b/apiKey": "not a credential path" },
		} },
		channels: {
			slack: { botToken: "s1", appToken: "s2", userToken: "s3", signingSecret: "s4",
				accounts: { work: { botToken: "s5" } } },
			matrix: { accessToken: "m1", password: "m2" },
			mattermost: { botToken: "mm1" },
			msteams: { appPassword: "ms1" },
			feishu: { appSecret: "f1", encryptKey: "f2", verificationToken: "f3" },
			discord: { token: "d1", threadBindings: { webhookToken: "d2" }, accounts: { b: { token: "d3" } } },
			telegram: { webhookSecret: "tg1", name: "not a credential" },
		},
		skills: { entries: { weather: { apiKey: "sk1" } } },
		memory: { search: { remote: { apiKey: "mem1" } } },
		agents: { entries: { ops: { memory: { search: { remote: { apiKey: "mem2" } } } } } },
		cron: { webhookToken: "cron1" },
		plugins: { entries: { brave: { config: { webSearch: { apiKey: "brave1" } } } } },
		hooks: { gmail: { pushToken: "g1" }, mappings: [ { sessionKey: "sk" }, { sessionKey: "$HOOK_KEY" } ] },
		apiKey: "top-level key is not a credential path",
	}`
	found, _, unsupported, err := ExtractOpenClaw([]byte(config), "vault-1")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range found {
		names = append(names, f.Name)
	}
	wantNames := []string{
		"agents/entries/ops/memory/search/remote/apiKey",
		"channels/discord/accounts/b/token",
		"channels/discord/token",
		"channels/feishu/appSecret",
		"channels/feishu/encryptKey",
		"channels/feishu/verificationToken",
		"channels/matrix/accessToken",
		"channels/matrix/password",
		"channels/mattermost/botToken",
		"channels/msteams/appPassword",
		"channels/slack/accounts/work/botToken",
		"channels/slack/appToken",
		"channels/slack/botToken",
		"channels/slack/signingSecret",
		"channels/slack/userToken",
		"channels/telegram/webhookSecret",
		"cron/webhookToken",
		"gateway/remote/password",
		"gateway/remote/token",
		"memory/search/remote/apiKey",
		"models/providers/a/b/apiKey",
		"models/providers/x/request/auth/token",
		"models/providers/x/request/auth/value",
		"models/providers/x/request/headers/X-Api-Key",
		"plugins/entries/brave/config/webSearch/apiKey",
		"skills/entries/weather/apiKey",
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("found\n%q\nwant\n%q", names, wantNames)
	}
	var paths []string
	for _, u := range unsupported {
		paths = append(paths, u.Path)
	}
	wantPaths := []string{
		"channels.discord.threadBindings.webhookToken",
		"hooks.gmail.pushToken",
		"hooks.mappings[0].sessionKey",
		"models.providers.bad name.apiKey",
	}
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("unsupported\n%q\nwant\n%q", paths, wantPaths)
	}
}

func TestExtractOpenClawNameCollision(t *testing.T) {
	// A header named apiKey of provider x, and the apiKey of a provider named
	// "x/headers", both make models/providers/x/headers/apiKey. The first in
	// sorted key order is imported, the other reported.
	config := `{ models: { providers: { "x/headers": { apiKey: "k1" }, x: { headers: { apiKey: "k2" } } } } }`
	found, rewritten, unsupported, err := ExtractOpenClaw([]byte(config), "p")
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Source != "openclaw.json:models.providers.x.headers.apiKey" {
		t.Errorf("found %+v", found)
	}
	if len(unsupported) != 1 || unsupported[0].Path != "models.providers.x/headers.apiKey" {
		t.Errorf("unsupported = %+v", unsupported)
	}
	if !bytes.Contains(rewritten, []byte(`"k1"`)) || bytes.Contains(rewritten, []byte(`"k2"`)) {
		t.Error("wrong value replaced")
	}
}

func TestExtractOpenClawErrors(t *testing.T) {
	const leak = "LEAKCHECK"
	tests := []struct {
		name    string
		config  string
		alias   string
		wantMsg string
	}{
		{"bad alias", `{}`, "Bad Alias", "provider alias"},
		{"syntax", "{\n  gateway: { auth: { token: \"sk-" + leak + "\" x } },\n}", "p", "line 2"},
		{"unquoted value", "{ gateway: { auth: { token: sk-" + leak + " } } }", "p", "line 1"},
		{"trailing data", `{ a: 1 } sk-` + leak, "p", "syntax error"},
		{"not an object", `["sk-` + leak + `"]`, "p", "not an object"},
		{"empty", ``, "p", "JSON5"},
		{"infinity", `{ a: { b: Infinity } }`, "p", "a.b"},
		{"nan", `{ a: [NaN] }`, "p", "a[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := ExtractOpenClaw([]byte(tt.config), tt.alias)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if strings.Contains(msg, leak) {
				t.Fatalf("error quotes the config (%d bytes of message)", len(msg))
			}
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q lacks %q", msg, tt.wantMsg)
			}
		})
	}
}

func TestExtractOpenClawNothingFound(t *testing.T) {
	found, rewritten, unsupported, err := ExtractOpenClaw([]byte(`// nothing here
		{ gateway: { auth: { mode: "trusted-proxy" } }, }`), "p")
	if err != nil || found != nil || rewritten != nil || unsupported != nil {
		t.Errorf("got %v, %d bytes, %v, %v; want nothing", found, len(rewritten), unsupported, err)
	}
}

func TestJSONNumber(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"0", "0"},
		{"-12", "-12"},
		{"+1", "1"},
		{".5", "0.5"},
		{"-.5", "-0.5"},
		{"5.", "5"},
		{"5.e3", "5e3"},
		{"1.5E-3", "1.5e-3"},
		{"0x1F", "31"},
		{"-0X10", "-16"},
		{"0xFFFFFFFFFFFFFFFFFF", "4722366482869645213695"},
		{"123456789012345678901", "123456789012345678901"},
	}
	for _, tt := range tests {
		got, err := jsonNumber(tt.in)
		if err != nil || string(got) != tt.want {
			t.Errorf("jsonNumber(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestIsPlaintext(t *testing.T) {
	tests := []struct {
		s    string
		want bool
	}{
		{"sk-abc", true},
		{"$", true},
		{"$lower", true},
		{"pa$$word", true},
		{"${", true},
		{"${not-env}", true},
		{"", false},
		{"__OPENCLAW_REDACTED__", false},
		{"$OPENAI_API_KEY", false},
		{"${OPENAI_API_KEY}", false},
		{"Bearer ${TOKEN}", false},
	}
	for _, tt := range tests {
		if got := isPlaintext(tt.s); got != tt.want {
			t.Errorf("isPlaintext(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

func FuzzExtractOpenClaw(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "import", "openclaw.json5")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{gateway:{auth:{token:'t',},},models:{providers:{a:{apiKey:"k",headers:{h:"v"}}}},n:[0x1F,+.5,5.]}`))
	f.Add([]byte(`{hooks:{token:"x",mappings:[{sessionKey:"y"}]}} // c`))
	f.Fuzz(func(t *testing.T, config []byte) {
		found, rewritten, _, err := ExtractOpenClaw(config, "p")
		if err != nil || rewritten == nil {
			if rewritten != nil || found != nil {
				t.Fatalf("error or nothing found, yet %d found and %d bytes rewritten", len(found), len(rewritten))
			}
			return
		}
		if !json.Valid(rewritten) {
			t.Fatalf("rewritten config is not JSON (%s)", fingerprint(rewritten))
		}
		found2, rewritten2, _, err := ExtractOpenClaw(rewritten, "p")
		if err != nil || len(found2) != 0 || rewritten2 != nil {
			t.Fatalf("second run: %d found, %d bytes rewritten, err %v", len(found2), len(rewritten2), err)
		}
	})
}
