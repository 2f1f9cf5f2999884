package policy

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
)

// Kinds of operations a Request can describe.
const (
	KindToolCall   = "tool.call"
	KindEgress     = "egress"
	KindSecretRead = "secret.read"
	KindInstall    = "install"
)

// Effect is the outcome of a decision.
type Effect string

// Effects, from the most to the least cautious.
const (
	Deny  Effect = "deny"
	Ask   Effect = "ask"
	Allow Effect = "allow"
)

// ParseEffect returns the Effect named s.
func ParseEffect(s string) (Effect, error) {
	switch e := Effect(s); e {
	case Deny, Ask, Allow:
		return e, nil
	}
	return "", fmt.Errorf("unknown effect %q (want allow, deny or ask)", s)
}

// DefaultFile is the name the embedded default policy carries in
// positions and policy ids.
const DefaultFile = "default.cedar"

//go:embed default.cedar
var defaultPolicy []byte

// DefaultPolicy returns the embedded default policy text.
func DefaultPolicy() []byte { return append([]byte(nil), defaultPolicy...) }

// Request is one operation to decide. Fields that do not apply to the
// kind stay zero.
type Request struct {
	Kind   string    `json:"kind"`
	Tenant string    `json:"tenant"`
	User   string    `json:"user"`
	Role   string    `json:"role"`
	Time   time.Time `json:"time"` // zero means now

	// tool.call
	Tool         string         `json:"tool,omitempty"`
	Params       map[string]any `json:"params,omitempty"`
	Command      string         `json:"command,omitempty"`       // shell command of an exec call
	Programs     []string       `json:"programs,omitempty"`      // from cmdrule Parse
	CommandRules []string       `json:"command_rules,omitempty"` // ids from cmdrule Evaluate
	Path         string         `json:"path,omitempty"`          // a file write's resolved path
	InWorkspace  bool           `json:"in_workspace,omitempty"`

	// egress
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`

	// secret.read
	SecretID string `json:"secret_id,omitempty"`

	// install
	Package         string   `json:"package,omitempty"`
	PackageFindings []string `json:"package_findings,omitempty"`

	Risk int `json:"risk,omitempty"` // monitor's risk signal, 0-100
}

// Decision is the outcome for one Request.
type Decision struct {
	Effect   Effect   `json:"effect"`
	Policies []string `json:"policies"` // ids of the determining policies
	Reasons  []string `json:"reasons"`  // their @reason annotations
}

// Set is a validated, immutable set of policies.
type Set struct {
	ps    *cedar.PolicySet
	ask   map[cedar.PolicyID]bool
	forb  map[cedar.PolicyID]bool
	rsn   map[cedar.PolicyID]string
	files []string
	// stamps are the files' versions as seen before they were read, so
	// Watch notices a change made at any time after the load.
	stamps []fileStamp
}

// Len returns the number of policies in the set.
func (s *Set) Len() int { return len(s.ask) }

// source is one policy document to load.
type source struct {
	name string
	data []byte
}

// Load reads and validates the policy files, without the embedded
// default policy.
func Load(files ...string) (*Set, error) {
	return loadFiles(false, files)
}

func loadFiles(withDefault bool, files []string) (*Set, error) {
	stamps := statFiles(files)
	var srcs []source
	if withDefault {
		srcs = append(srcs, source{DefaultFile, defaultPolicy})
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		srcs = append(srcs, source{f, b})
	}
	s, err := load(srcs)
	if err != nil {
		return nil, err
	}
	s.files, s.stamps = files, stamps
	return s, nil
}

// cedar-go reports parse errors at "<input>:line:col" whatever file name
// it was given; this rewrites them to name the file.
var parsePos = regexp.MustCompile(`parse error at <input>:(\d+):(\d+) (.*)$`)

func load(srcs []source) (*Set, error) {
	s := &Set{
		ps:   cedar.NewPolicySet(),
		ask:  map[cedar.PolicyID]bool{},
		forb: map[cedar.PolicyID]bool{},
		rsn:  map[cedar.PolicyID]string{},
	}
	var errs []error
	idAt := map[cedar.PolicyID]string{}
	for _, src := range srcs {
		list, err := cedar.NewPolicyListFromBytes(src.name, src.data)
		if err != nil {
			if m := parsePos.FindStringSubmatch(err.Error()); m != nil {
				errs = append(errs, fmt.Errorf("%s:%s:%s: %s", src.name, m[1], m[2], m[3]))
			} else {
				errs = append(errs, fmt.Errorf("%s: %w", src.name, err))
			}
			continue
		}
		for _, p := range list {
			pos := p.Position()
			at := src.name + ":" + strconv.Itoa(pos.Line) + ":" + strconv.Itoa(pos.Column)
			ann := p.Annotations()
			id := cedar.PolicyID(src.name + ":" + strconv.Itoa(pos.Line))
			bad := false
			for k, v := range ann {
				switch k {
				case "id":
					if v == "" {
						errs = append(errs, fmt.Errorf("%s: @id is empty", at))
						bad = true
					}
					id = cedar.PolicyID(v)
				case "reason":
				case "decision":
					if v != "ask" {
						errs = append(errs, fmt.Errorf("%s: @decision(%q): only \"ask\" is allowed", at, string(v)))
						bad = true
					} else if p.Effect() == cedar.Forbid {
						errs = append(errs, fmt.Errorf("%s: @decision(\"ask\") on a forbid: a forbid always denies", at))
						bad = true
					}
				default:
					// Unknown annotations are errors so that a typo such
					// as @decison("ask") does not silently turn an ask
					// into an allow.
					errs = append(errs, fmt.Errorf("%s: unknown annotation @%s (want @id, @reason or @decision)", at, string(k)))
					bad = true
				}
			}
			if prev, dup := idAt[id]; dup {
				errs = append(errs, fmt.Errorf("%s: duplicate policy id %q (first at %s)", at, string(id), prev))
				continue
			}
			idAt[id] = at
			if bad {
				continue
			}
			s.ps.Add(id, p)
			s.ask[id] = ann["decision"] == "ask"
			s.forb[id] = p.Effect() == cedar.Forbid
			if r, ok := ann["reason"]; ok {
				s.rsn[id] = string(r)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// decide evaluates req against the set; defaults give the effect when
// no policy matches.
func (s *Set) decide(req Request, defaults map[string]Effect) (Decision, error) {
	creq, ents, err := cedarRequest(req)
	if err != nil {
		return Decision{}, err
	}
	dec, diag := s.ps.IsAuthorized(ents, creq)
	// A forbid that failed to evaluate might have matched: fail closed.
	var broken []string
	for _, e := range diag.Errors {
		if s.forb[e.PolicyID] {
			broken = append(broken, string(e.PolicyID))
		}
	}
	if len(broken) > 0 {
		return Decision{Effect: Deny, Policies: broken,
			Reasons: []string{"a forbid policy failed to evaluate"}}, nil
	}
	if dec == cedar.Deny && len(diag.Reasons) == 0 {
		eff, ok := defaults[req.Kind]
		if !ok {
			eff = Deny
		}
		return Decision{Effect: eff, Policies: []string{}, Reasons: []string{}}, nil
	}
	var asks, allows []cedar.PolicyID
	for _, r := range diag.Reasons {
		if dec == cedar.Allow && s.ask[r.PolicyID] {
			asks = append(asks, r.PolicyID)
		} else {
			allows = append(allows, r.PolicyID)
		}
	}
	d := Decision{Effect: Allow, Policies: []string{}, Reasons: []string{}}
	ids := allows
	switch {
	case dec == cedar.Deny:
		d.Effect = Deny
	case len(asks) > 0:
		d.Effect, ids = Ask, asks
	}
	for _, id := range ids {
		d.Policies = append(d.Policies, string(id))
		if r, ok := s.rsn[id]; ok {
			d.Reasons = append(d.Reasons, r)
		}
	}
	return d, nil
}

func cedarRequest(r Request) (cedar.Request, cedar.EntityMap, error) {
	var resType, resID string
	switch r.Kind {
	case KindToolCall:
		resType, resID = "Tool", r.Tool
	case KindEgress:
		resType, resID = "Host", strings.ToLower(r.Host)
	case KindSecretRead:
		resType, resID = "Secret", r.SecretID
	case KindInstall:
		resType, resID = "Package", r.Package
	default:
		return cedar.Request{}, nil, fmt.Errorf("policy: unknown request kind %q", r.Kind)
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	t = t.UTC()
	params := cedar.RecordMap{}
	for k, v := range r.Params {
		if s, ok := v.(string); ok {
			params[cedar.String(k)] = cedar.String(s)
		}
	}
	principal := cedar.NewEntityUID("User", cedar.String(r.Tenant+"/"+r.User))
	resource := cedar.NewEntityUID(types.EntityType(resType), cedar.String(resID))
	ents := cedar.EntityMap{
		principal: cedar.Entity{UID: principal, Attributes: cedar.NewRecord(cedar.RecordMap{
			"name":   cedar.String(r.User),
			"tenant": cedar.String(r.Tenant),
			"role":   cedar.String(r.Role),
		})},
		resource: cedar.Entity{UID: resource},
	}
	ctx := cedar.NewRecord(cedar.RecordMap{
		"tenant":        cedar.String(r.Tenant),
		"role":          cedar.String(r.Role),
		"hour":          cedar.Long(t.Hour()),
		"weekday":       cedar.Long(t.Weekday()),
		"command":       cedar.String(r.Command),
		"programs":      stringSet(r.Programs),
		"command_rules": stringSet(r.CommandRules),
		"path":          cedar.String(r.Path),
		"in_workspace":  cedar.Boolean(r.InWorkspace),
		"port":          cedar.Long(r.Port),
		"risk":          cedar.Long(r.Risk),
		"findings":      stringSet(r.PackageFindings),
		"params":        cedar.NewRecord(params),
	})
	return cedar.Request{
		Principal: principal,
		Action:    cedar.NewEntityUID("Action", cedar.String(r.Kind)),
		Resource:  resource,
		Context:   ctx,
	}, ents, nil
}

func stringSet(ss []string) cedar.Set {
	vs := make([]cedar.Value, len(ss))
	for i, s := range ss {
		vs[i] = cedar.String(s)
	}
	return cedar.NewSet(vs...)
}
