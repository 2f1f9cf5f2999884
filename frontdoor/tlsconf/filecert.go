package tlsconf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultCheckInterval is how often FileCert looks at its files.
const DefaultCheckInterval = 10 * time.Second

// FileCert serves a certificate from PEM cert and key files and picks up
// new files (a renewal by certbot, cert-manager, ...) without a restart:
// GetCertificate stats both files at most once per interval and reloads
// when either changed. A new pair that does not load (half-written,
// mismatched, expired) is logged and the old certificate stays in use; it
// is retried when the files change again.
type FileCert struct {
	certFile, keyFile string
	interval          time.Duration
	logger            *slog.Logger
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     fileStamp // of the files cert came from
	badStamp  fileStamp // of the last pair that failed to load
	lastCheck time.Time
}

// fileStamp identifies a version of the cert and key files.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// FileCertOptions configure LoadFileCert.
type FileCertOptions struct {
	CheckInterval time.Duration // default DefaultCheckInterval
	Logger        *slog.Logger  // default slog.Default()
}

// LoadFileCert loads the pair and returns a FileCert serving it. A pair that
// does not load now is an error: there is nothing old to fall back to.
func LoadFileCert(certFile, keyFile string, opts FileCertOptions) (*FileCert, error) {
	c := &FileCert{
		certFile: certFile,
		keyFile:  keyFile,
		interval: opts.CheckInterval,
		logger:   opts.Logger,
		now:      time.Now,
	}
	if c.interval <= 0 {
		c.interval = DefaultCheckInterval
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	st, err := c.statFiles()
	if err != nil {
		return nil, err
	}
	cert, err := c.load()
	if err != nil {
		return nil, err
	}
	c.cert, c.stamp, c.lastCheck = cert, st, c.now()
	return c, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (c *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.lastCheck) >= c.interval {
		c.lastCheck = now
		c.reloadLocked()
	}
	return c.cert, nil
}

// Certificate returns the certificate in use.
func (c *FileCert) Certificate() *tls.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert
}

func (c *FileCert) reloadLocked() {
	st, err := c.statFiles()
	if err != nil {
		if st != c.badStamp {
			c.logger.Error("tlsconf: certificate files unreadable; keeping the loaded certificate", "err", err)
			c.badStamp = st
		}
		return
	}
	if st == c.stamp || st == c.badStamp {
		return
	}
	cert, err := c.load()
	if err != nil {
		c.logger.Error("tlsconf: new certificate does not load; keeping the old one", "err", err)
		c.badStamp = st
		return
	}
	c.cert, c.stamp = cert, st
	c.logger.Info("tlsconf: reloaded certificate", "cert", c.certFile,
		"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
}

func (c *FileCert) statFiles() (fileStamp, error) {
	var st fileStamp
	ci, err := os.Stat(c.certFile)
	if err != nil {
		return st, fmt.Errorf("tlsconf: certificate file: %w", err)
	}
	ki, err := os.Stat(c.keyFile)
	if err != nil {
		return st, fmt.Errorf("tlsconf: key file: %w", err)
	}
	return fileStamp{ci.ModTime(), ki.ModTime(), ci.Size(), ki.Size()}, nil
}

func (c *FileCert) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: loading %s and %s: %w", c.certFile, c.keyFile, err)
	}
	if cert.Leaf == nil {
		return nil, errors.New("tlsconf: certificate has no leaf")
	}
	if now := c.now(); now.After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("tlsconf: certificate %s expired on %s", c.certFile, cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	return &cert, nil
}
