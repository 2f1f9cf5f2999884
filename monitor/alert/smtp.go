package alert

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"time"
)

// SMTPConfig configures an SMTP sink.
type SMTPConfig struct {
	Name string
	// Address is host:port of the submission server.
	Address string
	From    string
	To      []string
	// Username and Password authenticate with AUTH PLAIN (Username empty:
	// no AUTH). The password is only ever sent over TLS, or in the clear
	// to a loopback relay with StartTLS "none".
	Username string
	Password []byte
	// StartTLS is "required" (default: refuse to send when the server
	// does not offer it) or "none" (no TLS; loopback addresses only).
	StartTLS string
	// RootCAs verify the server (nil: system roots).
	RootCAs *x509.CertPool
	// Hostname names this machine in EHLO and Message-ID (default
	// os.Hostname).
	Hostname string
	// Timeout bounds one delivery (default 30s).
	Timeout time.Duration
}

// SMTP mails each alert as plain text.
type SMTP struct {
	cfg  SMTPConfig
	host string
	from *mail.Address
	to   []*mail.Address
}

// NewSMTP checks cfg and returns an SMTP sink.
func NewSMTP(cfg SMTPConfig) (*SMTP, error) {
	host, _, err := net.SplitHostPort(cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: use host:port: %w", cfg.Address, err)
	}
	switch cfg.StartTLS {
	case "":
		cfg.StartTLS = "required"
	case "required":
	case "none":
		if !isLoopback(host) {
			return nil, fmt.Errorf("starttls none is only allowed to a loopback address, not %s", host)
		}
	default:
		return nil, fmt.Errorf("starttls %q: use required or none", cfg.StartTLS)
	}
	s := &SMTP{cfg: cfg, host: host}
	if s.from, err = mail.ParseAddress(cfg.From); err != nil {
		return nil, fmt.Errorf("from %q: %w", cfg.From, err)
	}
	if len(cfg.To) == 0 {
		return nil, errors.New("no recipient (to)")
	}
	for _, t := range cfg.To {
		a, err := mail.ParseAddress(t)
		if err != nil {
			return nil, fmt.Errorf("to %q: %w", t, err)
		}
		s.to = append(s.to, a)
	}
	if cfg.Username != "" && len(cfg.Password) == 0 {
		return nil, errors.New("username without a password")
	}
	s.cfg.Password = bytes.Clone(cfg.Password)
	if s.cfg.Hostname == "" {
		s.cfg.Hostname, _ = os.Hostname()
		if s.cfg.Hostname == "" {
			s.cfg.Hostname = "localhost"
		}
	}
	if s.cfg.Timeout <= 0 {
		s.cfg.Timeout = 30 * time.Second
	}
	return s, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Name implements Sink.
func (s *SMTP) Name() string { return s.cfg.Name }

// Send implements Sink.
func (s *SMTP) Send(ctx context.Context, a Alert) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("smtp %s: %w", s.cfg.Address, err)
	}
	// net/smtp takes no context: the deadline bounds the whole
	// conversation, and cancellation closes the connection.
	dl, _ := ctx.Deadline()
	conn.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	if err := s.deliver(conn, a); err != nil {
		return fmt.Errorf("smtp %s: %w", s.cfg.Address, classifySMTP(err))
	}
	return nil
}

func (s *SMTP) deliver(conn net.Conn, a Alert) error {
	c, err := smtp.NewClient(conn, s.host)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello(s.cfg.Hostname); err != nil {
		return err
	}
	if s.cfg.StartTLS == "required" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			// Nothing else is said to this server: no AUTH (the
			// password), no MAIL (the evidence).
			return Permanent(errors.New("server does not offer STARTTLS; refusing to send (starttls: none is allowed only to a loopback relay)"))
		}
		if err := c.StartTLS(&tls.Config{ServerName: s.host, RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12}); err != nil {
			return Permanent(fmt.Errorf("STARTTLS: %w", err))
		}
	}
	if s.cfg.Username != "" {
		// smtp.PlainAuth itself refuses to send the password without TLS
		// unless the server is localhost: a second guard.
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, string(s.cfg.Password), s.host)); err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, t := range s.to {
		if err := c.Rcpt(t.Address); err != nil {
			return fmt.Errorf("RCPT TO %s: %w", t.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(s.message(a)); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	return c.Quit()
}

// classifySMTP marks 5xx replies permanent; 4xx and network errors are
// retried.
func classifySMTP(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return Permanent(err)
	}
	return err
}

// message renders an RFC 5322 message. Header values are single-line
// (oneLine) and RFC 2047-encoded when not ASCII, so an alert title cannot
// inject headers.
func (s *SMTP) message(a Alert) []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("Date", a.Time.Format(time.RFC1123Z))
	h("Message-ID", "<"+oneLine(a.ID)+"."+fmt.Sprint(a.Time.Unix())+"@"+oneLine(strings.ReplaceAll(s.cfg.Hostname, ">", ""))+">")
	h("From", s.from.String())
	to := make([]string, len(s.to))
	for i, t := range s.to {
		to[i] = t.String()
	}
	h("To", strings.Join(to, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", "[clawhold] "+subjectLine(a)))
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated")
	h("X-Clawhold-Alert-ID", oneLine(a.ID))
	h("X-Clawhold-Rule", mime.QEncoding.Encode("utf-8", oneLine(a.Rule)))
	h("X-Clawhold-Severity", a.Severity.String())
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	qp.Write([]byte(strings.ReplaceAll(textBody(a), "\n", "\r\n")))
	qp.Close()
	return b.Bytes()
}
