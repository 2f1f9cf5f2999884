package up

import (
	"testing"

	"github.com/clawhold/clawhold/cell/cellapi"
	"github.com/clawhold/clawhold/config"
)

func TestDecide(t *testing.T) {
	rules := []config.ToolRule{
		{Tool: "exec", Action: "deny", Reason: "no shell"},
		{Tool: "sessions_list", Action: "allow"},
		{Tool: "*", Action: "deny"},
	}
	cases := []struct {
		rules  []config.ToolRule
		tool   string
		allow  bool
		reason string
	}{
		{rules, "exec", false, "no shell"},
		{rules, "sessions_list", true, ""},
		{rules, "browser", false, "denied by clawhold policy (cells.tool_rules)"},
		{rules[:2], "browser", true, ""}, // no match allows
		{nil, "exec", true, ""},
	}
	for _, c := range cases {
		d := decide(c.rules, cellapi.ToolCall{Phase: "before", ToolName: c.tool})
		if d.Allow != c.allow || d.Reason != c.reason {
			t.Errorf("decide(%s) = %+v, want allow=%v reason=%q", c.tool, d, c.allow, c.reason)
		}
	}
}
