package cmdrule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// DefaultFile is Rule.File for the built-in rules.
const DefaultFile = "default.yaml"

// Load builds an engine from the default rule document and operator rule
// files: a rule in a file whose id is already defined (by the defaults or
// an earlier file) replaces that rule in place, any other is added. Ids
// in disabled are then removed; naming an id that no rule has is an
// error, so a typo does not silently leave a rule on. defaults may be
// nil for an operator-only rule set.
//
// Errors name the file and line: "rules.yaml:12: rule "x": args[0]: ...".
func Load(defaults []byte, files []string, disabled []string) (*Engine, error) {
	var rs []*rule
	if defaults != nil {
		d, err := loadDoc(DefaultFile, defaults)
		if err != nil {
			return nil, err
		}
		rs = d
	}
	for _, name := range files {
		doc, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("cmdrule: read rules: %w", err)
		}
		more, err := loadDoc(name, doc)
		if err != nil {
			return nil, err
		}
		for _, r := range more {
			if i := slices.IndexFunc(rs, func(x *rule) bool { return x.ID == r.ID }); i >= 0 {
				rs[i] = r
			} else {
				rs = append(rs, r)
			}
		}
	}
	removed := map[string]bool{}
	for _, id := range disabled {
		i := slices.IndexFunc(rs, func(x *rule) bool { return x.ID == id })
		if i < 0 {
			if removed[id] {
				continue // listed twice
			}
			return nil, fmt.Errorf("cmdrule: disable_rules: no rule has id %q", id)
		}
		rs = slices.Delete(rs, i, i+1)
		removed[id] = true
	}
	return newEngine(rs, removed)
}

// loadDoc decodes and compiles one rule document named name.
func loadDoc(name string, doc []byte) ([]*rule, error) {
	var f struct {
		Rules []Rule `yaml:"rules"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlError(name, err)
	}
	if len(f.Rules) == 0 {
		return nil, fmt.Errorf("cmdrule: %s: no rules (want a document of the form \"rules: [...]\")", name)
	}
	// A second pass keeps the nodes, for the lines of compile errors;
	// the strict pass above already rejected unknown fields.
	var n struct {
		Rules []yaml.Node `yaml:"rules"`
	}
	if err := yaml.Unmarshal(doc, &n); err != nil || len(n.Rules) != len(f.Rules) {
		return nil, fmt.Errorf("cmdrule: %s: cannot read rule positions: %v", name, err)
	}
	var out []*rule
	seen := map[string]bool{}
	for i := range f.Rules {
		f.Rules[i].File, f.Rules[i].Line = name, n.Rules[i].Line
		node := &n.Rules[i]
		r, err := compile(f.Rules[i])
		if err != nil {
			return nil, (&rule{Rule: f.Rules[i], node: node}).errorf(err)
		}
		r.node = node
		if seen[r.ID] {
			return nil, r.errorf(errAt(errors.New("duplicate id in the same file"), "id"))
		}
		seen[r.ID] = true
		out = append(out, r)
	}
	return out, nil
}

// errorf names the file, line and id of r in err. The line is that of
// the field the error concerns when it can be found, else the rule's.
func (r *rule) errorf(err error) error {
	line := r.Line
	var pe pathErr
	if errors.As(err, &pe) && r.node != nil {
		line = lineOf(r.node, pe.path)
	}
	id := r.ID
	if id == "" {
		id = "#" + strconv.Itoa(r.Line)
	}
	return fmt.Errorf("cmdrule: %s:%d: rule %q: %w", r.File, line, id, err)
}

// lineOf follows path (mapping keys and sequence indices) down from n
// and returns the line of the deepest node reached.
func lineOf(n *yaml.Node, path []any) int {
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch p := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == p {
						next = n.Content[i+1]
						if next.Kind == yaml.ScalarNode {
							next = n.Content[i] // the key's line reads better
						}
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && p < len(n.Content) {
				next = n.Content[p]
			}
		}
		if next == nil {
			break
		}
		n, line = next, next.Line
	}
	return line
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// yamlError rewrites the decoder's "line N: msg" messages as
// "name:N: msg", the form editors and CI logs link to.
func yamlError(name string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var b bytes.Buffer
	for i, m := range msgs {
		if i > 0 {
			b.WriteString("; ")
		}
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			fmt.Fprintf(&b, "%s:%s: %s", name, sm[1], m[len(sm[0]):])
		} else {
			fmt.Fprintf(&b, "%s: %s", name, m)
		}
	}
	return fmt.Errorf("cmdrule: %s", b.String())
}
