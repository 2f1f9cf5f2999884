package egress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

const (
	// caValidity is how long a CA made by NewCA is valid. It is short so
	// that a leaked CA key (it is trusted by one OpenClaw instance only)
	// stops mattering soon; the caller rotates it by making a new one and
	// rewriting OpenClaw's CA file.
	caValidity = 90 * 24 * time.Hour
	// caLeafValidity is how long an intercepting leaf certificate is valid.
	caLeafValidity = 24 * time.Hour
	// caLeafRenew is how long before its expiry a cached leaf is replaced.
	caLeafRenew = time.Hour
	// caBackdate is subtracted from NotBefore to tolerate clock skew
	// between the proxy and its client.
	caBackdate = 5 * time.Minute
	// caMaxLeaves bounds the per-CA leaf cache.
	caMaxLeaves = 256
)

// CA is a local certificate authority used to terminate the TLS of
// intercepted (credential-injecting) tunnels. The client trusts it through
// OpenClaw's proxy.tls.caFile or NODE_EXTRA_CA_CERTS. Its methods are safe
// for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey

	mu     sync.Mutex
	leaves map[string]*tls.Certificate // by normalised host
}

// NewCA makes a self-signed ECDSA P-256 CA named "clawhold egress <name>",
// valid for 90 days, that can sign leaf certificates only (MaxPathLen 0).
// It has no name constraints: a policy's bound hosts may change during the
// CA's life, and only the one OpenClaw instance given its certificate
// trusts it. Rotate it by making a new one before Certificate().NotAfter.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("egress: generating CA key: %w", err)
	}
	serial, err := caSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "clawhold egress " + name, Organization: []string{"clawhold"}},
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("egress: creating CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("egress: parsing CA certificate: %w", err)
	}
	return caNew(cert, key), nil
}

func caNew(cert *x509.Certificate, key *ecdsa.PrivateKey) *CA {
	return &CA{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		key:     key,
		leaves:  make(map[string]*tls.Certificate),
	}
}

// ParseCA loads a CA from the PEM encodings made by CertPEM and KeyPEM. The
// key may be a PKCS #8 "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY" block; it must
// be an ECDSA key matching the certificate, which must be a CA certificate.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("egress: CA certificate: no PEM CERTIFICATE block")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("egress: CA certificate: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, errors.New("egress: CA certificate is not a CA")
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("egress: CA key: no PEM block")
	}
	var key *ecdsa.PrivateKey
	switch kb.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("egress: CA key: %w", err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("egress: CA key: %T, want ECDSA", k)
		}
		key = ek
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("egress: CA key: %w", err)
		}
	default:
		return nil, fmt.Errorf("egress: CA key: unexpected PEM block %q", kb.Type)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("egress: CA key does not match the CA certificate")
	}
	return caNew(cert, key), nil
}

// CertPEM returns the CA certificate, PEM-encoded: the file OpenClaw trusts.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// KeyPEM returns the CA private key as a PEM "PRIVATE KEY" (PKCS #8) block.
// The caller must seal it before storing it.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("egress: marshalling CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Certificate returns the parsed CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPool returns a pool holding only the CA certificate.
func (ca *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Leaf returns a certificate and key for exactly host (a DNS name, or an IP
// address, which gets an IP SAN), signed by ca and valid for at most 24
// hours and never beyond the CA's own expiry. Leaves are cached per host
// (at most 256) and replaced an hour before they expire.
func (ca *CA) Leaf(host string) (*tls.Certificate, error) {
	host = caHost(host)
	if host == "" {
		return nil, errors.New("egress: leaf certificate: empty host")
	}
	now := time.Now()
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if c, ok := ca.leaves[host]; ok && now.Add(caLeafRenew).Before(c.Leaf.NotAfter) {
		return c, nil
	}
	if !now.Before(ca.cert.NotAfter) {
		return nil, fmt.Errorf("egress: CA %q expired at %s", ca.cert.Subject.CommonName, ca.cert.NotAfter.UTC().Format(time.RFC3339))
	}
	c, err := ca.sign(host, now)
	if err != nil {
		return nil, err
	}
	if _, ok := ca.leaves[host]; !ok && len(ca.leaves) >= caMaxLeaves {
		ca.evictLocked(now)
	}
	ca.leaves[host] = c
	return c, nil
}

// evictLocked makes room in the leaf cache: it drops every leaf that is due
// for renewal, and if none is, the one expiring soonest.
func (ca *CA) evictLocked(now time.Time) {
	var oldest string
	for h, c := range ca.leaves {
		if !now.Add(caLeafRenew).Before(c.Leaf.NotAfter) {
			delete(ca.leaves, h)
			continue
		}
		if oldest == "" || c.Leaf.NotAfter.Before(ca.leaves[oldest].Leaf.NotAfter) {
			oldest = h
		}
	}
	if len(ca.leaves) >= caMaxLeaves && oldest != "" {
		delete(ca.leaves, oldest)
	}
}

func (ca *CA) sign(host string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("egress: generating leaf key: %w", err)
	}
	serial, err := caSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(caLeafValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host},
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if a, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = []net.IP{a.AsSlice()}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("egress: signing leaf for %q: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("egress: parsing leaf for %q: %w", host, err)
	}
	return &tls.Certificate{
		Certificate: [][]byte{der, ca.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// caHost lower-cases host and removes a trailing dot, IPv6 brackets and
// any zone.
func caHost(host string) string {
	host = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(host); err == nil {
		return a.WithZone("").Unmap().String()
	}
	return host
}

func caSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("egress: certificate serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}
