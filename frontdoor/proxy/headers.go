package proxy

import (
	"net/http"
	"strings"
)

// clientAddressHeaders are headers some proxy or framework reads a client
// address from. OpenClaw reads X-Forwarded-For and (with
// allowRealIpFallback) X-Real-IP; the rest go too so that nothing behind the
// gateway is fooled either.
var clientAddressHeaders = map[string]bool{
	"forwarded":                true,
	"x-real-ip":                true,
	"x-client-ip":              true,
	"x-cluster-client-ip":      true,
	"client-ip":                true,
	"true-client-ip":           true,
	"cf-connecting-ip":         true,
	"fastly-client-ip":         true,
	"x-original-forwarded-for": true,
	"x-forwarded":              true,
	"forwarded-for":            true,
	// Credentials for the front door or for the gateway's own auth modes
	// never reach the (untrusted) gateway: the identity travels only in
	// the user header.
	"authorization": true,
	"cookie":        true,
}

// normName lowercases a header name and maps '_' to '-', because some
// servers treat x_forwarded_user as x-forwarded-user.
func normName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// isClientHeader reports whether a client-supplied header called name must
// not reach the gateway. userHeader is in normName form.
func isClientHeader(name, userHeader string) bool {
	n := normName(name)
	return n == userHeader ||
		strings.HasPrefix(n, "x-forwarded-") ||
		strings.HasPrefix(n, "x-openclaw-") ||
		clientAddressHeaders[n]
}

// stripClientHeaders deletes, whatever their case and however often they
// occur, the headers isClientHeader names. Headers a client listed in
// Connection were already removed by httputil.ReverseProxy (hop-by-hop).
func stripClientHeaders(h http.Header, userHeader string) {
	uh := normName(userHeader)
	for k := range h {
		if isClientHeader(k, uh) {
			delete(h, k)
		}
	}
}

// isUpgrade reports whether h asks for a protocol upgrade the way
// httputil.ReverseProxy recognises one (Connection: upgrade plus Upgrade).
func isUpgrade(h http.Header) bool {
	if h.Get("Upgrade") == "" {
		return false
	}
	for _, v := range h.Values("Connection") {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

// isWebSocketUpgrade reports whether the upgrade asked for is exactly
// WebSocket; other protocols (h2c, ...) are not passed to the gateway.
func isWebSocketUpgrade(h http.Header) bool {
	v := h.Values("Upgrade")
	return len(v) == 1 && strings.EqualFold(strings.TrimSpace(v[0]), "websocket")
}
