package proxy

import (
	"log/slog"
	"net/http"
	"time"
)

// Server limits NewServer applies.
const (
	ServerReadHeaderTimeout = 10 * time.Second
	ServerIdleTimeout       = 2 * time.Minute
	ServerMaxHeaderBytes    = 32 << 10
)

// NewServer returns an http.Server for the front door with limits a public
// listener needs: request headers (and the TLS handshake) must arrive
// within ServerReadHeaderTimeout (slowloris), are at most
// ServerMaxHeaderBytes (larger gets 431), and idle keep-alive connections
// are closed. There is no ReadTimeout or WriteTimeout, since they would cut
// WebSockets and streamed responses; Proxy bounds request bodies itself.
// Set Addr, TLSConfig and ErrorLog as needed.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:                      h,
		ReadHeaderTimeout:            ServerReadHeaderTimeout,
		IdleTimeout:                  ServerIdleTimeout,
		MaxHeaderBytes:               ServerMaxHeaderBytes,
		DisableGeneralOptionsHandler: true, // "OPTIONS *" goes to h, which refuses it
		ErrorLog:                     slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
}
