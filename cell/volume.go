package cell

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// volumeKeyKind is the keys.Context kind of a sealed volume key.
const volumeKeyKind = "cell-volume-key"

// StateVolume names the volume that holds a cell's OpenClaw state dir.
const StateVolume = "state"

// SealedTables are the tenant tables whose records the keyring seals, so
// that key status, rewrap and retire cover the cells' volume keys.
func SealedTables() []keys.SealedTable {
	return []keys.SealedTable{{Table: "cell_volume_keys", KeyColumn: "volume", CipherColumn: "ciphertext",
		VersionColumn: "key_version", Kind: volumeKeyKind}}
}

// VolumeKey returns the 32-byte key of tenant's volume, creating it on
// first use. The key is random and stored sealed by the tenant's keyring:
// rotating the keyring and rewrapping re-seal it, and the volume's contents
// need no rewrite. The caller clears the returned slice.
func VolumeKey(ctx context.Context, db *store.DB, kr *keys.Keyring, tenant, volume string) ([]byte, error) {
	c := keys.Context{Tenant: tenant, Kind: volumeKeyKind, ID: volume}
	var sealed []byte
	err := kr.Update(ctx, func(tx *store.Tx) error {
		err := tx.QueryRow(ctx, `SELECT ciphertext FROM cell_volume_keys WHERE volume = ?`, volume).Scan(&sealed)
		if err == nil || !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		defer clear(key)
		ct, v, err := kr.SealTx(ctx, tx, c, key)
		if err != nil {
			return err
		}
		sealed = ct
		_, err = tx.Exec(ctx, `INSERT INTO cell_volume_keys (volume, ciphertext, key_version, created_at) VALUES (?, ?, ?, ?)`,
			volume, ct, v, time.Now().UnixMilli())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cell: volume key %s of %s: %w", volume, tenant, err)
	}
	key, err := kr.Open(ctx, c, sealed)
	if err != nil {
		return nil, fmt.Errorf("cell: opening volume key %s of %s: %w", volume, tenant, err)
	}
	if len(key) != 32 {
		clear(key)
		return nil, fmt.Errorf("cell: volume key %s of %s has %d bytes", volume, tenant, len(key))
	}
	return key, nil
}
