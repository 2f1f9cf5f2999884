package alert

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/clawhold/clawhold/config"
)

// SecretFunc returns a system secret's value by name.
type SecretFunc func(ctx context.Context, name string) ([]byte, error)

// FromConfig builds one route per configured sink, in order; errors name
// the key, e.g. "alerts.sinks[1].url: …". Secrets (the webhook HMAC key,
// the SMTP password) are read now through secret; a sink whose secret is
// not there yet is built at its first send and fails until then
// (Unresolved lists them, for a warning at startup). stderr is where a
// stderr sink writes.
func FromConfig(cfg config.Alerts, secret SecretFunc, stderr io.Writer) ([]Route, error) {
	// FromConfig has no context of its own (the signature the monitor
	// uses); secret lookups are local database reads.
	ctx := context.Background()
	routes := make([]Route, 0, len(cfg.Sinks))
	seen := map[string]bool{}
	for i, sc := range cfg.Sinks {
		key := func(k string) string { return fmt.Sprintf("alerts.sinks[%d].%s", i, k) }
		name := sc.Name
		if name == "" {
			name = sc.Type
		}
		if seen[name] {
			return nil, fmt.Errorf("%s: a second sink named %q: give each sink a distinct name", key("name"), name)
		}
		seen[name] = true
		r := Route{MinSeverity: Medium, Rules: sc.Rules}
		if sc.MinSeverity != "" {
			sev, err := ParseSeverity(sc.MinSeverity)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", key("min_severity"), err)
			}
			r.MinSeverity = sev
		}
		getSecret := func() ([]byte, error) {
			if sc.Secret == "" {
				return nil, nil
			}
			if secret == nil {
				return nil, fmt.Errorf("%s: no secret store to read %q from", key("secret"), sc.Secret)
			}
			v, err := secret(ctx, sc.Secret)
			if err != nil {
				return nil, &secretError{fmt.Errorf("%s: reading system secret %q: %w (store it with `clawhold secrets set --tenant system %s`)", key("secret"), sc.Secret, err, sc.Secret)}
			}
			if len(v) == 0 {
				return nil, &secretError{fmt.Errorf("%s: system secret %q is empty", key("secret"), sc.Secret)}
			}
			return v, nil
		}
		build := func() (Sink, error) {
			var r Route
			var client *http.Client
			if sc.Type == "webhook" || sc.Type == "slack" {
				var err error
				if client, err = HTTPClient(sc.CAFile); err != nil {
					return nil, fmt.Errorf("%s: %w", key("ca_file"), err)
				}
			}
			var err error
			switch sc.Type {
			case "webhook":
				var k []byte
				if k, err = getSecret(); err != nil {
					return nil, err
				}
				if k == nil {
					return nil, fmt.Errorf("%s: a webhook signs every alert; name the system secret holding its HMAC key", key("secret"))
				}
				r.Sink, err = NewWebhook(name, sc.URL, k, client)
				if err != nil {
					err = fmt.Errorf("%s: %w", key("url"), err)
				}
			case "slack":
				r.Sink, err = NewSlack(name, sc.URL, client)
				if err != nil {
					err = fmt.Errorf("%s: %w", key("url"), err)
				}
			case "smtp":
				var pw []byte
				if sc.Username != "" {
					if pw, err = getSecret(); err != nil {
						return nil, err
					}
				}
				var pool *x509.CertPool
				if sc.CAFile != "" {
					if pool, err = certPool(sc.CAFile); err != nil {
						return nil, fmt.Errorf("%s: %w", key("ca_file"), err)
					}
				}
				r.Sink, err = NewSMTP(SMTPConfig{Name: name, Address: sc.Address, From: sc.From, To: sc.To,
					Username: sc.Username, Password: pw, StartTLS: sc.StartTLS, RootCAs: pool})
				if err != nil {
					err = fmt.Errorf("alerts.sinks[%d] (smtp %s): %w", i, name, err)
				}
			case "syslog":
				if _, ok := facilities[sc.Facility]; sc.Facility != "" && !ok {
					return nil, fmt.Errorf("%s: unknown facility %q", key("facility"), sc.Facility)
				}
				r.Sink, err = NewSyslog(name, sc.Address, sc.Facility)
				if err != nil {
					err = fmt.Errorf("%s: %w", key("address"), err)
				}
			case "stderr":
				r.Sink = NewWriter(name, stderr)
			default:
				err = fmt.Errorf("%s is %q: use webhook, slack, smtp, syslog or stderr", key("type"), sc.Type)
			}
			return r.Sink, err
		}
		sink, err := build()
		var missing *secretError
		switch {
		case errors.As(err, &missing):
			// Stored later (clawhold up starts before an operator can
			// store secrets): built at the first send, failing until then.
			sink = &deferred{name: name, build: build, err: err}
		case err != nil:
			return nil, err
		}
		r.Sink = sink
		routes = append(routes, r)
	}
	return routes, nil
}

// secretError is a sink's secret that could not be read.
type secretError struct{ error }

func (e *secretError) Unwrap() error { return e.error }

// deferred is a sink whose secret was missing when it was configured.
type deferred struct {
	name  string
	build func() (Sink, error)

	mu  sync.Mutex
	s   Sink
	err error
}

func (d *deferred) Name() string { return d.name }

func (d *deferred) Send(ctx context.Context, a Alert) error {
	d.mu.Lock()
	if d.s == nil {
		d.s, d.err = d.build()
	}
	s, err := d.s, d.err
	d.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Send(ctx, a)
}

// Unresolved returns, for each sink still waiting for its secret, why.
func Unresolved(routes []Route) []error {
	var out []error
	for _, r := range routes {
		if d, ok := r.Sink.(*deferred); ok {
			d.mu.Lock()
			if d.s == nil {
				out = append(out, d.err)
			}
			d.mu.Unlock()
		}
	}
	return out
}
