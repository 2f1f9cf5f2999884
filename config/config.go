// Package config loads clawhold's single YAML configuration file.
//
// Every key is documented in docs/config.md. Unknown keys are rejected with the
// file name, line and a hint, so a typo never silently falls back to a default.
package config

// Config is the whole configuration file. Zero values mean "use the default";
// Load fills defaults in and validates.
type Config struct {
	// DataDir holds the system store, tenant stores and the local root key.
	// Overridden by --data-dir and CLAWHOLD_DATA_DIR.
	DataDir string  `yaml:"data_dir"`
	Log     Log     `yaml:"log"`
	Store   Store   `yaml:"store"`
	Keys    Keys    `yaml:"keys"`
	RootKey RootKey `yaml:"root_key"`
	Egress  Egress  `yaml:"egress"`
	// Frontdoor is the TLS gateway in front of OpenClaw (docs/frontdoor.md).
	Frontdoor Frontdoor         `yaml:"frontdoor"`
	Cells     Cells             `yaml:"cells"`
	Tenants   map[string]Tenant `yaml:"tenants"`
	Backup    Backup            `yaml:"backup"`
	Audit     Audit             `yaml:"audit"`
	// Monitor is detection and the audit log (docs/monitoring.md).
	Monitor Monitor `yaml:"monitor"`
	// Alerts says where detections are sent (docs/monitoring.md).
	Alerts Alerts `yaml:"alerts"`

	// Path is the file this configuration was read from ("" for defaults).
	Path string `yaml:"-"`
}

// Log configures clawhold's own structured logs (log/slog).
type Log struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
	Format string `yaml:"format"` // text (default) | json
}

// Store selects the database backend.
type Store struct {
	Backend  string   `yaml:"backend"` // sqlite (default) | postgres
	Postgres Postgres `yaml:"postgres"`
}

// Postgres configures the scale-out backend: one schema per tenant.
type Postgres struct {
	// DSN is a libpq URL or keyword string without a password
	// (e.g. "postgres://clawhold@db.internal:5432/clawhold?sslmode=verify-full").
	DSN string `yaml:"dsn"`
	// PasswordFile holds the database password (0600, owned by clawhold's user).
	PasswordFile string `yaml:"password_file"`
	// MaxConns bounds each tenant's connection pool (default 4).
	MaxConns int `yaml:"max_conns"`
}

// Keys configures data-key algorithms and the rotation schedule.
type Keys struct {
	// Algorithm is auto (default: AES-256-GCM where the CPU accelerates it,
	// otherwise XChaCha20-Poly1305) | aes-256-gcm | xchacha20-poly1305.
	Algorithm string `yaml:"algorithm"`
	// MaxAge is the hard lifetime of a key version for encryption. Default and
	// maximum 90d: a larger value is a config error.
	MaxAge Duration `yaml:"max_age"`
	// RotateAfter is when clawhold rotates automatically and `keys status`
	// starts to warn. Default 80d; must be less than MaxAge.
	RotateAfter Duration `yaml:"rotate_after"`
	// MaintainInterval is how often the background maintainer checks ages,
	// rotates and rewraps (default 1h).
	MaintainInterval Duration `yaml:"maintain_interval"`
}

// RootKey says where the key-encryption key comes from. Never from this file:
// only its location or KMS key name is configured here.
type RootKey struct {
	// Backend is file (default) | env | systemd-credential | vault-transit | aws-kms | gcp-kms.
	Backend string `yaml:"backend"`
	// File is the local root key file (default <data_dir>/root.key, 0600).
	File string `yaml:"file"`
	// Env names the environment variable holding the base64 key (default CLAWHOLD_ROOT_KEY).
	Env string `yaml:"env"`
	// SystemdCredential names the credential in $CREDENTIALS_DIRECTORY (default clawhold-root-key).
	SystemdCredential string `yaml:"systemd_credential"`
	Vault             Vault  `yaml:"vault"`
	AWSKMS            AWSKMS `yaml:"aws_kms"`
	GCPKMS            GCPKMS `yaml:"gcp_kms"`
}

// Vault configures HashiCorp Vault (or OpenBao) transit.
type Vault struct {
	Address   string `yaml:"address"`    // e.g. https://vault.internal:8200
	Mount     string `yaml:"mount"`      // transit mount path (default "transit")
	Key       string `yaml:"key"`        // transit key name
	TokenFile string `yaml:"token_file"` // file holding the token; else VAULT_TOKEN
	Namespace string `yaml:"namespace"`  // Vault Enterprise namespace (optional)
	CACert    string `yaml:"ca_cert"`    // PEM bundle to verify the server (optional)
}

// AWSKMS configures AWS KMS. Credentials come from the standard AWS chain.
type AWSKMS struct {
	KeyID    string `yaml:"key_id"`   // key ARN, id or alias/NAME
	Region   string `yaml:"region"`   // e.g. eu-west-1
	Endpoint string `yaml:"endpoint"` // optional: a KMS-compatible endpoint
}

// GCPKMS configures Google Cloud KMS. Credentials come from Application
// Default Credentials or CredentialsFile.
type GCPKMS struct {
	KeyName         string `yaml:"key_name"` // projects/P/locations/L/keyRings/R/cryptoKeys/K
	CredentialsFile string `yaml:"credentials_file"`
	Endpoint        string `yaml:"endpoint"` // optional override (REST)
}
