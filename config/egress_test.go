package config

import (
	"strings"
	"testing"
	"time"
)

func TestEgressLoad(t *testing.T) {
	path := writeConfig(t, `egress:
  listen: unix:/run/clawhold/egress.sock
  ask_timeout: 10s
  policies:
    default:
      profile: openclaw
      rules:
        - action: allow
          host: "*.example.com"
          ports: [443, 8443]
        - {action: allow, host: internal.test, cidrs: [10.1.0.0/16]}
        - action: deny
          host: evil.example.com
      inject:
        - host: api.openai.com
          header: Authorization
          placeholder: "Bearer clawhold:openai"
          secret: openai
    tenant-b:
      limits:
        max_conns: 8
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	e := c.Egress
	if e.Listen != "unix:/run/clawhold/egress.sock" || e.AskTimeout != Duration(10*time.Second) || len(e.Policies) != 2 {
		t.Fatalf("egress = %+v", e)
	}
	d := e.Policies["default"]
	if d.Profile != "openclaw" || len(d.Rules) != 3 || d.Rules[0].Host != "*.example.com" ||
		len(d.Rules[0].Ports) != 2 || d.Rules[0].Ports[1] != 8443 || d.Rules[1].CIDRs[0] != "10.1.0.0/16" || d.Rules[2].Action != "deny" {
		t.Errorf("default policy = %+v", d)
	}
	if len(d.Inject) != 1 || d.Inject[0].Secret != "openai" || d.Inject[0].Placeholder != "Bearer clawhold:openai" {
		t.Errorf("inject = %+v", d.Inject)
	}
	if d.Limits != DefaultEgressLimits() {
		t.Errorf("default policy limits = %+v, want the defaults", d.Limits)
	}
	b := e.Policies["tenant-b"]
	if b.Limits.MaxConns != 8 || b.Limits.MaxHeaderBytes != DefaultEgressLimits().MaxHeaderBytes || b.Profile != "" {
		t.Errorf("tenant-b = %+v: want max_conns 8 and the other defaults", b)
	}
}

func TestEgressErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // substrings of the error, in order
	}{
		{"unknown key in a rule", "egress:\n  policies:\n    p:\n      rules:\n        - action: allow\n          hots: a.com\n",
			[]string{`:6: unknown key "egress.policies.p.rules[0].hots" (did you mean "egress.policies.<name>.rules[].host"?)`}},
		{"unknown key in a policy", "egress:\n  policies:\n    p:\n      rulez: []\n",
			[]string{`:4: unknown key "egress.policies.p.rulez" (did you mean "egress.policies.<name>.rules"?)`}},
		{"unknown key in limits", "egress:\n  policies:\n    p:\n      limits:\n        max_con: 1\n",
			[]string{`:5: unknown key "egress.policies.p.limits.max_con" (did you mean "egress.policies.<name>.limits.max_conns"?)`}},
		{"rules not a list", "egress:\n  policies:\n    p:\n      rules: allow\n",
			[]string{`:4: egress.policies.p.rules: expected a list`}},
		{"port not an integer", "egress:\n  policies:\n    p:\n      rules:\n        - {action: allow, host: a.com, ports: [https]}\n",
			[]string{`:5: egress.policies.p.rules[0].ports[0]: expected an integer, got the string "https"`}},
		{"bad values", "egress:\n  listen: 0.0.0.0:3128\n  policies:\n    p:\n      profile: openclw\n      rules:\n        - action: permit\n          host: \"a.*.com\"\n          ports: [70000]\n          cidrs: [10.1.2.3/8, 0.0.0.0/0, nope]\n",
			[]string{
				`:2: egress.listen is "0.0.0.0:3128": the proxy must listen only on loopback`,
				`:5: egress.policies.p.profile is "openclw": it must be one of openclaw (did you mean "openclaw"?)`,
				`:7: egress.policies.p.rules[0].action is "permit"`,
				`:8: egress.policies.p.rules[0].host: "a.*.com"`,
				`:9: egress.policies.p.rules[0].ports: 70000 is not a port`,
				`:10: egress.policies.p.rules[0].cidrs: "10.1.2.3/8" has host bits set; did you mean 10.0.0.0/8?`,
				`would open loopback`,
				`"nope" is not a CIDR`,
			}},
		{"inject incomplete", "egress:\n  policies:\n    p:\n      inject:\n        - host: \"*.openai.com\"\n          header: \"Bad Header\"\n",
			[]string{`:5: egress.policies.p.inject[0].host is "*.openai.com"`, `:6: egress.policies.p.inject[0].header`, "placeholder is empty", "secret is empty"}},
		{"negative limit", "egress:\n  policies:\n    p:\n      limits:\n        bytes_per_second: -1\n        idle_timeout: -1s\n",
			[]string{`:5: egress.policies.p.limits.bytes_per_second is -1`, `:6: egress.policies.p.limits.idle_timeout is -1s`}},
		{"bad policy name", "egress:\n  policies:\n    \"a b\": {}\n",
			[]string{`:3: egress policy name "a b"`}},
		{"relative unix socket", "egress:\n  listen: unix:egress.sock\n",
			[]string{`:2: egress.listen is "unix:egress.sock": a unix socket needs an absolute path`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.yaml))
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error does not contain %q (in order):\n%s", w, msg)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}
