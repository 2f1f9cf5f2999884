package config

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testKey is 32 fixed bytes, so the encodings below are stable.
var testKey = sha256.Sum256([]byte("clawhold test key"))

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clawhold.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadErrors(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString(testKey[:])
	b64URLRaw := base64.RawURLEncoding.EncodeToString(testKey[:])
	hexKey := hex.EncodeToString(testKey[:])

	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, each with file:line
		not  []string // must not appear in the error
	}{
		// Unknown keys.
		{
			name: "flat dotted typo",
			yaml: "# clawhold\n\nlog:\n  level: info\n\nstore: {}\nkyes.max_age: 90d\n",
			want: []string{`clawhold.yaml:7: unknown key "kyes.max_age" (did you mean "keys.max_age"?)`},
		},
		{
			name: "top-level typo",
			yaml: "kyes:\n  max_age: 90d\n",
			want: []string{`clawhold.yaml:1: unknown key "kyes" (did you mean "keys"?)`},
		},
		{
			name: "nested typo",
			yaml: "keys:\n  algorithm: auto\n  max_aeg: 90d\n",
			want: []string{`clawhold.yaml:3: unknown key "keys.max_aeg" (did you mean "keys.max_age"?)`},
		},
		{
			name: "deeply nested typo",
			yaml: "root_key:\n  vault:\n    adress: https://vault:8200\n",
			want: []string{`clawhold.yaml:3: unknown key "root_key.vault.adress" (did you mean "root_key.vault.address"?)`},
		},
		{
			name: "top-level typo of a section",
			yaml: "rootkey:\n  backend: env\n",
			want: []string{`clawhold.yaml:1: unknown key "rootkey" (did you mean "root_key"?)`},
		},
		{
			name: "right key, wrong section",
			yaml: "store:\n  max_conns: 8\n",
			want: []string{`clawhold.yaml:2: unknown key "store.max_conns" (did you mean "store.postgres.max_conns"?)`},
		},
		{
			name: "ambiguous key elsewhere",
			yaml: "keys:\n  backend: env\n",
			want: []string{`clawhold.yaml:2: unknown key "keys.backend" (did you mean "root_key.backend" or "store.backend"?)`},
		},
		{
			name: "nothing close, nested",
			yaml: "log:\n  colour: true\n",
			want: []string{`clawhold.yaml:2: unknown key "log.colour" (valid keys under log: format, level)`},
		},
		{
			name: "nothing close, top level",
			yaml: "frontend: :8080\n",
			want: []string{`clawhold.yaml:1: unknown key "frontend" (valid top-level keys: alerts, audit, backup, cells, data_dir, egress, frontdoor, keys, log, monitor, root_key, store, tenants)`},
		},
		{
			name: "dotted key spelled right",
			yaml: "keys.max_age: 60d\n",
			want: []string{`clawhold.yaml:1: unknown key "keys.max_age" (YAML does not split dotted keys: nest it as "keys:", then "max_age:" indented under it)`},
		},
		{
			name: "all unknown keys reported",
			yaml: "log:\n  levle: info\n  formt: json\n",
			want: []string{
				`clawhold.yaml:2: unknown key "log.levle" (did you mean "log.level"?)`,
				`clawhold.yaml:3: unknown key "log.formt" (did you mean "log.format"?)`,
			},
		},
		{
			name: "merge key",
			yaml: "base: &b {level: info}\nlog:\n  <<: *b\n",
			want: []string{`clawhold.yaml:3: log: merge keys (<<) are not supported`},
		},

		// Wrong types.
		{
			name: "string for integer",
			yaml: "store:\n  postgres:\n    max_conns: many\n",
			want: []string{`clawhold.yaml:3: store.postgres.max_conns: expected an integer, got the string "many"`},
		},
		{
			name: "quoted integer",
			yaml: "store:\n  postgres:\n    max_conns: \"4\"\n",
			want: []string{`clawhold.yaml:3: store.postgres.max_conns: expected an integer, got the string "4"`},
		},
		{
			name: "float for integer",
			yaml: "store:\n  postgres:\n    max_conns: 4.5\n",
			want: []string{`clawhold.yaml:3: store.postgres.max_conns: expected an integer, got the number 4.5`},
		},
		{
			name: "integer overflow",
			yaml: "store:\n  postgres:\n    max_conns: 0x7fffffffffffffffff\n",
			want: []string{`clawhold.yaml:3: store.postgres.max_conns: expected an integer`},
		},
		{
			name: "scalar for section",
			yaml: "log: debug\n",
			want: []string{`clawhold.yaml:1: log: expected a mapping of keys, got the string "debug"`},
		},
		{
			name: "list for string",
			yaml: "log:\n  level: [info, debug]\n",
			want: []string{`clawhold.yaml:2: log.level: expected a string, got a list`},
		},
		{
			name: "integer for string",
			yaml: "root_key:\n  vault:\n    key: 2024\n",
			want: []string{`clawhold.yaml:3: root_key.vault.key: expected a string, got the integer 2024; quote it ("2024") if you mean text`},
		},
		{
			name: "boolean for string",
			yaml: "log:\n  format: true\n",
			want: []string{`clawhold.yaml:2: log.format: expected a string, got the boolean true`},
		},
		{
			name: "duration without unit",
			yaml: "keys:\n  max_age: 90\n",
			want: []string{`clawhold.yaml:2: keys.max_age: duration 90 has no unit; write e.g. "90d" for days or "90h" for hours`},
		},
		{
			name: "bad duration",
			yaml: "keys:\n  rotate_after: soon\n",
			want: []string{`clawhold.yaml:2: keys.rotate_after: invalid duration "soon"`},
		},
		{
			name: "top level is a list",
			yaml: "- log\n- keys\n",
			want: []string{`clawhold.yaml:1: expected a mapping of keys at the top level, got a list`},
		},

		// Structure.
		{
			name: "duplicate key",
			yaml: "log:\n  level: info\n  format: text\n  level: debug\n",
			want: []string{`clawhold.yaml:4: duplicate key "log.level" (first set on line 2); remove one of them`},
		},
		{
			name: "duplicate section",
			yaml: "log:\n  level: info\nkeys: {}\nlog:\n  format: json\n",
			want: []string{`clawhold.yaml:4: duplicate key "log" (first set on line 1)`},
		},
		{
			name: "two documents",
			yaml: "log:\n  level: info\n---\nkeys: {}\n",
			want: []string{`clawhold.yaml:3: a second YAML document starts here`},
		},
		{
			name: "syntax error",
			yaml: "log:\n  level: [info\n",
			want: []string{`clawhold.yaml:`, `invalid YAML`},
		},

		// Validation.
		{
			name: "max_age 91d",
			yaml: "keys:\n  max_age: 91d\n",
			want: []string{`clawhold.yaml:2: keys.max_age is 91d: the maximum is 90d (keys must rotate within 90 days); lower it`},
		},
		{
			name: "max_age 120d",
			yaml: "log: {level: info}\nkeys:\n  max_age: 120d\n",
			want: []string{`clawhold.yaml:3: keys.max_age is 120d: the maximum is 90d (keys must rotate within 90 days); lower it`},
		},
		{
			name: "max_age in hours above the limit",
			yaml: "keys:\n  max_age: 2161h\n",
			want: []string{`clawhold.yaml:2: keys.max_age is 2161h0m0s: the maximum is 90d`},
		},
		{
			name: "max_age zero",
			yaml: "keys:\n  max_age: 0s\n",
			want: []string{`clawhold.yaml:2: keys.max_age is 0s: it must be positive`},
		},
		{
			name: "max_age negative",
			yaml: "keys:\n  max_age: -1d\n",
			want: []string{`clawhold.yaml:2: keys.max_age is -1d: it must be positive`},
		},
		{
			name: "rotate_after not below max_age",
			yaml: "keys:\n  max_age: 60d\n  rotate_after: 60d\n",
			want: []string{`clawhold.yaml:3: keys.rotate_after is 60d but keys.max_age is 60d: keys must rotate before they expire`},
		},
		{
			name: "rotate_after default above max_age",
			yaml: "keys:\n  max_age: 30d\n",
			want: []string{`clawhold.yaml: keys.rotate_after is 80d but keys.max_age is 30d`},
		},
		{
			name: "rotate_after zero",
			yaml: "keys:\n  rotate_after: 0h\n",
			want: []string{`clawhold.yaml:2: keys.rotate_after is 0s: it must be positive`},
		},
		{
			name: "maintain_interval too short",
			yaml: "keys:\n  maintain_interval: 30s\n",
			want: []string{`clawhold.yaml:2: keys.maintain_interval is 30s: the minimum is 1m; raise it`},
		},
		{
			name: "maintain_interval longer than the rotation window",
			yaml: "keys:\n  maintain_interval: 11d\n",
			want: []string{`clawhold.yaml:2: keys.maintain_interval is 11d, longer than the 10d between keys.rotate_after and keys.max_age`},
		},
		{
			name: "bad log level",
			yaml: "log:\n  level: verbose\n",
			want: []string{`clawhold.yaml:2: log.level is "verbose": it must be one of debug, info, warn, error`},
		},
		{
			name: "log level case",
			yaml: "log:\n  level: INFO\n",
			want: []string{`log.level is "INFO": it must be one of debug, info, warn, error (did you mean "info"?)`},
		},
		{
			name: "bad log format",
			yaml: "log:\n  format: logfmt\n",
			want: []string{`clawhold.yaml:2: log.format is "logfmt": it must be one of text, json`},
		},
		{
			name: "bad store backend",
			yaml: "store:\n  backend: postgresql\n",
			want: []string{`clawhold.yaml:2: store.backend is "postgresql": it must be one of sqlite, postgres (did you mean "postgres"?)`},
		},
		{
			name: "bad algorithm",
			yaml: "keys:\n  algorithm: chacha20\n",
			want: []string{`clawhold.yaml:2: keys.algorithm is "chacha20": it must be one of auto, aes-256-gcm, xchacha20-poly1305`},
		},
		{
			name: "bad root key backend",
			yaml: "root_key:\n  backend: kms\n",
			want: []string{`clawhold.yaml:2: root_key.backend is "kms": it must be one of file, env, systemd-credential, vault-transit, aws-kms, gcp-kms`},
		},
		{
			name: "explicit empty enum",
			yaml: "log:\n  level: \"\"\n",
			want: []string{`clawhold.yaml:2: log.level is "": it must be one of`},
		},
		{
			name: "postgres without dsn",
			yaml: "store:\n  backend: postgres\n",
			want: []string{`clawhold.yaml:2: store.backend is postgres, which needs store.postgres.dsn; set it, e.g. postgres://`},
		},
		{
			name: "max_conns zero",
			yaml: "store:\n  postgres:\n    max_conns: 0\n",
			want: []string{`clawhold.yaml:3: store.postgres.max_conns is 0: it must be at least 1`},
		},
		{
			name: "vault without address and key",
			yaml: "root_key:\n  backend: vault-transit\n",
			want: []string{
				`clawhold.yaml:2: root_key.backend is vault-transit, which needs root_key.vault.address`,
				`clawhold.yaml:2: root_key.backend is vault-transit, which needs root_key.vault.key`,
			},
		},
		{
			name: "vault address not a URL",
			yaml: "root_key:\n  backend: vault-transit\n  vault:\n    address: vault.internal:8200\n    key: root\n",
			want: []string{`clawhold.yaml:4: root_key.vault.address is "vault.internal:8200": it must be an http(s) URL`},
		},
		{
			name: "aws without key_id",
			yaml: "root_key:\n  backend: aws-kms\n  aws_kms:\n    region: eu-west-1\n",
			want: []string{`clawhold.yaml:2: root_key.backend is aws-kms, which needs root_key.aws_kms.key_id`},
		},
		{
			name: "gcp without key_name",
			yaml: "root_key:\n  backend: gcp-kms\n",
			want: []string{`clawhold.yaml:2: root_key.backend is gcp-kms, which needs root_key.gcp_kms.key_name`},
		},
		{
			name: "gcp key_name malformed",
			yaml: "root_key:\n  backend: gcp-kms\n  gcp_kms:\n    key_name: projects/p/keyRings/r\n",
			want: []string{`clawhold.yaml:4: root_key.gcp_kms.key_name is "projects/p/keyRings/r": it must have the form`},
		},
		{
			name: "bad env name",
			yaml: "root_key:\n  backend: env\n  env: 1KEY\n",
			want: []string{`clawhold.yaml:3: root_key.env is "1KEY"`},
		},
		{
			name: "systemd credential with slash",
			yaml: "root_key:\n  backend: systemd-credential\n  systemd_credential: /etc/key\n",
			want: []string{`clawhold.yaml:3: root_key.systemd_credential is "/etc/key"`},
		},
		{
			name: "relative path",
			yaml: "root_key:\n  file: root.key\n",
			want: []string{`clawhold.yaml:2: root_key.file is "root.key": use an absolute path`},
		},
		{
			name: "relative data dir",
			yaml: "data_dir: ~/clawhold\n",
			want: []string{`clawhold.yaml:1: data_dir is "~/clawhold": use an absolute path`},
		},

		// Key material and passwords.
		{
			name: "base64 key as a value",
			yaml: "root_key:\n  backend: file\n  file: " + b64 + "\n",
			want: []string{`clawhold.yaml:3: the value of root_key.file looks like a raw 32-byte key: key material must never be in the config file`, "root key backend", "password_file"},
			not:  []string{b64},
		},
		{
			name: "base64 key under an unknown key",
			yaml: "log:\n  level: info\nroot_key:\n  key: " + b64 + "\n",
			want: []string{`clawhold.yaml:4: the value of root_key.key looks like a raw 32-byte key`},
			not:  []string{b64, "unknown key"},
		},
		{
			name: "unpadded URL base64 key, quoted",
			yaml: "store:\n  postgres:\n    dsn: '" + b64URLRaw + "'\n",
			want: []string{`clawhold.yaml:3: the value of store.postgres.dsn looks like a raw 32-byte key`},
			not:  []string{b64URLRaw},
		},
		{
			name: "hex key in a list",
			yaml: "extra:\n  - one\n  - " + hexKey + "\n",
			want: []string{`clawhold.yaml:3: the value of extra[1] looks like a raw 32-byte key`},
			not:  []string{hexKey},
		},
		{
			name: "key used as a mapping key",
			yaml: b64 + ": x\n",
			want: []string{`clawhold.yaml:1: a key in the top level looks like a raw 32-byte key`},
			not:  []string{b64},
		},
		{
			name: "DSN URL with password",
			yaml: "store:\n  backend: postgres\n  postgres:\n    dsn: postgres://clawhold:hunter2@db:5432/clawhold\n",
			want: []string{`clawhold.yaml:4: store.postgres.dsn contains a password: remove it from the DSN and put the password in a file named by store.postgres.password_file`},
			not:  []string{"hunter2"},
		},
		{
			name: "DSN URL with password parameter",
			yaml: "store:\n  postgres:\n    dsn: postgresql://clawhold@db/clawhold?sslmode=require&password=hunter2\n",
			want: []string{`clawhold.yaml:3: store.postgres.dsn contains a password`},
			not:  []string{"hunter2"},
		},
		{
			name: "DSN keywords with password",
			yaml: "store:\n  postgres:\n    dsn: host=db user=clawhold password = 'hunter2' dbname=clawhold\n",
			want: []string{`clawhold.yaml:3: store.postgres.dsn contains a password`},
			not:  []string{"hunter2"},
		},
		{
			name: "DSN keywords starting with password",
			yaml: "store:\n  postgres:\n    dsn: PASSWORD=hunter2 host=db\n",
			want: []string{`clawhold.yaml:3: store.postgres.dsn contains a password`},
			not:  []string{"hunter2"},
		},
		{
			name: "monitor: retention too short, relative rule file",
			yaml: "monitor:\n  retention: 2h\n  rules: [rules.yaml]\n  baselines:\n    sensitivity: 0\n",
			want: []string{`clawhold.yaml:2: monitor.retention is 2h0m0s: the minimum is 1d`, `monitor.rules is "rules.yaml": use an absolute path`,
				`clawhold.yaml:5: monitor.baselines.sensitivity is 0`},
		},
		{
			name: "alerts: webhook over plain http to a remote host, without a key",
			yaml: "alerts:\n  sinks:\n    - type: webhook\n      url: http://hooks.example.com/x\n",
			want: []string{`alerts.sinks[0].url is "http://hooks.example.com/x": alerts carry evidence; use https`, `alerts.sinks[0].secret is empty`},
		},
		{
			name: "alerts: smtp without STARTTLS to a remote relay",
			yaml: "alerts:\n  sinks:\n    - type: smtp\n      address: smtp.example.com:25\n      starttls: none\n      from: a@example.com\n      to: [b@example.com]\n",
			want: []string{`alerts.sinks[0].starttls is none but alerts.sinks[0].address is not loopback`},
		},
		{
			name: "alerts: unknown type, bad severity, bad syslog address, duplicate name",
			yaml: "alerts:\n  sinks:\n    - type: pager\n    - type: stderr\n      min_severity: urgent\n    - type: syslog\n      address: 10.0.0.1:514\n    - type: stderr\n",
			want: []string{`alerts.sinks[0].type is "pager"`, `alerts.sinks[1].min_severity is "urgent"`,
				`alerts.sinks[2].address is "10.0.0.1:514": use udp://host:514`, `alerts.sinks[3]: a second sink named "stderr"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.yaml)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded, want error; config: %+v", c)
			}
			if c != nil {
				t.Errorf("Load returned a config with the error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error does not contain\n\t%s\ngot:\n\t%s", w, msg)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(msg, n) {
					t.Errorf("error contains %q:\n\t%s", n, msg)
				}
			}
			if !strings.HasPrefix(msg, path) {
				t.Errorf("error does not start with the file name %s:\n\t%s", path, msg)
			}
		})
	}
}

func TestLoadValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(*Config) bool
	}{
		{
			name: "90d parses",
			yaml: "keys:\n  max_age: 90d\n  rotate_after: 80d\n",
			check: func(c *Config) bool {
				return c.Keys.MaxAge == Duration(90*Day) && c.Keys.RotateAfter == Duration(80*Day)
			},
		},
		{
			name: "Go durations",
			yaml: "keys:\n  max_age: 2160h\n  rotate_after: 1000h\n  maintain_interval: 90m\n",
			check: func(c *Config) bool {
				return c.Keys.MaxAge == MaxKeyAge && c.Keys.RotateAfter == Duration(1000*time.Hour) &&
					c.Keys.MaintainInterval == Duration(90*time.Minute)
			},
		},
		{
			name:  "null keeps the default",
			yaml:  "log:\n  level:\n  format: ~\nkeys:\n",
			check: func(c *Config) bool { return c.Log == Default().Log && c.Keys == Default().Keys },
		},
		{
			name:  "empty mapping keeps the defaults",
			yaml:  "log: {}\n",
			check: func(c *Config) bool { return c.Log == Default().Log },
		},
		{
			name: "postgres without password",
			yaml: "store:\n  backend: postgres\n  postgres:\n    dsn: postgres://clawhold@db.internal:5432/clawhold?sslmode=verify-full\n" +
				"    password_file: /etc/clawhold/pg-password\n    max_conns: 16\n",
			check: func(c *Config) bool {
				return c.Store.Backend == "postgres" && c.Store.Postgres.MaxConns == 16 &&
					c.Store.Postgres.PasswordFile == "/etc/clawhold/pg-password"
			},
		},
		{
			name:  "postgres keyword DSN with passfile",
			yaml:  "store:\n  backend: postgres\n  postgres:\n    dsn: host=db user=clawhold passfile=/etc/clawhold/pgpass\n",
			check: func(c *Config) bool { return c.Store.Postgres.DSN != "" },
		},
		{
			name: "vault transit",
			yaml: "root_key:\n  backend: vault-transit\n  vault:\n    address: https://vault.internal:8200\n    key: clawhold-root\n    token_file: /etc/clawhold/vault-token\n",
			check: func(c *Config) bool {
				v := c.RootKey.Vault
				return v.Address == "https://vault.internal:8200" && v.Key == "clawhold-root" && v.Mount == "transit"
			},
		},
		{
			name: "aws and gcp",
			yaml: "root_key:\n  backend: gcp-kms\n  gcp_kms:\n    key_name: projects/p/locations/l/keyRings/r/cryptoKeys/k\n  aws_kms:\n    key_id: alias/x\n",
			check: func(c *Config) bool {
				return c.RootKey.GCPKMS.KeyName == "projects/p/locations/l/keyRings/r/cryptoKeys/k" && c.RootKey.AWSKMS.KeyID == "alias/x"
			},
		},
		{
			name:  "anchors and aliases",
			yaml:  "log:\n  level: &lvl warn\n  format: text\nkeys:\n  algorithm: auto\n",
			check: func(c *Config) bool { return c.Log.Level == "warn" },
		},
		{
			name:  "43-character path is not a key",
			yaml:  "data_dir: /var/lib/clawhold/tenants/customer-0042/db1\n",
			check: func(c *Config) bool { return len(c.DataDir) == 43 },
		},
		{
			name:  "empty file",
			yaml:  "",
			check: func(c *Config) bool { return c.Log.Level == "info" },
		},
		{
			name:  "only comments",
			yaml:  "# nothing here\n",
			check: func(c *Config) bool { return c.Keys.MaxAge == MaxKeyAge },
		},
		{
			name:  "document marker",
			yaml:  "---\nlog:\n  level: error\n",
			check: func(c *Config) bool { return c.Log.Level == "error" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.yaml)
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if c.Path != path {
				t.Errorf("Path = %q, want %q", c.Path, path)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config: %+v", c)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	want := &Config{
		Log:   Log{Level: "info", Format: "text"},
		Store: Store{Backend: "sqlite", Postgres: Postgres{MaxConns: 4}},
		Keys: Keys{
			Algorithm:        "auto",
			MaxAge:           Duration(90 * Day),
			RotateAfter:      Duration(80 * Day),
			MaintainInterval: Duration(time.Hour),
		},
		RootKey: RootKey{
			Backend:           "file",
			Env:               "CLAWHOLD_ROOT_KEY",
			SystemdCredential: "clawhold-root-key",
			Vault:             Vault{Mount: "transit"},
		},
		Egress: Egress{
			Listen:     "127.0.0.1:3128",
			AskTimeout: Duration(30 * time.Second),
			Policies: map[string]EgressPolicy{"default": {Profile: "openclaw", Limits: EgressLimits{
				MaxConns: 512, IdleTimeout: Duration(5 * time.Minute), MaxHeaderBytes: 65536, ReadHeaderTimeout: Duration(10 * time.Second),
			}}},
		},
		Frontdoor: Frontdoor{
			Listen: ":8443", HTTPListen: ":8080", PublicURL: "https://localhost:8443",
			Upstream: "http://127.0.0.1:18789", UserHeader: "x-forwarded-user",
			TLS:         FrontdoorTLS{Mode: "self-signed"},
			Sessions:    FrontdoorSessions{IdleTimeout: Duration(30 * time.Minute), AbsoluteTimeout: Duration(12 * time.Hour)},
			Lockout:     FrontdoorLockout{MaxFailures: 3, Window: Duration(2 * time.Minute), Ban: Duration(5 * time.Minute), MaxBan: Duration(24 * time.Hour)},
			MFARequired: true,
			OIDC:        FrontdoorOIDC{Scopes: []string{"openid", "email", "profile"}, GroupsClaim: "groups", DefaultRole: "viewer"},
		},
		Cells:  Cells{StartTimeout: Duration(2 * time.Minute), IdleTimeout: Duration(30 * time.Minute), EncryptedState: true},
		Backup: Backup{Retention: BackupRetention{Keep: 7}},
		Audit:  Audit{Interval: Duration(time.Hour)},
		Monitor: Monitor{
			Retention: Duration(365 * Day), CheckpointInterval: Duration(time.Minute),
			FileAccess: FileAccess{Enabled: true},
			Logins: Logins{LearningPeriod: Duration(24 * time.Hour), TravelSpeedKmh: 1000, CountryChangeWindow: Duration(6 * time.Hour),
				BruteForceFailures: 10, StuffingAccounts: 5, FailureWindow: Duration(10 * time.Minute)},
			Baselines: Baselines{Sensitivity: 3},
		},
		Alerts: Alerts{DedupeWindow: Duration(10 * time.Minute), RateLimit: 30},
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %+v\nwant %+v", got, want)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
	c, err := Load("")
	if err != nil || !reflect.DeepEqual(c, want) {
		t.Errorf(`Load("") = %+v, %v; want defaults`, c, err)
	}
	c, err = Load(writeConfig(t, "# empty\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Path = ""
	if !reflect.DeepEqual(c, want) {
		t.Errorf("empty file = %+v, want defaults", c)
	}
}

func TestErrorsInFileOrder(t *testing.T) {
	path := writeConfig(t, "root_key:\n  backend: aws-kms\nkeys:\n  rotate_after: 100d\n  max_age: 120d\nlog:\n  level: loud\n")
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load succeeded, want errors")
	}
	var lines []string
	for l := range strings.Lines(err.Error()) {
		l = strings.TrimPrefix(l, path+":")
		lines = append(lines, l[:strings.IndexByte(l, ':')])
	}
	if got, want := strings.Join(lines, ","), "2,5,7"; got != want {
		t.Errorf("error lines = %s, want %s; error:\n%v", got, want, err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Keys.MaxAge = Duration(120 * Day)
	err := c.Validate()
	const want = "keys.max_age is 120d: the maximum is 90d (keys must rotate within 90 days); lower it"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %q", err, want)
	}
	c.Path = "/etc/clawhold/clawhold.yaml"
	if err := c.Validate(); err == nil || err.Error() != c.Path+": "+want {
		t.Errorf("Validate() = %v, want the file name first", err)
	}
}

func TestRootKeyFile(t *testing.T) {
	c := Default()
	if got, want := c.RootKeyFile("/var/lib/clawhold"), "/var/lib/clawhold/root.key"; got != want {
		t.Errorf("RootKeyFile = %q, want %q", got, want)
	}
	c.RootKey.File = "/etc/clawhold/root.key"
	if got := c.RootKeyFile("/var/lib/clawhold"); got != c.RootKey.File {
		t.Errorf("RootKeyFile = %q, want %q", got, c.RootKey.File)
	}
}

func TestDefaultPath(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		uid  int
		want string
	}{
		{"env wins", map[string]string{"CLAWHOLD_CONFIG": "/srv/c.yaml", "HOME": "/home/a"}, 0, "/srv/c.yaml"},
		{"env wins for users", map[string]string{"CLAWHOLD_CONFIG": "/srv/c.yaml"}, 1000, "/srv/c.yaml"},
		{"root", map[string]string{"HOME": "/root", "XDG_CONFIG_HOME": "/x"}, 0, "/etc/clawhold/clawhold.yaml"},
		{"xdg", map[string]string{"HOME": "/home/a", "XDG_CONFIG_HOME": "/home/a/cfg"}, 1000, "/home/a/cfg/clawhold/clawhold.yaml"},
		{"relative xdg ignored", map[string]string{"HOME": "/home/a", "XDG_CONFIG_HOME": "cfg"}, 1000, "/home/a/.config/clawhold/clawhold.yaml"},
		{"home", map[string]string{"HOME": "/home/a"}, 1000, "/home/a/.config/clawhold/clawhold.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			if got := defaultPath(getenv, tt.uid); got != tt.want {
				t.Errorf("defaultPath = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.yaml")

	// Named explicitly: an error.
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want a not-exist error", err)
	}
	// Named by $CLAWHOLD_CONFIG: also explicit.
	env := map[string]string{"CLAWHOLD_CONFIG": missing}
	if _, err := loadDefault(func(k string) string { return env[k] }, 1000); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("loadDefault with missing $CLAWHOLD_CONFIG = %v, want a not-exist error", err)
	}
	// The default location: defaults.
	env = map[string]string{"XDG_CONFIG_HOME": dir}
	c, err := loadDefault(func(k string) string { return env[k] }, 1000)
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Errorf("loadDefault with no file = %+v, %v; want defaults", c, err)
	}
	// The default location, present.
	path := filepath.Join(dir, "clawhold", "clawhold.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("log:\n  level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = loadDefault(func(k string) string { return env[k] }, 1000)
	if err != nil || c.Log.Level != "debug" || c.Path != path {
		t.Errorf("loadDefault = %+v, %v; want the file at %s", c, err, path)
	}
}

func TestSuggest(t *testing.T) {
	known := keyPaths(reflect.TypeFor[Config](), "", true)
	tests := []struct {
		in, prefix, want string
	}{
		{"kyes", "", "keys"},
		{"lgo", "", "log"},
		{"stroe", "", "store"},
		{"data-dir", "", "data_dir"},
		{"datadir", "", "data_dir"},
		{"keys.maxage", "keys", "keys.max_age"},
		{"keys.rotate_afer", "keys", "keys.rotate_after"},
		{"root_key.vault.adress", "root_key.vault", "root_key.vault.address"},
		{"root_key.vault.tokenfile", "root_key.vault", "root_key.vault.token_file"},
		{"root_key.aws_kms.keyid", "root_key.aws_kms", "root_key.aws_kms.key_id"},
		{"store.postgres.max_con", "store.postgres", "store.postgres.max_conns"},
		{"log.colour", "log", ""},
		{"zzz", "", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.in, known, tt.prefix); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"", "abc", 3},
		{"keys", "keys", 0},
		{"kyes", "keys", 1},
		{"max_aeg", "max_age", 1},
		{"level", "levle", 1},
		{"kitten", "sitting", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestLooksLikeRawKey(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{base64.StdEncoding.EncodeToString(testKey[:]), true},
		{base64.RawStdEncoding.EncodeToString(testKey[:]), true},
		{base64.URLEncoding.EncodeToString(testKey[:]), true},
		{base64.RawURLEncoding.EncodeToString(testKey[:]), true},
		{" " + base64.StdEncoding.EncodeToString(testKey[:]) + "\n", true},
		{hex.EncodeToString(testKey[:]), true},
		{base64.StdEncoding.EncodeToString(testKey[:31]), false},
		{base64.StdEncoding.EncodeToString(make([]byte, 32)), false}, // all "A": no entropy
		{"/var/lib/clawhold/tenants/customer-0042/db1", false},
		{"projects/p/locations/l/keyRings/r/cryptoKeys/k", false},
		{"postgres://clawhold@db.internal:5432/clawhold", false},
		{"CLAWHOLD_ROOT_KEY", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := looksLikeRawKey(tt.in); got != tt.want {
			t.Errorf("looksLikeRawKey(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDSNHasPassword(t *testing.T) {
	tests := []struct {
		dsn  string
		want bool
	}{
		{"", false},
		{"postgres://clawhold@db:5432/clawhold?sslmode=verify-full", false},
		{"postgres://db/clawhold", false},
		{"postgres://clawhold:s3cret@db/clawhold", true},
		{"postgresql://clawhold:@db/clawhold", true},
		{"postgres://clawhold@db/clawhold?password=x", true},
		{"postgres://clawhold:p%zz@db/clawhold", true}, // unparsable URL
		{"host=db user=clawhold dbname=clawhold", false},
		{"host=db user=clawhold passfile=/etc/pgpass", false},
		{"host=db password=x", true},
		{"password='x y' host=db", true},
		{"host=db\tPassword = x", true},
		{"host=db application_name=nopassword", false},
	}
	for _, tt := range tests {
		if got := dsnHasPassword(tt.dsn); got != tt.want {
			t.Errorf("dsnHasPassword(%q) = %v, want %v", tt.dsn, got, tt.want)
		}
	}
}
