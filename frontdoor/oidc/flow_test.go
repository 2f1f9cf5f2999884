package oidc

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

var testNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func testFlow() flow {
	return flow{State: randToken(), Nonce: randToken(), Verifier: oauth2.GenerateVerifier(), Created: testNow}
}

func mustCodec(t testing.TB, key []byte, issuer string) flowCodec {
	t.Helper()
	c, err := newFlowCodec(key, issuer, testClientID)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFlowCodec(t *testing.T) {
	key := testKey()
	c := mustCodec(t, key, "https://idp.example")
	f := testFlow()
	v := c.seal(f)

	got, err := c.open(v, testNow.Add(9*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !sameFlow(got, f) {
		t.Fatalf("round trip: got %+v want %+v", got, f)
	}
	if v2 := c.seal(f); v2 == v {
		t.Error("two seals of one flow are identical: nonce not random")
	}
	for _, s := range []string{f.State, f.Nonce, f.Verifier} {
		if strings.Contains(v, s) {
			t.Error("cookie value contains a flow secret in clear")
		}
	}

	for _, tc := range []struct {
		name  string
		codec flowCodec
		value string
		now   time.Time
	}{
		{"expired", c, v, testNow.Add(flowTTL + time.Second)},
		{"from the future", c, v, testNow.Add(-2 * time.Minute)},
		{"other key", mustCodec(t, testKey(), "https://idp.example"), v, testNow},
		{"same key other issuer", mustCodec(t, key, "https://other.example"), v, testNow},
		{"empty", c, "", testNow},
		{"truncated", c, v[:len(v)-4], testNow},
		{"padded", c, v + "=", testNow},
		{"standard alphabet", c, strings.NewReplacer("-", "+", "_", "/").Replace(v) + "+/", testNow},
		{"too long", c, strings.Repeat("A", maxFlowCookie+1), testNow},
		{"bit flipped", c, flip(v, len(v)/3), testNow},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.codec.open(tc.value, tc.now); err == nil {
				t.Fatal("open succeeded")
			}
		})
	}
}

func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestParseFlow(t *testing.T) {
	st, n, p := randToken(), randToken(), oauth2.GenerateVerifier()
	ts := "1795521600" // testNow
	for _, tc := range []struct {
		name string
		json string
		ok   bool
	}{
		{"valid", `{"v":1,"s":"` + st + `","n":"` + n + `","p":"` + p + `","t":` + ts + `}`, true},
		{"wrong version", `{"v":2,"s":"` + st + `","n":"` + n + `","p":"` + p + `","t":` + ts + `}`, false},
		{"unknown field", `{"v":1,"s":"` + st + `","n":"` + n + `","p":"` + p + `","t":` + ts + `,"x":1}`, false},
		{"trailing data", `{"v":1,"s":"` + st + `","n":"` + n + `","p":"` + p + `","t":` + ts + `}{}`, false},
		{"short state", `{"v":1,"s":"abc","n":"` + n + `","p":"` + p + `","t":` + ts + `}`, false},
		{"empty nonce", `{"v":1,"s":"` + st + `","n":"","p":"` + p + `","t":` + ts + `}`, false},
		{"short verifier", `{"v":1,"s":"` + st + `","n":"` + n + `","p":"abc","t":` + ts + `}`, false},
		{"verifier bad char", `{"v":1,"s":"` + st + `","n":"` + n + `","p":"` + p[:42] + `/","t":` + ts + `}`, false},
		{"no time", `{"v":1,"s":"` + st + `","n":"` + n + `","p":"` + p + `"}`, false},
		{"not json", `v=1`, false},
		{"null", `null`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseFlow([]byte(tc.json), testNow)
			if (err == nil) != tc.ok {
				t.Fatalf("parseFlow: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// FuzzFlowCookie feeds arbitrary bytes both as a cookie value (must never
// open: only seal can make one) and as an authenticated payload (the parser
// behind the AEAD must reject or accept cleanly, and what it accepts must
// round-trip).
func FuzzFlowCookie(f *testing.F) {
	key := make([]byte, 32) // fixed, so the corpus stays meaningful
	for i := range key {
		key[i] = byte(i)
	}
	c := mustCodec(f, key, "https://idp.example")
	fl := flow{
		State:    strings.Repeat("s", randLen),
		Nonce:    strings.Repeat("n", randLen),
		Verifier: strings.Repeat("v", 43),
		Created:  testNow,
	}
	valid := c.seal(fl)
	f.Add([]byte(valid))
	f.Add([]byte(flip(valid, 10)))
	f.Add([]byte(""))
	f.Add([]byte("A"))
	f.Add([]byte(strings.Repeat("A", 60)))
	f.Add([]byte(`{"v":1,"s":"` + fl.State + `","n":"` + fl.Nonce + `","p":"` + fl.Verifier + `","t":1795521600}`))
	f.Add([]byte(`{"v":1,"s":"","n":"","p":"","t":-9223372036854775808}`))
	f.Add([]byte(`{"v":1e400}`))
	f.Add([]byte(`[{"v":1}]`))
	f.Add([]byte("\xff\xfe{\"v\":1"))

	f.Fuzz(func(t *testing.T, data []byte) {
		s := string(data)
		// Seeds are sealed in each fuzz process with a random GCM nonce, so
		// the property is: only fl, the one flow ever sealed as a cookie
		// under this key, can open.
		if got, err := c.open(s, testNow); err == nil && !sameFlow(got, fl) {
			t.Fatalf("forged cookie %q opened: %+v", s, got)
		}
		// Past authentication: parse whatever the payload is.
		sealed := encodeSealed(c, data)
		got, err := c.open(sealed, testNow)
		if err != nil {
			return
		}
		if !isRandToken(got.State) || !isRandToken(got.Nonce) || !isVerifier(got.Verifier) ||
			got.Created.After(testNow.Add(flowSkew)) || testNow.Sub(got.Created) > flowTTL {
			t.Fatalf("accepted invalid flow %+v", got)
		}
		again, err := c.open(c.seal(got), testNow)
		if err != nil || !sameFlow(again, got) {
			t.Fatalf("re-seal round trip: %+v, %v; want %+v", again, err, got)
		}
	})
}

// encodeSealed seals arbitrary plaintext the way seal seals JSON.
func encodeSealed(c flowCodec, plaintext []byte) string {
	return b64(c.aead.Seal(nil, nil, plaintext, []byte(flowAD)))
}

func sameFlow(a, b flow) bool {
	return a.State == b.State && a.Nonce == b.Nonce && a.Verifier == b.Verifier && a.Created.Equal(b.Created)
}
