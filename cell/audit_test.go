package cell

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/clawhold/clawhold/cell/plugin"
	"github.com/clawhold/clawhold/frontdoor/proxy"
	"github.com/clawhold/clawhold/openclaw/openclawtest"
)

type auditFinding struct {
	CheckID     string `json:"checkId"`
	Severity    string `json:"severity"`
	Title       string `json:"title"`
	Detail      string `json:"detail"`
	Remediation string `json:"remediation"`
}

type auditReport struct {
	Summary struct {
		Critical int `json:"critical"`
		Warn     int `json:"warn"`
		Info     int `json:"info"`
	} `json:"summary"`
	Findings           []auditFinding `json:"findings"`
	SuppressedFindings []auditFinding `json:"suppressedFindings"`
	SecretDiagnostics  []string       `json:"secretDiagnostics"`
}

// TestGeneratedConfigAudit runs the pinned OpenClaw's own security audit on
// a cell's generated config: nothing critical, and nothing suppressed but
// the two trusted-proxy findings the config suppresses on purpose.
func TestGeneratedConfigAudit(t *testing.T) {
	inst := openclawtest.Install(t) // skips (fails with CI=true) without the pinned install

	l := NewLayout(t.TempDir(), "acme")
	ids := IDs{os.Getuid(), os.Getgid()} // no chown to foreign uids
	if err := l.Prepare(ids); err != nil {
		t.Fatal(err)
	}
	if err := plugin.Write(l.PluginDir); err != nil {
		t.Fatal(err)
	}
	if err := WriteProvider(l, ids, "/bin/true"); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		members  []Member
		overlays func() []map[string]any
	}{
		{
			name:     "members of each role",
			members:  []Member{{"alice", proxy.RoleAdmin}, {"bob", proxy.RoleOperator}, {"carol", proxy.RoleViewer}},
			overlays: func() []map[string]any { return nil },
		},
		{
			name:     "no members",
			overlays: func() []map[string]any { return nil },
		},
		{
			name:    "typical overlay: provider via SecretRef, chat completions on",
			members: []Member{{"alice", proxy.RoleAdmin}},
			overlays: func() []map[string]any {
				models, agents := openclawtest.OpenAIProvider("https://api.openai.com/v1",
					map[string]any{"source": "exec", "provider": ProviderAlias, "id": "openai"})
				return []map[string]any{{
					"models": models,
					"agents": agents,
					"gateway": map[string]any{"http": map[string]any{"endpoints": map[string]any{
						"chatCompletions": map[string]any{"enabled": true},
					}}},
				}}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Generate(ConfigInput{
				Layout: l, Members: tt.members, PublicURL: "https://claw.example.com",
				Exe: "/bin/true", PluginDir: l.PluginDir,
				Plugin:   plugin.Config(l.PluginDir, l.CellSocket()),
				Overlays: tt.overlays(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := WriteConfig(l, ids, cfg); err != nil {
				t.Fatal(err)
			}

			run := func(args ...string) (stdout []byte, err error) {
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
				defer cancel()
				cmd := inst.Command(ctx, l.Home, args...)
				cmd.Env = append(cmd.Env,
					"OPENCLAW_CONFIG_PATH="+l.ConfigFile(),
					"OPENCLAW_STATE_DIR="+l.StateDir())
				var out, errOut bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errOut
				err = cmd.Run()
				if errOut.Len() > 0 {
					t.Logf("openclaw %v stderr:\n%s", args, errOut.Bytes())
				}
				return out.Bytes(), err
			}

			// The config is valid for this OpenClaw, exec provider included
			// (its path, owner and mode pass the startup trust checks).
			out, err := run("config", "validate", "--json")
			var v struct {
				Valid bool `json:"valid"`
			}
			if jerr := json.Unmarshal(out, &v); err != nil || jerr != nil || !v.Valid {
				t.Errorf("openclaw config validate: %v (%v)\n%s", err, jerr, out)
			}

			out, err = run("security", "audit", "--json") // exits 0 even with critical findings
			if err != nil {
				t.Fatalf("openclaw security audit: %v\n%s", err, out)
			}
			stdout := bytes.NewBuffer(out)
			var rep auditReport
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("audit output is not the expected JSON: %v\n%s", err, stdout.Bytes())
			}

			t.Logf("summary: critical=%d warn=%d info=%d", rep.Summary.Critical, rep.Summary.Warn, rep.Summary.Info)
			var critical []auditFinding
			for _, f := range rep.Findings {
				t.Logf("finding %-8s %s: %s — %s", f.Severity, f.CheckID, f.Title, f.Detail)
				if f.Severity == "critical" {
					critical = append(critical, f)
				}
			}
			for _, f := range rep.SuppressedFindings {
				t.Logf("suppressed %-8s %s: %s — %s", f.Severity, f.CheckID, f.Title, f.Detail)
			}
			for _, d := range rep.SecretDiagnostics {
				t.Logf("secret diagnostic: %s", d)
			}

			if rep.Summary.Critical != 0 || len(critical) != 0 {
				for _, f := range critical {
					t.Errorf("critical finding %s: %s\n  detail: %s\n  remediation: %s", f.CheckID, f.Title, f.Detail, f.Remediation)
				}
				t.Errorf("summary.critical = %d, want 0", rep.Summary.Critical)
			}
			allowed := []string{"gateway.trusted_proxy_auth", "gateway.trusted_proxy_allow_loopback"}
			for _, f := range rep.SuppressedFindings {
				if !slices.Contains(allowed, f.CheckID) {
					t.Errorf("finding %s (%s) is suppressed: only %q may be", f.CheckID, f.Severity, allowed)
				}
			}
			// The suppressions are in force (the findings they target are
			// emitted for this config) and announced.
			var suppressed []string
			for _, f := range rep.SuppressedFindings {
				suppressed = append(suppressed, f.CheckID)
			}
			for _, id := range allowed {
				if !slices.Contains(suppressed, id) {
					t.Errorf("%s is not among the suppressed findings %q: the audit no longer emits it, or the suppression does not match", id, suppressed)
				}
			}
			if !slices.ContainsFunc(rep.Findings, func(f auditFinding) bool { return f.CheckID == "security.audit.suppressions.active" }) {
				t.Error("no security.audit.suppressions.active finding")
			}
			// The trusted-proxy boundary is complete: no finding saying the
			// proxies, the user header or the allowlist are missing.
			for _, f := range rep.Findings {
				switch f.CheckID {
				case "gateway.trusted_proxy_no_proxies", "gateway.trusted_proxy_no_user_header", "gateway.trusted_proxy_no_allowlist", "discovery.mdns_full_mode":
					t.Errorf("unexpected %s (%s): %s", f.CheckID, f.Severity, f.Detail)
				}
			}
		})
	}
}
