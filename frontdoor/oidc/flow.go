package oidc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// FlowCookieName is the cookie that carries one login attempt from Begin to
// Finish. The __Host- prefix makes browsers insist on Secure, Path=/ and no
// Domain, so a sibling subdomain cannot plant its own flow (login CSRF).
const FlowCookieName = "__Host-clawhold_oidc"

const (
	// flowTTL bounds a login attempt; enforced both by the cookie's Max-Age
	// and by the timestamp sealed inside it (a browser may ignore Max-Age).
	flowTTL = 10 * time.Minute
	// flowSkew tolerates a created time slightly in the future (clock steps).
	flowSkew = time.Minute
	// flowVersion is bumped whenever the sealed payload changes meaning.
	flowVersion = 1
	// maxFlowCookie bounds what is base64-decoded and decrypted: a real
	// cookie is ~250 characters.
	maxFlowCookie = 1024
	// randLen is the encoded length of the 32 random bytes behind state and
	// nonce (unpadded base64url).
	randLen = 43
)

// flow is what Finish needs from Begin. It lives only in the encrypted
// cookie, so the front door keeps no server-side state per login attempt.
type flow struct {
	State    string
	Nonce    string
	Verifier string // PKCE code_verifier (RFC 7636 §4.1)
	Created  time.Time
}

// flowJSON is the sealed wire form; short keys keep the cookie small.
type flowJSON struct {
	V int    `json:"v"`
	S string `json:"s"`
	N string `json:"n"`
	P string `json:"p"`
	T int64  `json:"t"`
}

// flowCodec seals and opens flow cookies with AES-256-GCM.
type flowCodec struct {
	aead cipher.AEAD
}

// newFlowCodec derives the cookie key from the caller's 32-byte key with
// HKDF-SHA256, bound to the issuer and client, so the same master key can
// serve other purposes (and other providers) without cookies crossing over.
func newFlowCodec(key []byte, issuer, clientID string) (flowCodec, error) {
	if len(key) != 32 {
		return flowCodec{}, fmt.Errorf("cookie key is %d bytes, want 32", len(key))
	}
	info := "clawhold oidc flow cookie v1\x00" + issuer + "\x00" + clientID
	k, err := hkdf.Key(sha256.New, key, nil, info, 32)
	if err != nil {
		return flowCodec{}, fmt.Errorf("deriving cookie key: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return flowCodec{}, fmt.Errorf("cookie cipher: %w", err)
	}
	// Random 96-bit nonces, prepended to the ciphertext by the AEAD itself:
	// flows are short-lived and few, far from GCM's random-nonce limit.
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return flowCodec{}, fmt.Errorf("cookie cipher: %w", err)
	}
	return flowCodec{aead: aead}, nil
}

// flowAD (additional data) binds a sealed value to its cookie name and format.
const flowAD = FlowCookieName + "/v1"

func (c flowCodec) seal(f flow) string {
	b, err := json.Marshal(flowJSON{V: flowVersion, S: f.State, N: f.Nonce, P: f.Verifier, T: f.Created.Unix()})
	if err != nil {
		panic(err) // strings and ints only: cannot fail
	}
	return b64(c.aead.Seal(nil, nil, b, []byte(flowAD)))
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// open authenticates, decrypts and validates a cookie value. Errors never
// quote the value.
func (c flowCodec) open(value string, now time.Time) (flow, error) {
	if len(value) > maxFlowCookie {
		return flow{}, errors.New("cookie too long")
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(value)
	if err != nil {
		return flow{}, errors.New("cookie not base64url")
	}
	if len(raw) < c.aead.NonceSize()+c.aead.Overhead() {
		return flow{}, errors.New("cookie too short")
	}
	pt, err := c.aead.Open(nil, nil, raw, []byte(flowAD))
	if err != nil {
		return flow{}, errors.New("cookie failed authentication")
	}
	return parseFlow(pt, now)
}

// parseFlow validates an authenticated payload. It is strict even though
// only Begin can produce one: a key shared with a buggy older version must
// not turn into a confused Finish.
func parseFlow(b []byte, now time.Time) (flow, error) {
	var j flowJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return flow{}, errors.New("cookie payload malformed")
	}
	if dec.More() {
		return flow{}, errors.New("cookie payload has trailing data")
	}
	if j.V != flowVersion {
		return flow{}, fmt.Errorf("cookie version %d, want %d", j.V, flowVersion)
	}
	if !isRandToken(j.S) || !isRandToken(j.N) || !isVerifier(j.P) {
		return flow{}, errors.New("cookie payload malformed")
	}
	created := time.Unix(j.T, 0)
	if created.After(now.Add(flowSkew)) || now.Sub(created) > flowTTL {
		return flow{}, errors.New("login attempt expired")
	}
	return flow{State: j.S, Nonce: j.N, Verifier: j.P, Created: created}, nil
}

// isRandToken reports whether s looks like randToken's output.
func isRandToken(s string) bool {
	if len(s) != randLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isB64URL(s[i]) {
			return false
		}
	}
	return true
}

// isVerifier checks RFC 7636 §4.1: 43 to 128 unreserved characters.
func isVerifier(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isB64URL(c) && c != '.' && c != '~' {
			return false
		}
	}
	return true
}

func isB64URL(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func flowCookie(value string) *http.Cookie {
	return &http.Cookie{
		Name:     FlowCookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   int(flowTTL / time.Second),
		Secure:   true,
		HttpOnly: true,
		// Lax, not Strict: the callback is a top-level cross-site GET
		// redirect from the identity provider and must carry the cookie.
		SameSite: http.SameSiteLaxMode,
	}
}

func clearFlowCookie(w http.ResponseWriter) {
	c := flowCookie("")
	c.MaxAge = -1
	http.SetCookie(w, c)
}
