package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/clawhold/clawhold/instance"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// records are a tenant's rows in the system database: its registration
// and its front-door users with their second factors. Sessions are left
// out: a restored user simply logs in again.
//
// TOTP secrets are sealed by the system keyring, whose material lives in
// system.db, which a fresh installation does not share. So they are
// opened at backup time and carried inside the backup (sealed, like
// everything in it, under the backup's data key) and sealed again by the
// restoring installation's system keyring. Password and recovery-code
// hashes are carried as stored.
type records struct {
	Tenant tenantRecord `json:"tenant"`
	Users  []userRecord `json:"users"`
}

type tenantRecord struct {
	Name       string `json:"name"`
	Registered bool   `json:"registered"`
	CreatedAt  int64  `json:"created_at"`
}

type userRecord struct {
	Name          string           `json:"name"`
	Tenant        string           `json:"tenant"`
	Role          string           `json:"role"`
	Disabled      bool             `json:"disabled"`
	PasswordHash  string           `json:"password_hash"`
	CreatedAt     int64            `json:"created_at"`
	UpdatedAt     int64            `json:"updated_at"`
	TOTP          *totpRecord      `json:"totp,omitempty"`
	RecoveryCodes []recoveryRecord `json:"recovery_codes,omitempty"`
}

type totpRecord struct {
	Secret      []byte `json:"secret"` // plaintext, inside the sealed backup only
	ConfirmedAt *int64 `json:"confirmed_at,omitempty"`
	LastStep    int64  `json:"last_step"`
	CreatedAt   int64  `json:"created_at"`
}

type recoveryRecord struct {
	CodeHash  []byte `json:"code_hash"`
	CreatedAt int64  `json:"created_at"`
	UsedAt    *int64 `json:"used_at,omitempty"`
}

// wipe zeroes the TOTP secrets.
func (r *records) wipe() {
	for _, u := range r.Users {
		if u.TOTP != nil {
			clear(u.TOTP.Secret)
		}
	}
}

func totpContext(user string) keys.Context {
	return keys.Context{Tenant: instance.SystemTenant, Kind: "totp", ID: user}
}

// readRecords reads tenant's system records, opening TOTP secrets with the
// system keyring.
func readRecords(ctx context.Context, in *instance.Instance, tenant string) (*records, error) {
	sys, err := in.DB(ctx, instance.SystemTenant)
	if err != nil {
		return nil, err
	}
	r := &records{Tenant: tenantRecord{Name: tenant}}
	sealedTOTP := map[string][]byte{}
	err = sys.View(ctx, func(tx *store.Tx) error {
		err := tx.QueryRow(ctx, `SELECT created_at FROM tenants WHERE name = ?`, tenant).Scan(&r.Tenant.CreatedAt)
		switch {
		case err == nil:
			r.Tenant.Registered = true
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("reading the tenant registry: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT name, tenant, role, disabled, password_hash, created_at, updated_at
			FROM users WHERE tenant = ? ORDER BY name`, tenant)
		if err != nil {
			return fmt.Errorf("reading users: %w", err)
		}
		defer rows.Close()
		index := map[string]int{}
		for rows.Next() {
			var u userRecord
			var disabled int64
			if err := rows.Scan(&u.Name, &u.Tenant, &u.Role, &disabled, &u.PasswordHash, &u.CreatedAt, &u.UpdatedAt); err != nil {
				return fmt.Errorf("reading users: %w", err)
			}
			u.Disabled = disabled != 0
			index[u.Name] = len(r.Users)
			r.Users = append(r.Users, u)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading users: %w", err)
		}
		rows.Close()

		rows, err = tx.Query(ctx, `SELECT t.user_name, t.secret, t.confirmed_at, t.last_step, t.created_at
			FROM user_totp t JOIN users u ON u.name = t.user_name WHERE u.tenant = ?`, tenant)
		if err != nil {
			return fmt.Errorf("reading TOTP enrolments: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var t totpRecord
			var sealed []byte
			var confirmed sql.NullInt64
			if err := rows.Scan(&name, &sealed, &confirmed, &t.LastStep, &t.CreatedAt); err != nil {
				return fmt.Errorf("reading TOTP enrolments: %w", err)
			}
			if confirmed.Valid {
				t.ConfirmedAt = &confirmed.Int64
			}
			if i, ok := index[name]; ok {
				r.Users[i].TOTP = &t
				sealedTOTP[name] = sealed
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading TOTP enrolments: %w", err)
		}
		rows.Close()

		rows, err = tx.Query(ctx, `SELECT c.user_name, c.code_hash, c.created_at, c.used_at
			FROM user_recovery_codes c JOIN users u ON u.name = c.user_name WHERE u.tenant = ? ORDER BY c.user_name, c.created_at`, tenant)
		if err != nil {
			return fmt.Errorf("reading recovery codes: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var name string
			var c recoveryRecord
			var used sql.NullInt64
			if err := rows.Scan(&name, &c.CodeHash, &c.CreatedAt, &used); err != nil {
				return fmt.Errorf("reading recovery codes: %w", err)
			}
			if used.Valid {
				c.UsedAt = &used.Int64
			}
			if i, ok := index[name]; ok {
				r.Users[i].RecoveryCodes = append(r.Users[i].RecoveryCodes, c)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	if len(sealedTOTP) == 0 {
		return r, nil
	}
	kr, err := in.Keyring(ctx, instance.SystemTenant)
	if err != nil {
		return nil, err
	}
	for i := range r.Users {
		u := &r.Users[i]
		if u.TOTP == nil {
			continue
		}
		secret, err := kr.Open(ctx, totpContext(u.Name), sealedTOTP[u.Name])
		if err != nil {
			r.wipe()
			return nil, fmt.Errorf("opening the TOTP secret of user %s: %w", u.Name, err)
		}
		u.TOTP.Secret = secret
	}
	return r, nil
}
