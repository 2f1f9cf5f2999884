package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestDocsCoverEveryKey fails when a configuration key is added without
// being documented in docs/config.md.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	paths := keyPaths(reflect.TypeFor[Config](), "", false)
	if len(paths) < 20 {
		t.Fatalf("keyPaths found only %d keys: %q", len(paths), paths)
	}
	for _, p := range paths {
		if !strings.Contains(string(doc), "### `"+p+"`") {
			t.Errorf("docs/config.md does not document %s (want a \"### `%s`\" section)", p, p)
		}
	}
}

// TestExampleLoads checks that the annotated example is a valid file and,
// as its header promises, spells out exactly the defaults.
func TestExampleLoads(t *testing.T) {
	const path = "clawhold.example.yaml"
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Path = ""
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("example differs from the defaults:\n got %+v\nwant %+v", c, Default())
	}
	example, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range keyPaths(reflect.TypeFor[Config](), "", false) {
		leaf := p[strings.LastIndex(p, ".")+1:]
		if !strings.Contains(string(example), leaf+":") {
			t.Errorf("%s does not mention %s", path, p)
		}
	}
}
