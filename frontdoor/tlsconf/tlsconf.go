// Package tlsconf is the front door's TLS: a server *tls.Config with a
// modern protocol floor, certificates from files (reloaded when they
// change), a persisted self-signed certificate or ACME, and the HTTP
// middleware a TLS-only site needs (security headers, HTTP→HTTPS redirect).
package tlsconf

import (
	"crypto/tls"
)

// CipherSuites are the TLS 1.2 suites allowed: ECDHE key exchange (forward
// secrecy) with an AEAD only; no CBC, no RSA key exchange. (Go orders them
// itself, AES-GCM first when the CPU has AES instructions.) TLS 1.3 suites are not configurable in Go and
// are all AEAD (AES-GCM, ChaCha20-Poly1305).
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// CurvePreferences are the key exchange groups allowed. Go ignores the
// order of this list (as of 1.24) and picks by its own preference, which
// is X25519MLKEM768, X25519, P-256, P-384: X25519 is first among the
// classical groups. The X25519MLKEM768 hybrid (X25519 plus post-quantum
// ML-KEM) stays ahead of it for TLS 1.3 clients that offer it; removing it
// would weaken those connections. P-521 and the P-curve hybrids are left out.
var CurvePreferences = []tls.CurveID{
	tls.X25519MLKEM768,
	tls.X25519,
	tls.CurveP256,
	tls.CurveP384,
}

// NewConfig returns a server config taking certificates from getCert: TLS
// 1.2 minimum (Go always negotiates 1.3 with a client that has it), the
// suites and groups above, HTTP/2 and HTTP/1.1 by ALPN. WebSockets use
// HTTP/1.1: Go's HTTP/2 server does not offer RFC 8441 extended CONNECT
// unless GODEBUG=http2xconnect=1, so browsers open an HTTP/1.1 connection
// for them.
func NewConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS12,
		MaxVersion:       tls.VersionTLS13,
		CipherSuites:     append([]uint16(nil), CipherSuites...),
		CurvePreferences: append([]tls.CurveID(nil), CurvePreferences...),
		GetCertificate:   getCert,
		NextProtos:       []string{"h2", "http/1.1"},
	}
}
