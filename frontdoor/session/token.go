package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
)

// CookieName is the session cookie. The __Host- prefix makes browsers
// refuse it unless it is Secure, has Path=/ and no Domain, so a sibling
// subdomain cannot plant (toss) a session cookie on the front door.
const CookieName = "__Host-clawhold_session"

const (
	// tokenBytes is the entropy of a session token: 256 bits.
	tokenBytes = 32
	// TokenLen is the length of a token as it appears in the cookie:
	// unpadded base64url of tokenBytes.
	TokenLen = 43
	// idLen is the length of a session id: hex SHA-256 of the token.
	idLen = 2 * sha256.Size
)

// errMalformed is returned for a cookie value that cannot be a token. It
// never quotes the value: a near-miss may still be a secret.
var errMalformed = errors.New("session cookie is malformed")

// token is the raw secret behind a cookie value.
type token [tokenBytes]byte

func newToken() (token, error) {
	var t token
	if _, err := rand.Read(t[:]); err != nil {
		return t, errors.New("generating session token: randomness unavailable")
	}
	return t, nil
}

func (t token) String() string { return base64.RawURLEncoding.EncodeToString(t[:]) }

// id is what the database stores and everything else (events, the CLI, the
// Hub) names a session by. Knowing it does not let anyone log in: Lookup
// hashes whatever cookie it is given.
func (t token) id() string {
	sum := sha256.Sum256(t[:])
	return hex.EncodeToString(sum[:])
}

// parseToken accepts exactly the canonical encoding of a token: TokenLen
// characters of the base64url alphabet, with zero padding bits. Checked
// byte by byte before decoding so nothing else (quotes, spaces, '=',
// standard-alphabet '+' '/', non-ASCII) ever reaches the database.
func parseToken(s string) (token, bool) {
	var t token
	if len(s) != TokenLen {
		return t, false
	}
	for i := 0; i < len(s); i++ {
		if !isBase64URL(s[i]) {
			return t, false
		}
	}
	n, err := base64.RawURLEncoding.Strict().Decode(t[:], []byte(s))
	if err != nil || n != tokenBytes {
		return token{}, false
	}
	return t, true
}

func isBase64URL(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// ValidID reports whether id has the form of a session id (64 lowercase hex
// digits), so callers such as the CLI can reject typos before a query.
func ValidID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// SetCookie sets the session cookie. It has no Expires or Max-Age: the
// browser drops it when it closes, and the server enforces idle and
// absolute expiry whatever the browser keeps.
func SetCookie(w http.ResponseWriter, tok string) error {
	if _, ok := parseToken(tok); !ok {
		return errMalformed
	}
	http.SetCookie(w, cookie(tok, 0))
	return nil
}

// ClearCookie tells the browser to delete the session cookie (on logout, or
// when the cookie names no live session).
func ClearCookie(w http.ResponseWriter) {
	http.SetCookie(w, cookie("", -1))
}

func cookie(value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
	}
}

// ErrNoCookie is returned by TokenFromRequest when the request carries no
// session cookie.
var ErrNoCookie = errors.New("no session cookie")

// TokenFromRequest returns the session token from r's cookie, validated for
// form only (whether it names a session is Lookup's job). A request with
// several session cookies is refused rather than guessing which one the
// browser meant.
func TokenFromRequest(r *http.Request) (string, error) {
	cs := r.CookiesNamed(CookieName)
	switch len(cs) {
	case 0:
		return "", ErrNoCookie
	case 1:
	default:
		return "", errors.New("more than one session cookie")
	}
	// Quoted: net/http strips the quotes, but SetCookie never sends them,
	// so a quoted value did not come from us.
	if _, ok := parseToken(cs[0].Value); !ok || cs[0].Quoted {
		return "", errMalformed
	}
	return cs[0].Value, nil
}
