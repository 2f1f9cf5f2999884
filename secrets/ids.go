package secrets

import (
	"errors"
	"fmt"
	"strings"
)

// maxIDLen is the longest OpenClaw exec SecretRef id, in bytes
// (^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,255}$).
const maxIDLen = 256

// nameRule states the rule a secret name must follow, for error messages.
const nameRule = `a secret name is 1-256 characters, starts with a letter or digit, ` +
	`uses only letters, digits and "._:/-", and has no "." or ".." path segments`

// ValidName reports whether name can be stored as a secret and served to
// OpenClaw as an exec SecretRef id: it must match
// ^[A-Za-z0-9][A-Za-z0-9._:/#-]{0,255}$ with no "." or ".." segments
// between slashes ("a/../b" is rejected), which is OpenClaw's own rule for
// exec ids.
//
// Unlike an id, a name may not contain '#': in an id, "name#key" selects
// the field key of a secret whose value is a JSON object (see ParseID), so a
// name with '#' could never be referenced whole.
//
// The error states the rule and what broke it; it does not repeat the name,
// so callers decide whether the name is safe to show.
func ValidName(name string) error {
	if err := checkExecID(name); err != nil {
		return err
	}
	if i := strings.IndexByte(name, '#'); i >= 0 {
		return fmt.Errorf("invalid secret name: '#' at byte %d is reserved to separate a JSON key in ids: %s", i, nameRule)
	}
	return nil
}

// ParseID splits an OpenClaw exec SecretRef id into the secret's name and,
// for ids of the form "name#json_key", the top-level field of the secret's
// JSON-object value to return. jsonKey is "" when the id has no '#'.
//
// The id must follow OpenClaw's exec id rule; the name must pass ValidName
// and the key, if any, must be non-empty. Everything after the first '#' is
// the key, so a key may itself contain '#'. Keys select top-level fields
// only; "a.b" is the field named "a.b", not a nested path.
func ParseID(id string) (name, jsonKey string, err error) {
	if err := checkExecID(id); err != nil {
		return "", "", err
	}
	name, jsonKey, hasKey := strings.Cut(id, "#")
	if hasKey && jsonKey == "" {
		return "", "", errors.New("invalid secret id: empty JSON key after '#'")
	}
	if err := ValidName(name); err != nil {
		return "", "", err
	}
	return name, jsonKey, nil
}

// checkExecID checks s against OpenClaw's exec SecretRef id rule.
func checkExecID(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("invalid secret name: empty: %s", nameRule)
	case len(s) > maxIDLen:
		return fmt.Errorf("invalid secret name: %d bytes long, more than %d: %s", len(s), maxIDLen, nameRule)
	case !isAlnum(s[0]):
		return fmt.Errorf("invalid secret name: first character is not a letter or digit: %s", nameRule)
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && !strings.ContainsRune("._:/#-", rune(c)) {
			return fmt.Errorf("invalid secret name: character at byte %d is not allowed: %s", i, nameRule)
		}
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "." || seg == ".." {
			return fmt.Errorf("invalid secret name: has a %q path segment: %s", seg, nameRule)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
