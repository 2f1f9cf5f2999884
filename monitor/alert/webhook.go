package alert

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// The webhook signature headers. The signature is
// "v1=" + hex(HMAC-SHA256(key, timestamp + "." + body)) where timestamp is
// the X-Clawhold-Timestamp value (unix seconds): binding the time into the
// MAC lets a receiver refuse replays of an old, validly signed request.
const (
	TimestampHeader = "X-Clawhold-Timestamp"
	SignatureHeader = "X-Clawhold-Signature"
)

// DefaultMaxSkew is how far a webhook timestamp may be from the receiver's
// clock when VerifyWebhook is given no bound.
const DefaultMaxSkew = 5 * time.Minute

// Errors VerifyWebhook returns, for receivers that answer differently.
var (
	ErrMissingSignature = errors.New("missing " + SignatureHeader + " or " + TimestampHeader)
	ErrBadSignature     = errors.New("signature does not match")
	ErrStaleTimestamp   = errors.New("timestamp outside the allowed skew (replay?)")
)

// Sign returns the X-Clawhold-Signature value for body sent at timestamp
// (unix seconds, as sent in X-Clawhold-Timestamp).
func Sign(key []byte, timestamp string, body []byte) string {
	return "v1=" + hex.EncodeToString(mac(key, timestamp, body))
}

func mac(key []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// VerifyWebhook checks a received webhook: signature is the
// X-Clawhold-Signature header (one or more comma-separated "v1=<hex>"
// values, so a sender may sign with an old and a new key while rotating),
// timestamp the X-Clawhold-Timestamp header, body the raw request body.
// The timestamp must be within maxSkew of now (DefaultMaxSkew if ≤ 0) in
// either direction; the MAC is compared in constant time.
func VerifyWebhook(key []byte, timestamp, signature string, body []byte, now time.Time, maxSkew time.Duration) error {
	if timestamp == "" || signature == "" {
		return ErrMissingSignature
	}
	if len(key) == 0 {
		return errors.New("verifying webhook: empty key")
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad timestamp %q", ErrStaleTimestamp, timestamp)
	}
	if maxSkew <= 0 {
		maxSkew = DefaultMaxSkew
	}
	if d := now.Sub(time.Unix(ts, 0)); d > maxSkew || d < -maxSkew {
		return ErrStaleTimestamp
	}
	want := mac(key, timestamp, body)
	ok := false
	for _, s := range strings.Split(signature, ",") {
		v, found := strings.CutPrefix(strings.TrimSpace(s), "v1=")
		if !found {
			continue
		}
		got, err := hex.DecodeString(v)
		if err != nil {
			continue
		}
		// Check every candidate (no early exit) so timing says nothing
		// about which one matched.
		if hmac.Equal(got, want) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// HTTPClient returns the client webhook and Slack sinks use: system roots
// plus the PEM certificates in caFile (if any), a timeout, and no
// redirects (a redirect would re-send evidence to a place not configured).
func HTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := certPool(caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// certPool is the system roots plus caFile's certificates.
func certPool(caFile string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	return pool, nil
}

// Webhook POSTs each alert as JSON, signed with HMAC-SHA256.
type Webhook struct {
	name   string
	url    string
	key    []byte
	client *http.Client
	now    func() time.Time
}

// NewWebhook returns a webhook sink. key is the HMAC key (required);
// client nil means HTTPClient("").
func NewWebhook(name, rawURL string, key []byte, client *http.Client) (*Webhook, error) {
	if err := checkURL(rawURL); err != nil {
		return nil, err
	}
	if len(key) == 0 {
		return nil, errors.New("webhook needs an HMAC key")
	}
	if client == nil {
		client, _ = HTTPClient("")
	}
	return &Webhook{name: name, url: rawURL, key: bytes.Clone(key), client: client, now: time.Now}, nil
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("need an http(s) URL")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return errors.New("alerts carry evidence: use https (plain http only to loopback)")
	}
	return nil
}

// Name implements Sink.
func (w *Webhook) Name() string { return w.name }

// Send implements Sink.
func (w *Webhook) Send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(a)
	if err != nil {
		return Permanent(fmt.Errorf("encoding alert: %w", err))
	}
	ts := strconv.FormatInt(w.now().Unix(), 10)
	return post(ctx, w.client, w.url, body, map[string]string{
		TimestampHeader: ts,
		SignatureHeader: Sign(w.key, ts, body),
	})
}

// Slack posts to a Slack-compatible incoming webhook (Slack, Mattermost,
// Rocket.Chat): {"text": …} plus simple blocks. The URL is the credential.
type Slack struct {
	name   string
	url    string
	client *http.Client
}

// NewSlack returns a Slack sink; client nil means HTTPClient("").
func NewSlack(name, rawURL string, client *http.Client) (*Slack, error) {
	if err := checkURL(rawURL); err != nil {
		return nil, err
	}
	if client == nil {
		client, _ = HTTPClient("")
	}
	return &Slack{name: name, url: rawURL, client: client}, nil
}

// Name implements Sink.
func (s *Slack) Name() string { return s.name }

// Send implements Sink.
func (s *Slack) Send(ctx context.Context, a Alert) error {
	body, err := json.Marshal(slackMessage(a))
	if err != nil {
		return Permanent(fmt.Errorf("encoding alert: %w", err))
	}
	return post(ctx, s.client, s.url, body, nil)
}

// slackEscape escapes what Slack's mrkdwn treats as control: &, <, >
// (so an alert cannot ping @channel or forge links).
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

func slackMessage(a Alert) map[string]any {
	title := "[clawhold] " + subjectLine(a)
	var ctx []string
	for _, kv := range [][2]string{{"rule", a.Rule}, {"tenant", a.Tenant}, {"user", a.User}, {"subject", a.Subject}, {"technique", a.Technique}} {
		if kv[1] != "" {
			ctx = append(ctx, kv[0]+" `"+slackEscape(strings.ReplaceAll(oneLine(kv[1]), "`", "'"))+"`")
		}
	}
	detail := a.Description
	if a.Count > 1 {
		detail += fmt.Sprintf("\n%d occurrences, %s – %s", a.Count, a.FirstSeen.UTC().Format(time.RFC3339), a.LastSeen.UTC().Format(time.RFC3339))
	}
	blocks := []slackBlock{{Type: "header", Text: &slackText{Type: "plain_text", Text: truncate(title, 150)}}}
	if d := strings.TrimSpace(detail); d != "" {
		blocks = append(blocks, slackBlock{Type: "section", Text: &slackText{Type: "mrkdwn", Text: truncate(slackEscape(d), 3000)}})
	}
	if len(ctx) > 0 {
		blocks = append(blocks, slackBlock{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: truncate(strings.Join(ctx, " · "), 3000)}}})
	}
	return map[string]any{"text": slackEscape(title), "blocks": blocks}
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}

// post sends body and classifies the outcome. Errors name the host, never
// the full URL: a Slack URL is a credential, and so may a path be.
func post(ctx context.Context, c *http.Client, rawURL string, body []byte, headers map[string]string) error {
	u, _ := url.Parse(rawURL)
	where := u.Scheme + "://" + u.Host
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("POST %s: %w", where, redact(err)))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "clawhold-alert/1")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", where, redact(err))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("POST %s: %s: %s", where, resp.Status, strings.TrimSpace(oneLine(string(msg))))
	switch {
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return err
	}
	return Permanent(err)
}

// redact drops the URL a *url.Error carries.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
