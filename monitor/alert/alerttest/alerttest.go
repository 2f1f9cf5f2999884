// Package alerttest runs a real mail server on loopback for tests of alert
// delivery: emersion/go-smtp offering STARTTLS with a certificate of its
// own and AUTH PLAIN (in plaintext too, so a client that would send its
// password without TLS is caught).
package alerttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is one message the server accepted.
type Mail struct {
	From string
	To   []string
	Data []byte
	TLS  bool // the DATA arrived over STARTTLS
	At   time.Time
}

// MailServer is a real SMTP server on 127.0.0.1 that records what each
// client did. It offers AUTH PLAIN in plaintext too, so a client that would
// send its password without TLS is caught (AuthTLS).
type MailServer struct {
	Addr string
	// Pool trusts the server's certificate (nil without TLS); CAPEM is the
	// same certificate in PEM, for a ca_file.
	Pool  *x509.CertPool
	CAPEM []byte

	user, pass string

	mu      sync.Mutex
	auths   []string
	authTLS []bool
	mails   int
	msgs    []Mail
}

// StartMailServer starts a server accepting AUTH PLAIN for user and pass;
// withTLS offers STARTTLS with a certificate for 127.0.0.1.
func StartMailServer(t testing.TB, withTLS bool, user, pass string) *MailServer {
	t.Helper()
	ms := &MailServer{user: user, pass: pass}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: ms, conn: c}, nil
	}))
	srv.Domain = "mail.test"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = quiet{}
	if withTLS {
		cert, pemBytes := selfSigned(t, "mail.test")
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ms.Pool = x509.NewCertPool()
		ms.Pool.AppendCertsFromPEM(pemBytes)
		ms.CAPEM = pemBytes
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.Addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ms
}

// WriteCA writes the server's certificate to path (for a sink's ca_file).
func (ms *MailServer) WriteCA(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, ms.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Messages returns what was delivered so far.
func (ms *MailServer) Messages() []Mail {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]Mail(nil), ms.msgs...)
}

// Auths returns each AUTH attempt as "user:password", and whether it came
// over TLS.
func (ms *MailServer) Auths() ([]string, []bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]string(nil), ms.auths...), append([]bool(nil), ms.authTLS...)
}

// MailCommands counts MAIL FROM commands (attempts to send).
func (ms *MailServer) MailCommands() int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return ms.mails
}

type session struct {
	srv  *MailServer
	conn *smtp.Conn
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		_, isTLS := s.conn.TLSConnectionState()
		s.srv.mu.Lock()
		s.srv.auths = append(s.srv.auths, user+":"+pass)
		s.srv.authTLS = append(s.srv.authTLS, isTLS)
		s.srv.mu.Unlock()
		if user != s.srv.user || pass != s.srv.pass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	s.srv.mails++
	s.srv.mu.Unlock()
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if len(to) > 7 && to[:7] == "nobody@" {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	s.srv.msgs = append(s.srv.msgs, Mail{From: s.from, To: s.to, Data: b, TLS: isTLS, At: time.Now()})
	s.srv.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

type quiet struct{}

func (quiet) Printf(string, ...any) {}
func (quiet) Println(...any)        {}

// selfSigned returns a certificate for 127.0.0.1 and its PEM.
func selfSigned(t testing.TB, cn string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
