package cellapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// canary is a secret value that must never show up in a log or error.
const canary = "CANARY-s3cr3t-\x00\xff-value"

func newHandler(t *testing.T, logs *bytes.Buffer) (*Handler, *[]ToolCall) {
	t.Helper()
	var mu sync.Mutex
	var calls []ToolCall
	h := &Handler{
		ToolCall: func(_ context.Context, c ToolCall) (Decision, error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, c)
			switch c.ToolName {
			case "fail":
				return Decision{}, errors.New("policy store down")
			case "deny":
				return Decision{Allow: false}, nil
			}
			return Decision{Allow: true}, nil
		},
		Secrets: func(_ context.Context, names []string) (map[string][]byte, error) {
			out := map[string][]byte{}
			for _, n := range names {
				switch n {
				case "fail":
					return nil, errors.New("store down")
				case "canary":
					out[n] = []byte(canary)
				case "extra": // answers a name nobody asked for too
					out[n] = []byte("x")
					out["unasked"] = []byte(canary)
				}
			}
			return out, nil
		},
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}
	return h, &calls
}

func TestServeHTTP(t *testing.T) {
	big := `{"phase":"before","toolName":"x","params":{"p":"` + strings.Repeat("a", MaxBody) + `"}}`
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		want                            string // substring of the answer
	}{
		{"allow", "POST", "/v1/tool-call", "application/json", `{"phase":"before","toolName":"read","params":{"path":"/x"}}`, 200, `{"allow":true}`},
		{"deny gets a reason", "POST", "/v1/tool-call", "application/json", `{"phase":"before","toolName":"deny"}`, 200, `{"allow":false,"reason":"` + DefaultDenyReason + `"}`},
		{"after", "POST", "/v1/tool-call", "application/json; charset=utf-8", `{"phase":"after","toolName":"read","durationMs":5,"result":{"ok":1},"error":"boom"}`, 204, ``},
		{"unknown fields ok", "POST", "/v1/tool-call", "application/json", `{"phase":"before","toolName":"read","future":1}`, 200, `{"allow":true}`},
		{"policy error", "POST", "/v1/tool-call", "application/json", `{"phase":"before","toolName":"fail"}`, 500, `tool call policy failed`},
		{"policy error after", "POST", "/v1/tool-call", "application/json", `{"phase":"after","toolName":"fail"}`, 500, `tool call policy failed`},
		{"unknown phase", "POST", "/v1/tool-call", "application/json", `{"phase":"during","toolName":"read"}`, 400, `phase`},
		{"no phase", "POST", "/v1/tool-call", "application/json", `{"toolName":"read"}`, 400, `phase`},
		{"no tool", "POST", "/v1/tool-call", "application/json", `{"phase":"before"}`, 400, `toolName`},
		{"result on before", "POST", "/v1/tool-call", "application/json", `{"phase":"before","toolName":"r","result":1}`, 400, `after only`},
		{"negative duration", "POST", "/v1/tool-call", "application/json", `{"phase":"after","toolName":"r","durationMs":-1}`, 400, `durationMs`},
		{"not json", "POST", "/v1/tool-call", "application/json", `phase=before&SECRETBODY`, 400, `not valid JSON`},
		{"wrong type", "POST", "/v1/tool-call", "application/json", `{"phase":"before","toolName":["SECRETBODY"]}`, 400, `wrong type`},
		{"trailing data", "POST", "/v1/tool-call", "application/json", `{"phase":"before","toolName":"r"} {"SECRETBODY":1}`, 400, `after the JSON value`},
		{"trailing garbage", "POST", "/v1/tool-call", "application/json", `{"phase":"before","toolName":"r"} SECRETBODY`, 400, `not valid JSON`},
		{"empty", "POST", "/v1/tool-call", "application/json", ``, 400, `empty`},
		{"not json type", "POST", "/v1/tool-call", "text/plain", `{"phase":"before","toolName":"r"}`, 415, `application/json`},
		{"no type", "POST", "/v1/tool-call", "", `{"phase":"before","toolName":"r"}`, 415, `application/json`},
		{"oversize", "POST", "/v1/tool-call", "application/json", big, 413, `larger than`},
		{"wrong method", "GET", "/v1/tool-call", "", ``, 405, `POST`},
		{"wrong method secrets", "PUT", "/v1/secrets", "application/json", `{"names":["a"]}`, 405, `POST`},
		{"unknown path", "POST", "/v1/other", "application/json", `{}`, 404, `not found`},
		{"root", "GET", "/", "", ``, 404, `not found`},
		{"secrets", "POST", "/v1/secrets", "application/json", `{"names":["canary","missing","canary"]}`, 200, `{"values":{"canary":"Q0FOQVJZLXMzY3IzdC0A/y12YWx1ZQ=="}}`},
		{"secrets only asked", "POST", "/v1/secrets", "application/json", `{"names":["extra"]}`, 200, `{"values":{"extra":"eA=="}}`},
		{"secrets none found", "POST", "/v1/secrets", "application/json", `{"names":["missing"]}`, 200, `{"values":{}}`},
		{"secrets lookup error", "POST", "/v1/secrets", "application/json", `{"names":["fail"]}`, 500, `secret lookup failed`},
		{"secrets no names", "POST", "/v1/secrets", "application/json", `{"names":[]}`, 400, `names`},
		{"secrets missing names", "POST", "/v1/secrets", "application/json", `{}`, 400, `names`},
		{"secrets bad name", "POST", "/v1/secrets", "application/json", `{"names":["ok","../SECRETBODY"]}`, 400, `name 1`},
		{"secrets hash name", "POST", "/v1/secrets", "application/json", `{"names":["a#SECRETBODY"]}`, 400, `name 0`},
		{"secrets too many", "POST", "/v1/secrets", "application/json", `{"names":[` + strings.Repeat(`"a",`, maxNames) + `"a"]}`, 400, `more than`},
		{"secrets not json", "POST", "/v1/secrets", "application/json", `SECRETBODY`, 400, `not valid JSON`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			h, _ := newHandler(t, &logs)
			req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			got := rec.Body.String()
			if rec.Code != tt.status || !strings.Contains(got, tt.want) {
				t.Errorf("%d %s, want %d containing %q", rec.Code, got, tt.status, tt.want)
			}
			if tt.status == 405 && rec.Header().Get("Allow") != "POST" {
				t.Errorf("Allow: %q", rec.Header().Get("Allow"))
			}
			for _, leak := range []string{"SECRETBODY", "aaaaaaaa", "CANARY", "store down"} {
				if strings.Contains(got, leak) || strings.Contains(logs.String(), leak) && leak != "store down" {
					t.Errorf("%q leaked:\nanswer: %s\nlogs: %s", leak, got, logs.String())
				}
			}
			if rec.Code == 200 && rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
			}
		})
	}
}

func TestToolCallFields(t *testing.T) {
	var logs bytes.Buffer
	h, calls := newHandler(t, &logs)
	body := `{"phase":"before","toolName":"exec","params":{"command":"ls"},"toolCallId":"c1","runId":"r1","agentId":"main",` +
		`"sessionKey":"agent:main:main","sessionId":"s1","channelId":"ch","toolKind":"k","toolInputKind":"ik","traceId":"t1",` +
		`"user":"u1","requester":{"channel":"discord","senderId":"u1"}}`
	req := httptest.NewRequest("POST", "/v1/tool-call", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if len(*calls) != 1 {
		t.Fatalf("%d calls", len(*calls))
	}
	got, err := json.Marshal((*calls)[0])
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != body {
		t.Errorf("round trip:\n%s\nwant\n%s", got, body)
	}
}

func TestNilFuncs(t *testing.T) {
	h := &Handler{}
	for _, p := range []string{"/v1/tool-call", "/v1/secrets"} {
		req := httptest.NewRequest("POST", p, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 404 {
			t.Errorf("%s: %d", p, rec.Code)
		}
	}
}

// serveSocket serves h on a fresh unix socket and returns its path.
func serveSocket(t *testing.T, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "cellapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "cell.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestLookupSecrets(t *testing.T) {
	// Every byte value, and sizes around base64's padding boundaries.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	stored := map[string][]byte{
		"bin":     all,
		"empty":   {},
		"one":     {0},
		"two":     {0xff, 0xfe},
		"canary":  []byte(canary),
		"unicode": []byte("pässwörd\n\"\\"),
		"big":     bytes.Repeat([]byte{0x00, 0x80, 0xff}, 300<<10), // ~900 KiB, OpenClaw's budget
	}
	var logs bytes.Buffer
	var handed [][]byte
	var mu sync.Mutex
	h := &Handler{
		Secrets: func(_ context.Context, names []string) (map[string][]byte, error) {
			out := map[string][]byte{}
			for _, n := range names {
				if n == "fail" {
					return nil, errors.New("lookup failed")
				}
				if v, ok := stored[n]; ok {
					out[n] = bytes.Clone(v)
					mu.Lock()
					handed = append(handed, out[n])
					mu.Unlock()
				}
			}
			return out, nil
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	sock := serveSocket(t, h)
	lookup := LookupSecrets(sock)

	names := []string{"bin", "empty", "one", "two", "canary", "unicode", "big", "missing"}
	got, err := lookup(t.Context(), names)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		want, ok := stored[n]
		v, have := got[n]
		if have != ok || !bytes.Equal(v, want) {
			t.Errorf("%s: got %d bytes (present %v), want %d (present %v)", n, len(v), have, len(want), ok)
		}
	}
	if len(got) != 7 {
		t.Errorf("%d values, want 7", len(got))
	}
	// The handler zeroed what Secrets handed over once it was written.
	mu.Lock()
	for _, b := range handed {
		if len(b) > 0 && !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("a %d-byte secret buffer was not zeroed", len(b))
		}
	}
	mu.Unlock()

	tests := []struct {
		name, sock string
		names      []string
		want       string
	}{
		{"lookup error", sock, []string{"fail"}, "500"},
		{"bad name", sock, []string{"../x"}, "400"},
		{"no socket", filepath.Join(t.TempDir(), "none.sock"), []string{"bin"}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LookupSecrets(tt.sock)(t.Context(), tt.names)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "CANARY") {
				t.Errorf("error leaks a value: %v", err)
			}
		})
	}
	if strings.Contains(logs.String(), "CANARY") {
		t.Errorf("logs leak a value:\n%s", logs.String())
	}
	if got, err := lookup(t.Context(), nil); err != nil || len(got) != 0 {
		t.Errorf("no names: %v %v", got, err)
	}
}

func TestLookupSecretsBadServer(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
	}{
		{"not json", 200, `CANARY{`, "malformed"},
		{"no values", 200, `{}`, `no "values"`},
		{"not base64", 200, `{"values":{"a":"CANARY!!"}}`, "malformed"},
		{"too large", 200, `{"values":{"a":"` + strings.Repeat("A", MaxBody) + `"}}`, "larger than"},
		{"error answer", 503, `{"error":"busy"}`, "busy"},
		{"error answer not json", 502, `CANARY`, "no error message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := serveSocket(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			_, err := LookupSecrets(sock)(t.Context(), []string{"a"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "CANARY") {
				t.Errorf("error leaks the response: %v", err)
			}
		})
	}
}

func TestReadBody(t *testing.T) {
	for _, n := range []int{0, 1, 4095, 4096, 4097, 100_000, MaxBody} {
		data := bytes.Repeat([]byte{'x'}, n)
		for _, cl := range []int64{-1, int64(n)} {
			got, err := readBody(bytes.NewReader(data), cl)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("n=%d cl=%d: %d bytes, %v", n, cl, len(got), err)
			}
		}
	}
	if _, err := readBody(bytes.NewReader(make([]byte, MaxBody+1)), -1); err == nil {
		t.Error("oversize body accepted")
	}
	if _, err := readBody(bytes.NewReader(nil), MaxBody+1); err == nil {
		t.Error("oversize Content-Length accepted")
	}
}
