package cell

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/clawhold/clawhold/cell/plugin"
	"github.com/clawhold/clawhold/frontdoor/proxy"
)

const testPublicURL = "https://claw.example.com"

func testInput(l Layout, members []Member, overlays ...map[string]any) ConfigInput {
	return ConfigInput{
		Layout:    l,
		Members:   members,
		PublicURL: testPublicURL,
		Exe:       "/usr/local/bin/clawhold",
		PluginDir: l.PluginDir,
		Plugin:    plugin.Config(l.PluginDir, l.CellSocket()),
		Overlays:  overlays,
	}
}

// get walks cfg along the dotted path; ok is false when a step is missing
// or not an object.
func get(cfg map[string]any, dotted string) (any, bool) {
	var v any = cfg
	for _, k := range strings.Split(dotted, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func mustGet(t *testing.T, cfg map[string]any, dotted string) any {
	t.Helper()
	v, ok := get(cfg, dotted)
	if !ok {
		t.Fatalf("generated config has no %s", dotted)
	}
	return v
}

// strs converts a []any or []string of strings to []string.
func strs(t *testing.T, v any) []string {
	t.Helper()
	switch v := v.(type) {
	case []string:
		return v
	case []any:
		out := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				t.Fatalf("element %d is %T, not a string", i, e)
			}
			out[i] = s
		}
		return out
	}
	t.Fatalf("%T is not a list of strings", v)
	return nil
}

// roundTrip returns cfg as OpenClaw reads it (JSON numbers, []any, ...).
func roundTrip(t *testing.T, cfg map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGenerateMembers(t *testing.T) {
	l := NewLayout(t.TempDir(), "acme")
	tests := []struct {
		name      string
		members   []Member
		wantUsers []string
		wantErr   string
	}{
		{
			name:      "one of each role, unsorted",
			members:   []Member{{"zoe", proxy.RoleViewer}, {"alice", proxy.RoleAdmin}, {"mallory", proxy.RoleOperator}},
			wantUsers: []string{"alice", "mallory", "zoe"},
		},
		{
			name:      "single viewer",
			members:   []Member{{"bob", proxy.RoleViewer}},
			wantUsers: []string{"bob"},
		},
		{
			name:      "no members: placeholder, never an empty allowlist",
			members:   nil,
			wantUsers: []string{"-no-users-"},
		},
		{
			name:    "unknown role",
			members: []Member{{"alice", proxy.RoleAdmin}, {"eve", "superuser"}},
			wantErr: `unknown role "superuser"`,
		},
		{
			name:    "empty role",
			members: []Member{{"eve", ""}},
			wantErr: `unknown role ""`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Generate(testInput(l, tt.members))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Generate error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg = roundTrip(t, cfg)
			users := strs(t, mustGet(t, cfg, "gateway.auth.trustedProxy.allowUsers"))
			if !slices.Equal(users, tt.wantUsers) {
				t.Errorf("allowUsers = %q, want %q", users, tt.wantUsers)
			}
			if len(users) == 0 {
				t.Error("allowUsers is empty: the gateway would admit any proxied user")
			}
			scopes, ok := mustGet(t, cfg, "gateway.auth.identityScopes").(map[string]any)
			if !ok {
				t.Fatalf("identityScopes is %T", mustGet(t, cfg, "gateway.auth.identityScopes"))
			}
			if len(scopes) != len(tt.members) {
				t.Errorf("identityScopes has %d users, want %d: %v", len(scopes), len(tt.members), scopes)
			}
			for _, m := range tt.members {
				want, _ := proxy.ScopesForRole(m.Role)
				got, ok := scopes[m.Name]
				if !ok {
					t.Errorf("identityScopes has no entry for %s", m.Name)
					continue
				}
				if g := strs(t, got); !slices.Equal(g, want) {
					t.Errorf("identityScopes[%s] = %q, want %q (role %s)", m.Name, g, want, m.Role)
				}
			}
			if got := mustGet(t, cfg, "gateway.auth.trustedProxy.userHeader"); got != UserHeader {
				t.Errorf("userHeader = %v, want %s", got, UserHeader)
			}
		})
	}
}

func TestGenerateRefusesOwnedKeys(t *testing.T) {
	l := NewLayout(t.TempDir(), "acme")
	members := []Member{{"alice", proxy.RoleAdmin}}
	for _, k := range ownedKeys {
		dotted := strings.Join(k, ".")
		for _, v := range []any{"x", map[string]any{}, map[string]any{"nested": true}} {
			t.Run(fmt.Sprintf("%s=%T", dotted, v), func(t *testing.T) {
				o := map[string]any{"agents": map[string]any{}}
				setPath(o, v, k...)
				cfg, err := Generate(testInput(l, members, o))
				if err == nil {
					t.Fatalf("overlay setting %s accepted; config: %v", dotted, cfg)
				}
				if !strings.Contains(err.Error(), " "+dotted+",") {
					t.Errorf("error %q does not name %s", err, dotted)
				}
				if !strings.Contains(err.Error(), "overlay 1 ") {
					t.Errorf("error %q does not number the overlay", err)
				}
			})
		}
		t.Run(dotted+" in the second overlay", func(t *testing.T) {
			o := map[string]any{}
			setPath(o, "x", k...)
			_, err := Generate(testInput(l, members, map[string]any{"tools": map[string]any{}}, o))
			if err == nil || !strings.Contains(err.Error(), "overlay 2 sets "+dotted) {
				t.Errorf("error %v, want overlay 2 sets %s", err, dotted)
			}
		})
	}
	// Deeper keys under an owned key are refused by its prefix.
	for _, tt := range []struct {
		overlay map[string]any
		named   string
	}{
		{map[string]any{"gateway": map[string]any{"auth": map[string]any{"mode": "none"}}}, "gateway.auth"},
		{map[string]any{"gateway": map[string]any{"auth": map[string]any{"trustedProxy": map[string]any{"allowUsers": []any{}}}}}, "gateway.auth"},
		{map[string]any{"gateway": map[string]any{"controlUi": map[string]any{"allowedOrigins": []any{"*"}}}}, "gateway.controlUi"},
		{map[string]any{"plugins": map[string]any{"entries": map[string]any{plugin.ID: map[string]any{"enabled": false}}}}, "plugins"},
		{map[string]any{"secrets": map[string]any{"providers": map[string]any{ProviderAlias: map[string]any{"command": "/bin/sh"}}}}, "secrets.providers." + ProviderAlias},
		{map[string]any{"security": map[string]any{"audit": map[string]any{"suppressions": []any{}}}}, "security.audit"},
	} {
		t.Run("deep "+tt.named, func(t *testing.T) {
			_, err := Generate(testInput(l, members, tt.overlay))
			if err == nil || !strings.Contains(err.Error(), " "+tt.named+",") {
				t.Errorf("error %v, want one naming %s", err, tt.named)
			}
		})
	}
	// Siblings of owned keys are not owned.
	for _, tt := range []map[string]any{
		{"secrets": map[string]any{"providers": map[string]any{"vault": map[string]any{"source": "env"}}}},
		{"security": map[string]any{"installPolicy": map[string]any{}}},
		{"gateway": map[string]any{"tools": map[string]any{}}},
	} {
		if _, err := Generate(testInput(l, members, tt)); err != nil {
			t.Errorf("overlay %v refused: %v", tt, err)
		}
	}
}

func TestGenerateOverlays(t *testing.T) {
	l := NewLayout(t.TempDir(), "acme")
	members := []Member{{"alice", proxy.RoleAdmin}}
	// Fresh maps for every Generate call: Generate writes into the
	// overlays it merges (see TestGenerateLeavesOverlaysAlone).
	base := func() map[string]any {
		return map[string]any{
			"models": map[string]any{"providers": map[string]any{"openai": map[string]any{
				"baseUrl": "https://api.openai.com/v1", "api": "openai-completions",
				"apiKey": map[string]any{"source": "exec", "provider": ProviderAlias, "id": "openai"},
			}}},
			"agents": map[string]any{"defaults": map[string]any{"model": "openai/gpt-x", "timeoutSeconds": 60}},
			"tools":  map[string]any{"profile": "coding"},
			"gateway": map[string]any{"http": map[string]any{"endpoints": map[string]any{
				"chatCompletions": map[string]any{"enabled": true},
			}}},
		}
	}
	tenant := func() map[string]any {
		return map[string]any{
			"agents": map[string]any{"defaults": map[string]any{"timeoutSeconds": 120}},
			"gateway": map[string]any{"http": map[string]any{"endpoints": map[string]any{
				"responses": map[string]any{"enabled": true},
			}}},
		}
	}
	tests := []struct {
		name     string
		overlays func() []map[string]any
		want     map[string]any // dotted path → value (after a JSON round trip)
	}{
		{
			name:     "no overlays",
			overlays: func() []map[string]any { return nil },
			want:     map[string]any{},
		},
		{
			name:     "base",
			overlays: func() []map[string]any { return []map[string]any{base()} },
			want: map[string]any{
				"models.providers.openai.baseUrl":                "https://api.openai.com/v1",
				"models.providers.openai.apiKey.provider":        ProviderAlias,
				"agents.defaults.model":                          "openai/gpt-x",
				"agents.defaults.timeoutSeconds":                 float64(60),
				"tools.profile":                                  "coding",
				"gateway.http.endpoints.chatCompletions.enabled": true,
			},
		},
		{
			name:     "base then tenant: later overlays win, nested objects merge",
			overlays: func() []map[string]any { return []map[string]any{base(), tenant()} },
			want: map[string]any{
				"models.providers.openai.baseUrl":                "https://api.openai.com/v1",
				"agents.defaults.model":                          "openai/gpt-x",
				"agents.defaults.timeoutSeconds":                 float64(120),
				"gateway.http.endpoints.chatCompletions.enabled": true,
				"gateway.http.endpoints.responses.enabled":       true,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Generate(testInput(l, members, tt.overlays()...))
			if err != nil {
				t.Fatal(err)
			}
			cfg = roundTrip(t, cfg)
			for path, want := range tt.want {
				if got := mustGet(t, cfg, path); !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %#v, want %#v", path, got, want)
				}
			}
			// clawhold's own gateway keys are there whatever the overlays.
			for path, want := range map[string]any{
				"gateway.mode":      "local",
				"gateway.bind":      "loopback",
				"gateway.port":      float64(GatewayPort),
				"gateway.auth.mode": "trusted-proxy",
			} {
				if got := mustGet(t, cfg, path); got != want {
					t.Errorf("%s = %#v, want %#v", path, got, want)
				}
			}
			if got := strs(t, mustGet(t, cfg, "gateway.trustedProxies")); !slices.Equal(got, []string{"127.0.0.1"}) {
				t.Errorf("gateway.trustedProxies = %q, want [127.0.0.1]", got)
			}
		})
	}
}

// Generate must not write into the overlays it is given: the manager
// regenerates the config every few seconds, and an overlay that came back
// holding clawhold's own gateway.* or secrets.providers.clawhold keys would
// be refused on the next call (and shared overlays would leak one tenant's
// allowUsers into another's input).
func TestGenerateLeavesOverlaysAlone(t *testing.T) {
	l := NewLayout(t.TempDir(), "acme")
	members := []Member{{"alice", proxy.RoleAdmin}}
	newOverlays := func() []map[string]any {
		return []map[string]any{
			{
				"gateway": map[string]any{"http": map[string]any{"endpoints": map[string]any{"chatCompletions": map[string]any{"enabled": true}}}},
				"secrets": map[string]any{"providers": map[string]any{"vault": map[string]any{"source": "env"}}},
				"agents":  map[string]any{"defaults": map[string]any{"model": "a"}},
			},
			{"agents": map[string]any{"defaults": map[string]any{"model": "b"}}},
		}
	}
	overlays := newOverlays()
	if _, err := Generate(testInput(l, members, overlays...)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(overlays, newOverlays()) {
		t.Errorf("Generate modified its overlays:\n got %v\nwant %v", overlays, newOverlays())
	}
	if _, err := Generate(testInput(l, members, overlays...)); err != nil {
		t.Errorf("second Generate with the same overlays: %v", err)
	}
}

func TestGenerateFixedKeys(t *testing.T) {
	l := NewLayout(t.TempDir(), "acme")
	cfg, err := Generate(testInput(l, []Member{{"alice", proxy.RoleOperator}}))
	if err != nil {
		t.Fatal(err)
	}
	cfg = roundTrip(t, cfg)
	tests := []struct {
		path  string
		check func(v any) error
	}{
		{"proxy.proxyUrl", equals("http://127.0.0.1:3128")},
		{"proxy.enabled", equals(true)},
		{"logging.file", func(v any) error {
			s, _ := v.(string)
			if rel, err := filepath.Rel(l.Home, s); err != nil || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
				return fmt.Errorf("%q is not inside the cell's home %s", s, l.Home)
			}
			return nil
		}},
		{"secrets.providers.clawhold.command", equals(l.ProviderFile())},
		{"secrets.providers.clawhold.source", equals("exec")},
		{"secrets.providers.clawhold.jsonOnly", equals(true)},
		{"plugins.allow", func(v any) error {
			if l, ok := v.([]any); !ok || !slices.Contains(l, any(plugin.ID)) {
				return fmt.Errorf("%v does not contain %s", v, plugin.ID)
			}
			return nil
		}},
		{"plugins.entries." + plugin.ID + ".enabled", equals(true)},
		{"plugins.entries." + plugin.ID + ".config.socket", equals(l.CellSocket())},
		{"gateway.controlUi.allowedOrigins", equals([]any{testPublicURL})},
		{"discovery.mdns.mode", equals("off")},
		{"update.checkOnStart", equals(false)},
		{"gateway.auth.trustedProxy.allowLoopback", equals(true)},
		{"security.audit.suppressions", func(v any) error {
			l, _ := v.([]any)
			var ids []string
			for _, s := range l {
				m, _ := s.(map[string]any)
				if r, _ := m["reason"].(string); r == "" {
					return fmt.Errorf("suppression %v has no reason", m)
				}
				id, _ := m["checkId"].(string)
				ids = append(ids, id)
			}
			if want := []string{"gateway.trusted_proxy_auth", "gateway.trusted_proxy_allow_loopback"}; !slices.Equal(ids, want) {
				return fmt.Errorf("suppressed %q, want %q", ids, want)
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if err := tt.check(mustGet(t, cfg, tt.path)); err != nil {
				t.Error(err)
			}
		})
	}
}

func equals(want any) func(any) error {
	return func(v any) error {
		if !reflect.DeepEqual(v, want) {
			return fmt.Errorf("got %#v, want %#v", v, want)
		}
		return nil
	}
}

func TestWriteProvider(t *testing.T) {
	ids := IDs{os.Getuid(), os.Getgid()}
	tests := []struct {
		name    string
		dataDir string // relative to a temp dir
		exe     string
		wantErr bool
	}{
		{name: "plain", dataDir: "data", exe: "/usr/local/bin/clawhold"},
		{name: "spaces", dataDir: "my data", exe: "/opt/claw hold/clawhold"},
		{name: "quote in exe", dataDir: "data", exe: "/opt/it's/clawhold", wantErr: true},
		{name: "newline in exe", dataDir: "data", exe: "/opt/x\nrm -rf /", wantErr: true},
		{name: "quote in socket path", dataDir: "o'data", exe: "/usr/local/bin/clawhold", wantErr: true},
		{name: "newline in socket path", dataDir: "da\nta", exe: "/usr/local/bin/clawhold", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLayout(filepath.Join(t.TempDir(), tt.dataDir), "acme")
			if err := os.MkdirAll(l.BinDir, 0o755); err != nil {
				t.Fatal(err)
			}
			err := WriteProvider(l, ids, tt.exe)
			if tt.wantErr {
				if err == nil {
					b, _ := os.ReadFile(l.ProviderFile())
					t.Fatalf("WriteProvider accepted it and wrote:\n%s", b)
				}
				if _, serr := os.Stat(l.ProviderFile()); serr == nil {
					t.Error("a provider file was written despite the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(l.ProviderFile())
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o500 {
				t.Errorf("provider mode %v, want 0500", fi.Mode().Perm())
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != ids.UID || int(st.Gid) != ids.GID {
				t.Errorf("provider owned by %d:%d, want %d:%d", st.Uid, st.Gid, ids.UID, ids.GID)
			}
			b, err := os.ReadFile(l.ProviderFile())
			if err != nil {
				t.Fatal(err)
			}
			s := string(b)
			if !strings.HasPrefix(s, "#!/bin/sh\n") {
				t.Errorf("script does not start with #!/bin/sh:\n%s", s)
			}
			want := fmt.Sprintf("exec '%s' secrets provider --cell-socket '%s'\n", tt.exe, l.CellSocket())
			if !strings.HasSuffix(s, want) {
				t.Errorf("script:\n%s\nwant it to end with:\n%s", s, want)
			}
		})
	}
}

// The provider script, run by sh, passes its arguments through intact.
func TestWriteProviderRuns(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "fake clawhold")
	out := filepath.Join(dir, "args")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > '"+out+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := NewLayout(filepath.Join(dir, "data $HOME `x`"), "acme")
	if err := os.MkdirAll(l.BinDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteProvider(l, IDs{os.Getuid(), os.Getgid()}, exe); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(l.ProviderFile()).CombinedOutput(); err != nil {
		t.Fatalf("running the provider: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "secrets\nprovider\n--cell-socket\n" + l.CellSocket() + "\n"
	if string(b) != want {
		t.Errorf("provider passed %q, want %q", b, want)
	}
}

func TestWriteConfig(t *testing.T) {
	l := NewLayout(t.TempDir(), "acme")
	if err := os.MkdirAll(l.ConfigDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ids := IDs{os.Getuid(), os.Getgid()}
	for i, members := range [][]Member{
		{{"alice", proxy.RoleAdmin}},
		{{"alice", proxy.RoleViewer}, {"bob", proxy.RoleOperator}}, // rewrite in place
	} {
		cfg, err := Generate(testInput(l, members, map[string]any{"agents": map[string]any{"defaults": map[string]any{"model": "a/b"}}}))
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteConfig(l, ids, cfg); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		fi, err := os.Stat(l.ConfigFile())
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("write %d: mode %v, want 0600", i, fi.Mode().Perm())
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != ids.UID {
			t.Errorf("write %d: owned by uid %d, want %d", i, st.Uid, ids.UID)
		}
		b, err := os.ReadFile(l.ConfigFile())
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("write %d: not JSON: %v", i, err)
		}
		if want := roundTrip(t, cfg); !reflect.DeepEqual(got, want) {
			t.Errorf("write %d: file does not round-trip:\n got %v\nwant %v", i, got, want)
		}
		if !strings.HasSuffix(string(b), "}\n") {
			t.Errorf("write %d: file does not end with a newline", i)
		}
	}
	entries, _ := os.ReadDir(l.ConfigDir)
	if len(entries) != 1 {
		t.Errorf("config dir holds %d entries, want only openclaw.json (temporary files left?)", len(entries))
	}
}

func TestIDsFor(t *testing.T) {
	names := []string{"acme", "acme2", "bcme", "a", "b", "c", "tenant-1", "tenant-2", "tenant-10", "tenant-01"}
	for i := range 40 {
		names = append(names, fmt.Sprintf("t%d", i), fmt.Sprintf("org-%03d", i))
	}
	seen := map[int]string{}
	for _, n := range names {
		a, b := IDsFor(n), IDsFor(n)
		if a != b {
			t.Errorf("IDsFor(%q) not deterministic: %v then %v", n, a, b)
		}
		if os.Geteuid() != 0 {
			continue
		}
		if a.UID < uidBase || a.UID >= uidBase+0x1000_0000 {
			t.Errorf("IDsFor(%q).UID = %#x, outside [%#x, %#x)", n, a.UID, uidBase, uidBase+0x1000_0000)
		}
		if a.UID != a.GID {
			t.Errorf("IDsFor(%q) = %v: uid != gid", n, a)
		}
		if a.UID > 1<<31-1 {
			t.Errorf("IDsFor(%q).UID = %#x >= 2^31", n, a.UID)
		}
		if other, ok := seen[a.UID]; ok {
			t.Errorf("IDsFor(%q) and IDsFor(%q) share uid %#x", n, other, a.UID)
		}
		seen[a.UID] = n
	}
	if os.Geteuid() != 0 {
		ids := IDsFor("acme")
		if ids.UID != os.Getuid() && os.Getuid() != 0 {
			t.Errorf("unprivileged IDsFor = %v, want the caller's uid %d", ids, os.Getuid())
		}
		t.Log("not root: per-tenant uids not checked")
	}
}

func TestLayoutPrepare(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Layout.Prepare chowns to the cell's uid only as root")
	}
	ids := IDs{uidBase + 4242, uidBase + 4242}
	l := NewLayout(t.TempDir(), "acme")
	check := func(t *testing.T) {
		t.Helper()
		for _, tt := range []struct {
			path string
			mode os.FileMode
			uid  int
		}{
			{l.Dir, 0o700, 0},
			{l.Home, 0o700, ids.UID},
			{filepath.Join(l.Home, "logs"), 0o700, ids.UID},
			{filepath.Join(l.Home, "tmp"), 0o700, ids.UID},
			{l.StateDir(), 0o700, ids.UID},
			{l.Workspace, 0o700, ids.UID},
			{l.CacheDir, 0o700, ids.UID},
			{l.ConfigDir, 0o755, 0},
			{l.BinDir, 0o755, 0},
			{l.RunDir, 0o755, 0},
		} {
			fi, err := os.Lstat(tt.path)
			if err != nil {
				t.Error(err)
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if !fi.IsDir() || fi.Mode().Perm() != tt.mode || int(st.Uid) != tt.uid || int(st.Gid) != tt.uid {
				t.Errorf("%s: %v owned by %d:%d, want dir %v owned by %d:%d",
					tt.path, fi.Mode(), st.Uid, st.Gid, tt.mode, tt.uid, tt.uid)
			}
		}
	}
	if err := l.Prepare(ids); err != nil {
		t.Fatal(err)
	}
	check(t)
	// Prepare fixes an existing layout's owners and modes.
	for _, p := range []string{l.Dir, l.Home, l.ConfigDir} {
		os.Chmod(p, 0o777)
		os.Chown(p, 12345, 12345)
	}
	if err := l.Prepare(ids); err != nil {
		t.Fatal(err)
	}
	check(t)
}
