package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

type namedValue struct{ name, value string }

// malformedTokens returns cookie values that must never reach the database,
// derived from the valid token tok.
func malformedTokens(tok string) []namedValue {
	// Same length and alphabet, but non-zero padding bits in the last
	// character: a non-canonical encoding of some token.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[TokenLen-1])
	nonCanonical := tok[:TokenLen-1] + string(alphabet[last|1])
	return []namedValue{
		{"empty", ""},
		{"short", tok[:TokenLen-1]},
		{"long", tok + "A"},
		{"padded", tok[:TokenLen-1] + "="},
		{"padding appended", tok + "="},
		{"standard alphabet +", "+" + tok[1:]},
		{"standard alphabet /", tok[:10] + "/" + tok[11:]},
		{"space", tok[:20] + " " + tok[21:]},
		{"dot", tok[:20] + "." + tok[21:]},
		{"NUL", tok[:20] + "\x00" + tok[21:]},
		{"non-ASCII", tok[:TokenLen-2] + "é"},
		{"non-canonical padding bits", nonCanonical},
		{"hex id", strings.Repeat("ab", 32)},
		{"percent-encoded", tok[:TokenLen-3] + "%41"},
	}
}

func TestParseToken(t *testing.T) {
	tok, err := newToken()
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := parseToken(tok.String()); !ok || got != tok {
		t.Fatalf("parseToken(valid) = %v", ok)
	}
	for _, c := range malformedTokens(tok.String()) {
		if _, ok := parseToken(c.value); ok {
			t.Errorf("parseToken(%s) accepted", c.name)
		}
	}
}

func TestCookieAttributes(t *testing.T) {
	tok, _ := newToken()
	tests := []struct {
		name string
		set  func(w http.ResponseWriter) error
		want string
	}{
		{"set", func(w http.ResponseWriter) error { return SetCookie(w, tok.String()) },
			"__Host-clawhold_session=" + tok.String() + "; Path=/; HttpOnly; Secure; SameSite=Strict"},
		{"clear", func(w http.ResponseWriter) error { ClearCookie(w); return nil },
			"__Host-clawhold_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			if err := tc.set(w); err != nil {
				t.Fatal(err)
			}
			hs := w.Header().Values("Set-Cookie")
			if len(hs) != 1 || hs[0] != tc.want {
				t.Fatalf("Set-Cookie = %q, want %q", hs, tc.want)
			}
			c, err := http.ParseSetCookie(hs[0])
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode ||
				c.Path != "/" || c.Domain != "" || !c.Expires.IsZero() {
				t.Errorf("cookie %+v breaks the __Host-, Secure, HttpOnly, SameSite=Strict, Path=/, no Domain rules", c)
			}
		})
	}
	for _, c := range malformedTokens(tok.String()) {
		w := httptest.NewRecorder()
		if err := SetCookie(w, c.value); err == nil || len(w.Header().Values("Set-Cookie")) != 0 {
			t.Errorf("SetCookie(%s) set a cookie", c.name)
		}
	}
}

func TestTokenFromRequest(t *testing.T) {
	tok, _ := newToken()
	valid := tok.String()
	tests := []struct {
		name    string
		header  []string // Cookie header lines
		want    string
		wantErr error // nil: any error when want == ""
	}{
		{"valid", []string{CookieName + "=" + valid}, valid, nil},
		{"among others", []string{"a=b; " + CookieName + "=" + valid + "; c=d"}, valid, nil},
		{"missing", nil, "", ErrNoCookie},
		{"other cookies only", []string{"a=b; clawhold_session=" + valid}, "", ErrNoCookie},
		{"name case differs", []string{"__host-clawhold_session=" + valid}, "", ErrNoCookie},
		{"twice in one header", []string{CookieName + "=" + valid + "; " + CookieName + "=" + valid}, "", nil},
		{"twice in two headers", []string{CookieName + "=" + valid, CookieName + "=" + valid}, "", nil},
		{"quoted", []string{CookieName + `="` + valid + `"`}, "", nil},
	}
	for _, c := range malformedTokens(valid) {
		tests = append(tests, struct {
			name    string
			header  []string
			want    string
			wantErr error
		}{"malformed " + c.name, []string{CookieName + "=" + c.value}, "", nil})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "https://frontdoor.example/", nil)
			for _, h := range tc.header {
				r.Header.Add("Cookie", h)
			}
			got, err := TokenFromRequest(r)
			switch {
			case tc.want != "" && (err != nil || got != tc.want):
				t.Fatalf("TokenFromRequest: err %v, token matches %v", err, got == tc.want)
			case tc.want == "" && (err == nil || got != ""):
				t.Fatalf("TokenFromRequest accepted")
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("TokenFromRequest = %v, want %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), valid[:16]) {
				t.Error("error quotes the cookie value")
			}
		})
	}
}

func FuzzTokenFromRequest(f *testing.F) {
	tok, _ := newToken()
	valid := tok.String()
	f.Add(CookieName + "=" + valid)
	f.Add("a=b; " + CookieName + "=" + valid + "; c=d")
	f.Add(CookieName + "=" + valid + "; " + CookieName + "=" + valid)
	f.Add(CookieName + `="` + valid + `"`)
	f.Add("")
	f.Add(";;;=;")
	for _, c := range malformedTokens(valid) {
		f.Add(CookieName + "=" + c.value)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := &http.Request{Header: http.Header{"Cookie": {header}}}
		got, err := TokenFromRequest(r)
		if err != nil {
			if got != "" {
				t.Fatal("token returned with an error")
			}
			if len(header) >= 8 && strings.Contains(err.Error(), header) {
				t.Fatal("error quotes the cookie header")
			}
			return
		}
		if len(got) != TokenLen {
			t.Fatalf("accepted a %d-byte token", len(got))
		}
		for i := 0; i < len(got); i++ {
			if !isBase64URL(got[i]) {
				t.Fatalf("accepted byte %q", got[i])
			}
		}
		raw, ok := parseToken(got)
		if !ok || raw.String() != got {
			t.Fatal("accepted a token that does not round-trip")
		}
		if !strings.Contains(header, got) {
			t.Fatal("token not taken from the header")
		}
		if !ValidID(raw.id()) {
			t.Fatal("id of an accepted token is malformed")
		}
	})
}
