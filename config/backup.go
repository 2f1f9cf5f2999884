package config

import (
	"path/filepath"
	"time"
)

// Backup configures encrypted tenant backups (docs/backups.md): where they
// are written, how often clawhold up takes them and how many are kept.
type Backup struct {
	// Dir holds one directory per backup (default <data dir>/backups).
	Dir string `yaml:"dir"`
	// Schedule is the interval between automatic backups of every tenant
	// taken by clawhold up; 0 (the default) turns them off.
	Schedule  Duration        `yaml:"schedule"`
	Retention BackupRetention `yaml:"retention"`
}

// BackupRetention says which backups `clawhold backup prune` and the
// schedule delete, per tenant. The newest complete backup of a tenant is
// never deleted, whatever the settings.
type BackupRetention struct {
	// Keep is how many of a tenant's newest backups are kept (default 7);
	// 0 means no count limit.
	Keep int `yaml:"keep"`
	// MaxAge deletes backups older than this; 0 (the default) means no age
	// limit.
	MaxAge Duration `yaml:"max_age"`
}

func defaultBackup() Backup {
	return Backup{Retention: BackupRetention{Keep: 7}}
}

// BackupDir returns backup.dir when set, otherwise backups inside dataDir.
func (c *Config) BackupDir(dataDir string) string {
	if c.Backup.Dir != "" {
		return c.Backup.Dir
	}
	return filepath.Join(dataDir, "backups")
}

func (v *validator) backup(b Backup) {
	v.absPath("backup.dir", b.Dir)
	switch {
	case b.Schedule < 0:
		v.errorf("backup.schedule", "backup.schedule is %s: use 0 to turn scheduled backups off, or an interval such as 24h", b.Schedule)
	case b.Schedule > 0 && b.Schedule < Duration(time.Minute):
		v.errorf("backup.schedule", "backup.schedule is %s: the minimum interval is 1m (e.g. 24h); use 0 to turn scheduled backups off", b.Schedule)
	}
	if b.Retention.Keep < 0 {
		v.errorf("backup.retention.keep", "backup.retention.keep is %d: use 0 for no count limit, or how many backups per tenant to keep (default 7)", b.Retention.Keep)
	}
	if b.Retention.MaxAge < 0 {
		v.errorf("backup.retention.max_age", "backup.retention.max_age is %s: use 0 for no age limit, or a duration such as 30d", b.Retention.MaxAge)
	}
}
