package secrets

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"gateway/auth/token", true},
		{"OPENAI_API_KEY", true},
		{"a", true},
		{"9", true},
		{"models/providers/openai/apiKey", true},
		{"a.b:c-d_e/f", true},
		{"a/.hidden", true},
		{"a/..b", true},
		{"a//b", true}, // OpenClaw forbids only "." and ".." segments
		{strings.Repeat("a", 256), true},

		{"", false},
		{strings.Repeat("a", 257), false},
		{".a", false},
		{"/a", false},
		{"-a", false},
		{"_a", false},
		{"a/../b", false},
		{"a/./b", false},
		{"a/..", false},
		{"a/.", false},
		{"a b", false},
		{"a\x00", false},
		{"a\n", false},
		{"a$b", false},
		{"é", false},
		{"aé", false},
		{"a#b", false}, // '#' separates the JSON key in ids
	}
	for _, tt := range tests {
		err := ValidName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && tt.name != "" && strings.Contains(err.Error(), tt.name) {
			t.Errorf("ValidName(%q) error repeats the name", tt.name)
		}
	}
}

func TestValidNameErrorStatesRule(t *testing.T) {
	err := ValidName("a/../b")
	if err == nil || !strings.Contains(err.Error(), `no "." or ".." path segments`) {
		t.Fatalf("error %v does not state the rule", err)
	}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		id      string
		name    string
		jsonKey string
		ok      bool
	}{
		{"gateway/token", "gateway/token", "", true},
		{"vault/db#password", "vault/db", "password", true},
		{"db#a#b", "db", "a#b", true},
		{"db#a.b", "db", "a.b", true},
		{"db#x/y", "db", "x/y", true},

		{"db#", "", "", false},
		{"#key", "", "", false},
		{"a/.#key", "", "", false},    // name "a/." has a "." segment
		{"a#../b", "a", "../b", true}, // segments are "a#.." and "b"
		{"a#x/../b", "", "", false},   // ".." segment in the id
		{"", "", "", false},
		{"a b#c", "", "", false},
		{strings.Repeat("a", 250) + "#abcdefg", "", "", false},
	}
	for _, tt := range tests {
		name, key, err := ParseID(tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ParseID(%q) error = %v, want ok=%v", tt.id, err, tt.ok)
			continue
		}
		if name != tt.name || key != tt.jsonKey {
			t.Errorf("ParseID(%q) = %q, %q; want %q, %q", tt.id, name, key, tt.name, tt.jsonKey)
		}
	}
}
