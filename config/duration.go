package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Day is 24 hours. Durations in the configuration file may be written in
// days ("90d") because that is how key lifetimes are reasoned about.
const Day = 24 * time.Hour

// Duration is a time.Duration that the configuration file may write either
// as a Go duration ("2160h", "90m", "1h30m") or as whole days, optionally
// followed by a Go duration ("90d", "1d12h").
type Duration time.Duration

// ParseDuration parses s as described on Duration.
func ParseDuration(s string) (Duration, error) {
	orig := s
	if s == "" {
		return 0, errors.New(`empty duration; write e.g. "90d" or "1h"`)
	}
	neg := false
	if s[0] == '-' || s[0] == '+' {
		neg = s[0] == '-'
		s = s[1:]
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 63)
		if err != nil || i == 0 {
			return 0, fmt.Errorf("invalid duration %q: days must be a whole number, e.g. \"90d\"", orig)
		}
		if n > uint64(math.MaxInt64/int64(Day)) {
			return 0, fmt.Errorf("invalid duration %q: too long", orig)
		}
		days = time.Duration(n) * Day
		s = s[i+1:]
	}
	var rest time.Duration
	if s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || strings.ContainsAny(s[:1], "+-") {
			return 0, fmt.Errorf("invalid duration %q: write a Go duration such as \"2160h\" or \"90m\", or days such as \"90d\"", orig)
		}
		rest = d
	}
	if days > math.MaxInt64-rest {
		return 0, fmt.Errorf("invalid duration %q: too long", orig)
	}
	d := days + rest
	if neg {
		d = -d
	}
	return Duration(d), nil
}

// String formats d in whole days ("90d") when it is a non-zero multiple of
// 24 hours and as time.Duration.String otherwise.
func (d Duration) String() string {
	td := time.Duration(d)
	if td != 0 && td%Day == 0 {
		return strconv.FormatInt(int64(td/Day), 10) + "d"
	}
	return td.String()
}

// UnmarshalYAML implements yaml.Unmarshaler. Only strings are accepted: a
// bare number has no unit and is almost certainly a mistake.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as \"90d\" or \"1h\", got %s", describe(n))
	}
	switch n.ShortTag() {
	case "!!str":
	case "!!int", "!!float":
		return fmt.Errorf("duration %s has no unit; write e.g. \"%sd\" for days or \"%sh\" for hours", n.Value, n.Value, n.Value)
	default:
		return fmt.Errorf("expected a duration such as \"90d\" or \"1h\", got %s", describe(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler, writing d as String does.
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}
