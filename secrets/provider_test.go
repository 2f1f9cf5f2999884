package secrets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// fixedLookup serves copies of values and records its calls.
type fixedLookup struct {
	values   map[string][]byte
	calls    [][]string
	returned [][]byte // every slice handed out, to check they were zeroed
}

func (l *fixedLookup) lookup(ctx context.Context, names []string) (map[string][]byte, error) {
	l.calls = append(l.calls, slices.Clone(names))
	out := make(map[string][]byte)
	for _, n := range names {
		if v, ok := l.values[n]; ok {
			c := bytes.Clone(v)
			if c == nil {
				c = []byte{}
			}
			out[n] = c
			l.returned = append(l.returned, c)
		}
	}
	return out, nil
}

func serve(t *testing.T, req string, values map[string][]byte) ([]byte, *fixedLookup, error) {
	t.Helper()
	l := &fixedLookup{values: values}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), ProviderTimeout)
	defer cancel()
	err := ServeProvider(ctx, strings.NewReader(req), &out, l.lookup)
	for i, v := range l.returned {
		if slices.ContainsFunc(v, func(b byte) bool { return b != 0 }) {
			t.Errorf("looked-up value %d (%d bytes) not zeroed", i, len(v))
		}
	}
	return out.Bytes(), l, err
}

// fingerprint describes b without revealing it.
func fingerprint(b []byte) string {
	return fmt.Sprintf("%d bytes, sha256 %x", len(b), sha256.Sum256(b))
}

// checkBytes compares a response with the expected one without printing
// either, as both may hold (test) secret values.
func checkBytes(t *testing.T, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	t.Errorf("response differs from the expected one at byte %d: got %s, want %s", i, fingerprint(got), fingerprint(want))
}

type response struct {
	ProtocolVersion *int                       `json:"protocolVersion"`
	Values          map[string]json.RawMessage `json:"values"`
	Errors          map[string]struct {
		Code string `json:"code"`
	} `json:"errors"`
}

func decodeResponse(t *testing.T, out []byte) response {
	t.Helper()
	var r response
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("response is not JSON (%s): %v", fingerprint(out), err)
	}
	if r.ProtocolVersion == nil || *r.ProtocolVersion != 1 || r.Values == nil {
		t.Fatalf("response lacks protocolVersion 1 or values (%s)", fingerprint(out))
	}
	if !bytes.HasSuffix(out, []byte("}\n")) || bytes.Count(out, []byte("\n")) != 1 {
		t.Fatalf("response is not one line ending in a newline (%s)", fingerprint(out))
	}
	return r
}

// stringValue decodes values[id] as a JSON string.
func (r response) stringValue(t *testing.T, id string) []byte {
	t.Helper()
	raw, ok := r.Values[id]
	if !ok {
		t.Fatalf("values[%q] missing", id)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("values[%q] is not a JSON string", id)
	}
	return []byte(s)
}

func TestServeProviderGolden(t *testing.T) {
	// The request OpenClaw 2026.9.6 sent in the live experiment
	// (openclaw-experiments.md §6), plus a missing id.
	req := `{"protocolVersion":1,"provider":"dummyexec","ids":["providers/openai/apiKey","gateway/token","gateway/missing"]}`
	values := map[string][]byte{
		"providers/openai/apiKey": []byte("sk-EXEC-RESOLVED-openai-key-000000"),
		"gateway/token":           []byte("exec-resolved-gateway-token-0123456789abcdef0123"),
	}
	want := `{"protocolVersion":1,"values":{"providers/openai/apiKey":"sk-EXEC-RESOLVED-openai-key-000000",` +
		`"gateway/token":"exec-resolved-gateway-token-0123456789abcdef0123"},` +
		`"errors":{"gateway/missing":{"code":"NOT_FOUND"}}}` + "\n"
	out, l, err := serve(t, req, values)
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, out, []byte(want))
	if len(l.calls) != 1 {
		t.Errorf("lookup called %d times, want 1", len(l.calls))
	}

	// Without errors the "errors" field is left out.
	req = `{"protocolVersion":1,"provider":"gosec","ids":["gateway/token"]}`
	want = `{"protocolVersion":1,"values":{"gateway/token":"exec-resolved-gateway-token-0123456789abcdef0123"}}` + "\n"
	out, _, err = serve(t, req, values)
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, out, []byte(want))
}

func TestServeProviderEmptyIDs(t *testing.T) {
	out, l, err := serve(t, `{"protocolVersion":1,"provider":"gosec","ids":[]}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, out, []byte(`{"protocolVersion":1,"values":{}}`+"\n"))
	if len(l.calls) != 0 {
		t.Errorf("lookup called %d times for no ids", len(l.calls))
	}
}

func TestServeProviderAllNotFound(t *testing.T) {
	out, _, err := serve(t, `{"protocolVersion":1,"provider":"gosec","ids":["a","b"]}`, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"protocolVersion":1,"values":{},"errors":{"a":{"code":"NOT_FOUND"},"b":{"code":"NOT_FOUND"}}}` + "\n"
	checkBytes(t, out, []byte(want))
}

func TestServeProviderDuplicateIDs(t *testing.T) {
	req := `{"protocolVersion":1,"provider":"gosec","ids":["a","b","a","db#x","db#y","b"]}`
	values := map[string][]byte{"a": []byte("1"), "b": []byte("2"), "db": []byte(`{"x":"3","y":4}`)}
	out, l, err := serve(t, req, values)
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, out, []byte(`{"protocolVersion":1,"values":{"a":"1","b":"2","db#x":"3","db#y":4}}`+"\n"))
	if len(l.calls) != 1 || !slices.Equal(l.calls[0], []string{"a", "b", "db"}) {
		t.Errorf("lookup calls = %q, want one call with [a b db]", l.calls)
	}
}

func TestServeProviderInvalidIDs(t *testing.T) {
	req := `{"protocolVersion":1,"provider":"gosec","ids":["ok","a/../b","","-x","a b","db#","a#b/./c","\u0000"]}`
	out, l, err := serve(t, req, map[string][]byte{"ok": []byte("v")})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"protocolVersion":1,"values":{"ok":"v"},"errors":{` +
		`"a/../b":{"code":"INVALID_ID"},"":{"code":"INVALID_ID"},"-x":{"code":"INVALID_ID"},` +
		`"a b":{"code":"INVALID_ID"},"db#":{"code":"INVALID_ID"},"a#b/./c":{"code":"INVALID_ID"},` +
		`"\u0000":{"code":"INVALID_ID"}}}` + "\n"
	checkBytes(t, out, []byte(want))
	if len(l.calls) != 1 || !slices.Equal(l.calls[0], []string{"ok"}) {
		t.Errorf("lookup calls = %q, want one call with [ok]", l.calls)
	}
}

func TestServeProviderJSONKey(t *testing.T) {
	values := map[string][]byte{
		"db": []byte(`{
			"user": "admin",
			"password": "p\"w\u00e9",
			"port": 5432,
			"tls": { "ca" : [ "a b" , 2 ] },
			"dup": 1, "dup": 2,
			"nul": null,
			"p\u0061ss": "escaped key"
		}`),
		"list":    []byte(`["a"]`),
		"notjson": []byte(`{"a":`),
		"plain":   []byte("hunter2"),
	}
	ids := []string{"db#password", "db#port", "db#tls", "db#user", "db#missing", "db#dup", "db#nul",
		"db#pass", "list#0", "notjson#a", "plain#x", "absent#x"}
	req, _ := json.Marshal(map[string]any{"protocolVersion": 1, "provider": "gosec", "ids": ids})
	out, _, err := serve(t, string(req), values)
	if err != nil {
		t.Fatal(err)
	}
	r := decodeResponse(t, out)
	for id, want := range map[string]string{"db#password": `p"wé`, "db#user": "admin", "db#pass": "escaped key"} {
		if got := r.stringValue(t, id); string(got) != want {
			t.Errorf("values[%q]: got %s, want %s", id, fingerprint(got), fingerprint([]byte(want)))
		}
	}
	for id, want := range map[string]string{"db#port": `5432`, "db#tls": `{"ca":["a b",2]}`} {
		if got := r.Values[id]; string(got) != want {
			t.Errorf("values[%q] = %s, want %s", id, got, want) // not secret
		}
	}
	wantErr := map[string]string{
		"db#missing": "NOT_FOUND", "db#nul": "NOT_FOUND", "absent#x": "NOT_FOUND",
		"db#dup":    "AMBIGUOUS_DUPLICATE_KEY",
		"list#0":    "INVALID_VALUE",
		"notjson#a": "INVALID_VALUE",
		"plain#x":   "INVALID_VALUE",
	}
	for id, code := range wantErr {
		if got := r.Errors[id].Code; got != code {
			t.Errorf("errors[%q].code = %q, want %q", id, got, code)
		}
	}
	if len(r.Values)+len(r.Errors) != len(ids) {
		t.Errorf("%d values and %d errors for %d ids", len(r.Values), len(r.Errors), len(ids))
	}
}

func TestServeProviderNonUTF8(t *testing.T) {
	bad := []byte("ok\xff\xfesecret")
	values := map[string][]byte{"bad": bad, "good": []byte("fine"), "obj": []byte("{\"k\":\"\xff\"}")}
	out, _, err := serve(t, `{"protocolVersion":1,"provider":"gosec","ids":["bad","good","obj#k"]}`, values)
	if err != nil {
		t.Fatal(err)
	}
	checkBytes(t, out, []byte(`{"protocolVersion":1,"values":{"good":"fine"},"errors":{"bad":{"code":"INVALID_VALUE"},"obj#k":{"code":"INVALID_VALUE"}}}`+"\n"))
	if bytes.Contains(out, []byte("secret")) {
		t.Error("response contains part of the invalid value")
	}
}

func TestServeProviderEscaping(t *testing.T) {
	var all []byte
	for c := range 0x80 {
		all = append(all, byte(c))
	}
	all = append(all, "é€𝄞\u2028\"\\"...)
	out, _, err := serve(t, `{"protocolVersion":1,"provider":"gosec","ids":["x"]}`, map[string][]byte{"x": all})
	if err != nil {
		t.Fatal(err)
	}
	r := decodeResponse(t, out)
	if got := r.stringValue(t, "x"); !bytes.Equal(got, all) {
		t.Errorf("value did not round-trip: got %s, want %s", fingerprint(got), fingerprint(all))
	}
}

func TestServeProviderTooLarge(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 300<<10)
	values := map[string][]byte{"a": big, "b": big, "c": big, "d": big, "e": []byte("small")}
	out, _, err := serve(t, `{"protocolVersion":1,"provider":"gosec","ids":["a","b","c","d","e"]}`, values)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > maxResponseBytes {
		t.Fatalf("response is %d bytes, more than %d", len(out), maxResponseBytes)
	}
	r := decodeResponse(t, out)
	for _, id := range []string{"a", "b", "c", "e"} {
		if _, ok := r.Values[id]; !ok {
			t.Errorf("values[%q] missing", id)
		}
	}
	if got := r.Errors["d"].Code; got != "TOO_LARGE" {
		t.Errorf(`errors["d"].code = %q, want TOO_LARGE`, got)
	}

	// Near the limit. The size estimate may be up to len(respErrors)+1 bytes
	// too high (a comma and an "errors" object that end up absent), never
	// too low.
	fixed := len(`{"protocolVersion":1,"values":{"a":""}}` + "\n")
	slack := len(respErrors) + 1
	for n := maxResponseBytes - fixed - slack - 2; n <= maxResponseBytes-fixed+2; n++ {
		out, _, err := serve(t, `{"protocolVersion":1,"provider":"gosec","ids":["a"]}`,
			map[string][]byte{"a": bytes.Repeat([]byte("y"), n)})
		if err != nil {
			t.Fatal(err)
		}
		if len(out) > maxResponseBytes {
			t.Errorf("value of %d bytes: response is %d bytes", n, len(out))
		}
		r := decodeResponse(t, out)
		_, admitted := r.Values["a"]
		switch {
		case n <= maxResponseBytes-fixed-slack && !admitted:
			t.Errorf("value of %d bytes (%d below the limit) refused", n, maxResponseBytes-fixed-n)
		case n > maxResponseBytes-fixed && admitted:
			t.Errorf("value of %d bytes admitted over the limit", n)
		case !admitted && r.Errors["a"].Code != "TOO_LARGE":
			t.Errorf("value of %d bytes: code %q, want TOO_LARGE", n, r.Errors["a"].Code)
		}
	}
}

func idsRequest(n int) string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("id%d", i)
	}
	b, _ := json.Marshal(map[string]any{"protocolVersion": 1, "provider": "gosec", "ids": ids})
	return string(b)
}

func TestServeProviderRequests(t *testing.T) {
	valid := `{"protocolVersion":1,"provider":"gosec","ids":["a"]}`
	padded := func(n int) string { return valid + strings.Repeat(" ", n-len(valid)) }
	tests := []struct {
		name string
		req  string
		ok   bool
	}{
		{"valid", valid, true},
		{"whitespace around", " \n\t" + valid + "\r\n", true},
		{"field order", `{"ids":["a"],"provider":"gosec","protocolVersion":1}`, true},
		{"unknown field ignored", `{"protocolVersion":1,"provider":"gosec","ids":["a"],"future":{"x":[1]}}`, true},
		{"512 ids", idsRequest(512), true},
		{"513 ids", idsRequest(513), false},
		{"256 KiB", padded(maxRequestBytes), true},
		{"256 KiB + 1", padded(maxRequestBytes + 1), false},

		{"empty", "", false},
		{"not an object", `[1]`, false},
		{"protocolVersion 2", `{"protocolVersion":2,"provider":"gosec","ids":["a"]}`, false},
		{"protocolVersion 0", `{"protocolVersion":0,"provider":"gosec","ids":["a"]}`, false},
		{"protocolVersion 1.0", `{"protocolVersion":1.0,"provider":"gosec","ids":["a"]}`, false},
		{"protocolVersion string", `{"protocolVersion":"1","provider":"gosec","ids":["a"]}`, false},
		{"protocolVersion null", `{"protocolVersion":null,"provider":"gosec","ids":["a"]}`, false},
		{"no protocolVersion", `{"provider":"gosec","ids":["a"]}`, false},
		{"ProtocolVersion case", `{"ProtocolVersion":1,"provider":"gosec","ids":["a"]}`, false},
		{"no provider", `{"protocolVersion":1,"ids":["a"]}`, false},
		{"provider not a string", `{"protocolVersion":1,"provider":7,"ids":["a"]}`, false},
		{"provider bad alias", `{"protocolVersion":1,"provider":"Go Sec","ids":["a"]}`, false},
		{"no ids", `{"protocolVersion":1,"provider":"gosec"}`, false},
		{"ids null", `{"protocolVersion":1,"provider":"gosec","ids":null}`, false},
		{"ids not array", `{"protocolVersion":1,"provider":"gosec","ids":"a"}`, false},
		{"ids number", `{"protocolVersion":1,"provider":"gosec","ids":[1]}`, false},
		{"ids null element", `{"protocolVersion":1,"provider":"gosec","ids":[null]}`, false},
		{"duplicate field", `{"protocolVersion":1,"provider":"gosec","ids":["a"],"ids":["b"]}`, false},
		{"trailing garbage", valid + `x`, false},
		{"second object", valid + valid, false},
		{"truncated", valid[:len(valid)-1], false},
		{"trailing comma", `{"protocolVersion":1,"provider":"gosec","ids":["a"],}`, false},
		{"comment", `{"protocolVersion":1,"provider":"gosec","ids":["a"]}//`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := serve(t, tt.req, map[string][]byte{"a": []byte("v")})
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				if len(out) != 0 {
					t.Errorf("wrote %d bytes along with an error", len(out))
				}
				return
			}
			decodeResponse(t, out)
		})
	}
}

func TestServeProviderErrorsDoNotEchoInput(t *testing.T) {
	const marker = "sk-LEAKCHECK-0123456789"
	reqs := []string{
		`{"protocolVersion":1,"provider":"` + marker + `","ids":["a"]}`,
		`{"protocolVersion":"` + marker + `","provider":"gosec","ids":["a"]}`,
		`{"protocolVersion":1,"provider":"gosec","ids":[` + strings.Repeat("1", 30) + `]}`,
		`{"protocolVersion":1,"provider":"gosec","ids":["a"]}` + marker,
		marker,
		`{"` + marker + `"`,
		`{"protocolVersion":1,"provider":"gosec","ids":["a"],"x":` + marker + `}`,
	}
	for i, req := range reqs {
		_, _, err := serve(t, req, nil)
		if err == nil {
			t.Errorf("request %d accepted", i)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, marker) || strings.Contains(msg, "111111") {
			t.Errorf("request %d: error quotes the input (%d bytes of message)", i, len(msg))
		}
	}
}

func TestServeProviderLookupError(t *testing.T) {
	var out bytes.Buffer
	lookupErr := errors.New("store sealed")
	err := ServeProvider(context.Background(), strings.NewReader(idsRequest(2)), &out,
		func(context.Context, []string) (map[string][]byte, error) { return nil, lookupErr })
	if !errors.Is(err, lookupErr) {
		t.Errorf("err = %v, want it to wrap the lookup error", err)
	}
	if out.Len() != 0 {
		t.Errorf("wrote %d bytes despite the error", out.Len())
	}
}

func TestServeProviderContext(t *testing.T) {
	t.Run("stdin never closed", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := ServeProvider(ctx, pr, io.Discard, (&fixedLookup{}).lookup)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("returned after %v", d)
		}
	})
	t.Run("os pipes", func(t *testing.T) {
		// Real pipes take read and write deadlines.
		inR, inW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer inR.Close()
		defer inW.Close()
		outR, outW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer outR.Close()
		defer outW.Close()

		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := ServeProvider(ctx, inR, outW, (&fixedLookup{}).lookup); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("stdin never closed: err = %v, want deadline exceeded", err)
		}

		inR2, inW2, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer inR2.Close()
		go func() {
			io.WriteString(inW2, `{"protocolVersion":1,"provider":"gosec","ids":["a"]}`)
			inW2.Close()
		}()
		ctx, cancel = context.WithTimeout(context.Background(), ProviderTimeout)
		defer cancel()
		l := &fixedLookup{values: map[string][]byte{"a": []byte("v")}}
		if err := ServeProvider(ctx, inR2, outW, l.lookup); err != nil {
			t.Fatal(err)
		}
		outW.Close()
		out, err := io.ReadAll(outR)
		if err != nil {
			t.Fatal(err)
		}
		checkBytes(t, out, []byte(`{"protocolVersion":1,"values":{"a":"v"}}`+"\n"))
	})
	t.Run("slow lookup", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		var out bytes.Buffer
		err := ServeProvider(ctx, strings.NewReader(idsRequest(1)), &out,
			func(ctx context.Context, _ []string) (map[string][]byte, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
		if out.Len() != 0 {
			t.Errorf("wrote %d bytes after the deadline", out.Len())
		}
	})
	t.Run("deadline passes during lookup", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var out bytes.Buffer
		err := ServeProvider(ctx, strings.NewReader(idsRequest(1)), &out,
			func(context.Context, []string) (map[string][]byte, error) {
				cancel()
				return map[string][]byte{"id0": []byte("v")}, nil
			})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want canceled", err)
		}
		if out.Len() != 0 {
			t.Errorf("wrote %d bytes after cancellation", out.Len())
		}
	})
}

// oneWrite fails the test if Write is called more than once.
type oneWrite struct {
	t *testing.T
	n int
	bytes.Buffer
}

func (w *oneWrite) Write(p []byte) (int, error) {
	w.n++
	if w.n > 1 {
		w.t.Errorf("Write called %d times", w.n)
	}
	return w.Buffer.Write(p)
}

func TestServeProviderOneWrite(t *testing.T) {
	w := &oneWrite{t: t}
	l := &fixedLookup{values: map[string][]byte{"id0": []byte("a"), "id1": []byte("b")}}
	if err := ServeProvider(context.Background(), strings.NewReader(idsRequest(3)), w, l.lookup); err != nil {
		t.Fatal(err)
	}
	if w.n != 1 {
		t.Errorf("Write called %d times, want 1", w.n)
	}
}

func FuzzServeProvider(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzServeProvider.
	f.Add([]byte(`{"protocolVersion":1,"provider":"gosec","ids":["a","b#k","c","missing"]}`))
	values := map[string][]byte{
		"a": []byte("plain \"value\"\n"),
		"b": []byte(`{"k": {"n": [1, "two"]}, "s": "x", "d": 1, "d": 2}`),
		"c": []byte("\xff not utf-8"),
		"e": []byte(""),
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		l := &fixedLookup{values: values}
		var out bytes.Buffer
		err := ServeProvider(context.Background(), bytes.NewReader(req), &out, l.lookup)
		if err != nil {
			if out.Len() != 0 {
				t.Fatalf("wrote %d bytes along with an error", out.Len())
			}
			return
		}
		if out.Len() > maxResponseBytes {
			t.Fatalf("response is %d bytes", out.Len())
		}
		var r struct {
			ProtocolVersion *int                       `json:"protocolVersion"`
			Values          map[string]json.RawMessage `json:"values"`
			Errors          map[string]struct {
				Code string `json:"code"`
			} `json:"errors"`
		}
		if !json.Valid(out.Bytes()) || json.Unmarshal(out.Bytes(), &r) != nil {
			t.Fatalf("response is not valid JSON (%s)", fingerprint(out.Bytes()))
		}
		if r.ProtocolVersion == nil || *r.ProtocolVersion != 1 || r.Values == nil {
			t.Fatalf("response lacks protocolVersion 1 or values")
		}
		for id, e := range r.Errors {
			if e.Code == "" {
				t.Fatalf("errors[%q] has no code", id)
			}
			if _, ok := r.Values[id]; ok {
				t.Fatalf("id %q in both values and errors", id)
			}
		}
		if len(l.calls) > 1 {
			t.Fatalf("lookup called %d times", len(l.calls))
		}
	})
}
