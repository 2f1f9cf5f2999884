package egress

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/clawhold/clawhold/config"
)

func TestPoliciesFromConfig(t *testing.T) {
	e := config.Default().Egress
	e.Policies["extra"] = config.EgressPolicy{
		Profile: "openclaw",
		Rules: []config.EgressRule{
			{Action: "allow", Host: "llm.lan", Ports: []int{8000}, CIDRs: []string{"10.20.0.0/16"}},
			{Action: "deny", Host: "api.x.ai"},
		},
		Inject: []config.EgressInjection{{Host: "api.openai.com", Header: "Authorization", Placeholder: "Bearer clawhold:openai", Secret: "openai"}},
		Limits: config.EgressLimits{MaxConns: 3, BytesPerSecond: 100, IdleTimeout: config.Duration(time.Minute)},
	}
	ps, err := PoliciesFromConfig(e)
	if err != nil {
		t.Fatal(err)
	}
	def := ps["default"]
	if !reflect.DeepEqual(def.Rules, OpenClawProfile()) || def.Limits.MaxConns != 512 || def.Limits.IdleTimeout != 5*time.Minute || def.Limits.MaxHeaderBytes != 65536 {
		t.Errorf("default policy = %+v", def)
	}
	x := ps["extra"]
	n := len(OpenClawProfile())
	if len(x.Rules) != n+2 || x.Rules[n].Host != "llm.lan" || x.Rules[n].Ports[0] != 8000 ||
		x.Rules[n].CIDRs[0] != netip.MustParsePrefix("10.20.0.0/16") || x.Rules[n+1].Action != Deny {
		t.Errorf("extra rules = %v", x.Rules)
	}
	if len(x.Inject) != 1 || x.Inject[0].Secret != "openai" || x.Limits.BytesPerSecond != 100 || x.Limits.MaxConns != 3 {
		t.Errorf("extra = %+v", x)
	}
	// The profile and the deny rule together: deny wins.
	p, err := New(Config{Policies: ps, Resolver: newResolver(map[string][]string{"api.x.ai": {"93.184.216.34"}}),
		Secrets: func(context.Context, string) ([]byte, error) { return nil, errors.New("unused") }})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := p.Check(t.Context(), "extra", "api.x.ai", 443); d.Action != Deny {
		t.Errorf("api.x.ai under extra: %s, want deny", d.Action)
	}
	if d, _ := p.Check(t.Context(), "default", "api.x.ai", 443); d.Action != Allow {
		t.Errorf("api.x.ai under default: %s (%s), want allow", d.Action, d.Reason)
	}

	e.Policies["bad"] = config.EgressPolicy{Profile: "nope"}
	if _, err := PoliciesFromConfig(e); err == nil {
		t.Error("unknown profile accepted")
	}
}
