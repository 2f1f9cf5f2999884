package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Validate checks c as Load does, for a Config built in code. Load calls
// it on every file it reads; errors then also carry the line of the key.
func (c *Config) Validate() error {
	return c.validate(nil)
}

// validate checks c. lines maps dotted keys to the line they were set on in
// c.Path, for error messages; it may be nil.
func (c *Config) validate(lines map[string]int) error {
	v := &validator{file: c.Path, lines: lines}

	v.absPath("data_dir", c.DataDir)

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")

	pg := c.Store.Postgres
	v.oneOf("store.backend", c.Store.Backend, "sqlite", "postgres")
	if c.Store.Backend == "postgres" {
		v.required("store.backend", "postgres", "store.postgres.dsn", pg.DSN,
			"postgres://clawhold@db.internal:5432/clawhold?sslmode=verify-full")
	}
	if dsnHasPassword(pg.DSN) {
		v.errorf("store.postgres.dsn", "store.postgres.dsn contains a password: remove it from the DSN "+
			"and put the password in a file named by store.postgres.password_file (mode 0600, owned by clawhold's user)")
	}
	v.absPath("store.postgres.password_file", pg.PasswordFile)
	if pg.MaxConns < 1 {
		v.errorf("store.postgres.max_conns", "store.postgres.max_conns is %d: it must be at least 1 (default 4)", pg.MaxConns)
	}

	k := c.Keys
	v.oneOf("keys.algorithm", k.Algorithm, "auto", "aes-256-gcm", "xchacha20-poly1305")
	switch {
	case k.MaxAge <= 0:
		v.errorf("keys.max_age", "keys.max_age is %s: it must be positive; the default and maximum is %s", k.MaxAge, MaxKeyAge)
	case k.MaxAge > MaxKeyAge:
		v.errorf("keys.max_age", "keys.max_age is %s: the maximum is %s (keys must rotate within 90 days); lower it", k.MaxAge, MaxKeyAge)
	}
	switch {
	case k.RotateAfter <= 0:
		v.errorf("keys.rotate_after", "keys.rotate_after is %s: it must be positive (default 80d)", k.RotateAfter)
	case k.MaxAge > 0 && k.RotateAfter >= k.MaxAge:
		v.errorf("keys.rotate_after", "keys.rotate_after is %s but keys.max_age is %s: keys must rotate before they expire; set keys.rotate_after below keys.max_age", k.RotateAfter, k.MaxAge)
	}
	switch window := k.MaxAge - k.RotateAfter; {
	case k.MaintainInterval < Duration(time.Minute):
		v.errorf("keys.maintain_interval", "keys.maintain_interval is %s: the minimum is 1m; raise it (default 1h)", k.MaintainInterval)
	case window > 0 && k.MaintainInterval > window:
		v.errorf("keys.maintain_interval", "keys.maintain_interval is %s, longer than the %s between keys.rotate_after and keys.max_age: "+
			"a key could expire before the maintainer rotates it; lower keys.maintain_interval or keys.rotate_after", k.MaintainInterval, window)
	}

	rk := c.RootKey
	v.oneOf("root_key.backend", rk.Backend, "file", "env", "systemd-credential", "vault-transit", "aws-kms", "gcp-kms")
	v.absPath("root_key.file", rk.File)
	v.absPath("root_key.vault.token_file", rk.Vault.TokenFile)
	v.absPath("root_key.vault.ca_cert", rk.Vault.CACert)
	v.absPath("root_key.gcp_kms.credentials_file", rk.GCPKMS.CredentialsFile)
	v.httpURL("root_key.vault.address", rk.Vault.Address)
	v.httpURL("root_key.aws_kms.endpoint", rk.AWSKMS.Endpoint)
	v.httpURL("root_key.gcp_kms.endpoint", rk.GCPKMS.Endpoint)
	switch rk.Backend {
	case "env":
		if !isEnvName(rk.Env) {
			v.errorf("root_key.env", "root_key.env is %q: it must name an environment variable (letters, digits and _, not starting with a digit), e.g. CLAWHOLD_ROOT_KEY", rk.Env)
		}
	case "systemd-credential":
		if rk.SystemdCredential == "" || strings.ContainsRune(rk.SystemdCredential, '/') {
			v.errorf("root_key.systemd_credential", "root_key.systemd_credential is %q: it must be a credential name without \"/\", as in LoadCredentialEncrypted=NAME:..., e.g. clawhold-root-key", rk.SystemdCredential)
		}
	case "vault-transit":
		v.required("root_key.backend", rk.Backend, "root_key.vault.address", rk.Vault.Address, "https://vault.internal:8200")
		v.required("root_key.backend", rk.Backend, "root_key.vault.key", rk.Vault.Key, "clawhold-root")
		if rk.Vault.Mount == "" {
			v.errorf("root_key.vault.mount", "root_key.vault.mount is empty: set the transit mount path (default transit)")
		}
	case "aws-kms":
		v.required("root_key.backend", rk.Backend, "root_key.aws_kms.key_id", rk.AWSKMS.KeyID, "alias/clawhold-root")
	case "gcp-kms":
		v.required("root_key.backend", rk.Backend, "root_key.gcp_kms.key_name", rk.GCPKMS.KeyName,
			"projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY")
		if name := rk.GCPKMS.KeyName; name != "" && !isGCPKeyName(name) {
			v.errorf("root_key.gcp_kms.key_name", "root_key.gcp_kms.key_name is %q: it must have the form projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY", name)
		}
	}

	v.egress(c.Egress)
	v.frontdoor(c.Frontdoor)
	v.cells(c.Cells, c.Tenants, c.Egress.Policies)
	v.backup(c.Backup)
	v.audit(c.Audit)
	v.monitor(c.Monitor)
	v.alerts(c.Alerts)

	return v.err()
}

// validator collects validation errors, each prefixed with the file and, when
// known, the line of the key it is about.
type validator struct {
	file  string
	lines map[string]int
	errs  []lineError
}

type lineError struct {
	line int // 0 if the key was not in the file
	err  error
}

func (v *validator) errorf(key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	line := v.lines[key]
	switch {
	case v.file != "" && line > 0:
		msg = fmt.Sprintf("%s:%d: %s", v.file, line, msg)
	case v.file != "":
		msg = v.file + ": " + msg
	}
	v.errs = append(v.errs, lineError{line, errors.New(msg)})
}

// err returns the errors joined in file order, those without a line last.
func (v *validator) err() error {
	slices.SortStableFunc(v.errs, func(a, b lineError) int {
		if (a.line == 0) != (b.line == 0) {
			return cmp.Compare(b.line, a.line) // the one with a line first
		}
		return cmp.Compare(a.line, b.line)
	})
	errs := make([]error, len(v.errs))
	for i, e := range v.errs {
		errs[i] = e.err
	}
	return errors.Join(errs...)
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	if slices.Contains(allowed, value) {
		return
	}
	hint := ""
	if s := suggest(strings.ToLower(value), allowed, ""); s != "" {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	v.errorf(key, "%s is %q: it must be one of %s%s", key, value, strings.Join(allowed, ", "), hint)
}

// required reports that backend, the value of backendKey, needs key set.
func (v *validator) required(backendKey, backend, key, value, example string) {
	if value == "" {
		v.errorf(backendKey, "%s is %s, which needs %s; set it, e.g. %s", backendKey, backend, key, example)
	}
}

func (v *validator) absPath(key, value string) {
	if value != "" && !filepath.IsAbs(value) {
		v.errorf(key, "%s is %q: use an absolute path (relative paths would depend on the directory clawhold starts in)", key, value)
	}
}

func (v *validator) httpURL(key, value string) {
	if value == "" {
		return
	}
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		v.errorf(key, "%s is %q: it must be an http(s) URL such as https://host:port", key, value)
	}
}

// dsnHasPassword reports whether the libpq connection string dsn, in URL or
// keyword/value form, carries a password.
func dsnHasPassword(dsn string) bool {
	rest, isURL := strings.CutPrefix(dsn, "postgres://")
	if !isURL {
		rest, isURL = strings.CutPrefix(dsn, "postgresql://")
	}
	if isURL {
		if u, err := url.Parse(dsn); err == nil {
			_, hasPass := u.User.Password()
			return hasPass || u.Query().Has("password")
		}
		// Unparsable: look at the userinfo by hand, erring on the side of
		// "has a password".
		if at := strings.LastIndexByte(rest, '@'); at >= 0 && strings.ContainsRune(rest[:at], ':') {
			return true
		}
		return strings.Contains(rest, "password=")
	}
	// Keyword/value form: "host=db user=clawhold password=secret".
	lower := strings.ToLower(dsn)
	for i := 0; ; {
		j := strings.Index(lower[i:], "password")
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len("password")
		i = end
		if start > 0 && !isSpace(lower[start-1]) {
			continue
		}
		if after := strings.TrimLeft(lower[end:], " \t\r\n"); strings.HasPrefix(after, "=") {
			return true
		}
	}
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\r' || b == '\n' }

func isEnvName(s string) bool {
	for i, r := range s {
		switch {
		case r == '_', 'A' <= r && r <= 'Z', 'a' <= r && r <= 'z':
		case '0' <= r && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

func isGCPKeyName(s string) bool {
	parts := strings.Split(s, "/")
	if len(parts) != 8 {
		return false
	}
	for i, want := range []string{"projects", "locations", "keyRings", "cryptoKeys"} {
		if parts[2*i] != want || parts[2*i+1] == "" {
			return false
		}
	}
	return true
}
