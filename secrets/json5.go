package secrets

import (
	"errors"

	"github.com/titanous/json5"
)

// PlainJSON converts a value decoded from JSON5 (with UseNumber) into one
// encoding/json writes as the same document: JSON5 number literals
// become json.Numbers with their digits kept (see jsonNumber). Infinity
// and NaN, which JSON cannot hold, are an error. Maps and slices are
// converted in place.
func PlainJSON(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			n, err := PlainJSON(e)
			if err != nil {
				return nil, err
			}
			v[k] = n
		}
		return v, nil
	case []any:
		for i, e := range v {
			n, err := PlainJSON(e)
			if err != nil {
				return nil, err
			}
			v[i] = n
		}
		return v, nil
	case json5.Number:
		return jsonNumber(string(v))
	case float64:
		return nil, errors.New("Infinity or NaN cannot be written as JSON")
	}
	return v, nil
}
