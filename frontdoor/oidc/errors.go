package oidc

import "errors"

// Kind classifies a login failure. Kinds are constants, so callers match
// them with errors.Is(err, oidc.KindState) without any package-level
// variables.
type Kind string

// Error implements error so a Kind can be the target of errors.Is.
func (k Kind) Error() string { return string(k) }

const (
	KindConfig          Kind = "invalid configuration"
	KindDiscovery       Kind = "provider discovery failed"
	KindFlowCookie      Kind = "login flow cookie missing, expired or invalid"
	KindState           Kind = "state missing or mismatched"
	KindProviderError   Kind = "identity provider returned an error"
	KindIssuerMismatch  Kind = "authorization response from another issuer"
	KindMissingCode     Kind = "authorization code missing"
	KindClientSecret    Kind = "client secret unavailable"
	KindExchange        Kind = "code exchange failed"
	KindIDToken         Kind = "ID token invalid"
	KindIDTokenExpired  Kind = "ID token expired"
	KindNonce           Kind = "nonce mismatch"
	KindClaims          Kind = "required claim missing or malformed"
	KindEmailUnverified Kind = "email not verified"
	KindEmailDomain     Kind = "email domain not allowed"
	KindGroup           Kind = "not in an allowed group"
	KindRole            Kind = "no role for this user"
	KindTenant          Kind = "no valid tenant for this user"
)

// Error is every error New, Begin and Finish return. Reason is short and
// fit to show to the user; it never contains a token, code, secret or
// cookie value, and neither does the wrapped cause (provider error bodies
// are reduced to their RFC 6749 error code).
type Error struct {
	Kind   Kind
	Reason string
	Err    error // cause, for logs; may be nil
}

func (e *Error) Error() string {
	s := "oidc: " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool {
	k, ok := target.(Kind)
	return ok && k == e.Kind
}

func newError(k Kind, reason string, cause error) *Error {
	if reason == "" {
		reason = string(k)
	}
	return &Error{Kind: k, Reason: reason, Err: cause}
}

// KindOf returns the Kind of err, or "" if err is not from this package.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}
