package tlsconf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// ACMEConfig configures certificates from an ACME CA (Let's Encrypt by
// default) through autocert.
type ACMEConfig struct {
	// Hosts are the only names a certificate is requested for; any other
	// SNI is refused before the CA is contacted (rate limits, abuse).
	Hosts []string
	// CacheDir keeps the account key and certificates (created 0700).
	CacheDir string
	// Email is the optional account contact.
	Email string
	// DirectoryURL is the CA's directory; empty means Let's Encrypt
	// production.
	DirectoryURL string
}

// ACME returns an autocert.Manager for cfg. Serve m.TLSConfig() semantics
// through ACMETLSConfig, and its HTTP-01 challenges by wrapping the port-80
// handler: m.HTTPHandler(RedirectHandler(...)).
func ACME(cfg ACMEConfig) (*autocert.Manager, error) {
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("tlsconf: ACME needs at least one host")
	}
	for _, h := range cfg.Hosts {
		if h == "" || strings.ContainsAny(h, "/:*") {
			return nil, fmt.Errorf("tlsconf: ACME host %q must be a plain DNS name", h)
		}
	}
	if cfg.CacheDir == "" {
		return nil, errors.New("tlsconf: ACME needs a cache directory")
	}
	if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsconf: ACME cache: %w", err)
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(cfg.CacheDir),
		HostPolicy: autocert.HostWhitelist(cfg.Hosts...),
		Email:      cfg.Email,
	}
	if cfg.DirectoryURL != "" {
		m.Client = &acme.Client{DirectoryURL: cfg.DirectoryURL}
	}
	return m, nil
}

// ACMETLSConfig is NewConfig with m's certificates and the tls-alpn-01
// challenge protocol.
func ACMETLSConfig(m *autocert.Manager) *tls.Config {
	c := NewConfig(m.GetCertificate)
	c.NextProtos = append(c.NextProtos, acme.ALPNProto)
	return c
}
