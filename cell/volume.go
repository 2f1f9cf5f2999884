package cell

import (
	"context"
	"crypto/rand"
	"fmt"
	"strconv"
	"strings"
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

// VolumeKeys returns the key generations of tenant's volume, oldest
// first, as cellfs.Options.Keys takes them. The first is created on first
// use; a new one whenever the tenant's keyring has a version newer than
// the newest generation. Files created from then on are sealed under it,
// so a key rotation reaches new data as it does everywhere else, while
// existing files keep their generation and are never rewritten. Each key
// is random and stored sealed by the keyring (generation 0 under the
// volume's name, generation g under "<volume>#<g>"): rotating and
// rewrapping re-seal them all. The caller clears the returned keys.
func VolumeKeys(ctx context.Context, db *store.DB, kr *keys.Keyring, tenant, volume string) ([][]byte, error) {
	st, err := kr.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("cell: volume keys of %s: %w", tenant, err)
	}
	var activeSince int64
	for _, v := range st.Versions {
		if v.Version == st.Active {
			activeSince = v.Created.UnixMilli()
		}
	}
	type row struct {
		name   string
		sealed []byte
	}
	var rows []row
	err = kr.Update(ctx, func(tx *store.Tx) error {
		rows = rows[:0]
		var newest int64
		rs, err := tx.Query(ctx, `SELECT volume, ciphertext, created_at FROM cell_volume_keys WHERE volume = ? OR volume LIKE ?`,
			volume, volume+"#%")
		if err != nil {
			return err
		}
		for rs.Next() {
			var r row
			var created int64
			if err := rs.Scan(&r.name, &r.sealed, &created); err != nil {
				rs.Close()
				return err
			}
			rows = append(rows, r)
			newest = max(newest, created)
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
		if len(rows) > 0 && (newest >= activeSince || len(rows) >= 256) {
			return nil
		}
		name := volume
		if len(rows) > 0 {
			name = fmt.Sprintf("%s#%d", volume, len(rows))
		}
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		defer clear(key)
		ct, v, err := kr.SealTx(ctx, tx, keys.Context{Tenant: tenant, Kind: volumeKeyKind, ID: name}, key)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO cell_volume_keys (volume, ciphertext, key_version, created_at) VALUES (?, ?, ?, ?)`,
			name, ct, v, max(time.Now().UnixMilli(), activeSince))
		rows = append(rows, row{name, ct})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cell: volume keys %s of %s: %w", volume, tenant, err)
	}
	out := make([][]byte, len(rows))
	for _, r := range rows {
		gen := 0
		if _, g, ok := strings.Cut(r.name, "#"); ok {
			if gen, err = strconv.Atoi(g); err != nil || gen < 1 || gen >= len(rows) {
				return nil, fmt.Errorf("cell: volume key %q of %s: generations are not 0..%d", r.name, tenant, len(rows)-1)
			}
		}
		key, err := kr.Open(ctx, keys.Context{Tenant: tenant, Kind: volumeKeyKind, ID: r.name}, r.sealed)
		if err != nil || len(key) != 32 || out[gen] != nil {
			clearAll(out)
			clear(key)
			if err == nil {
				err = fmt.Errorf("%d bytes, or generation %d twice", len(key), gen)
			}
			return nil, fmt.Errorf("cell: opening volume key %s of %s: %w", r.name, tenant, err)
		}
		out[gen] = key
	}
	return out, nil
}

// clearAll zeroes every key of gens.
func clearAll(gens [][]byte) {
	for _, k := range gens {
		clear(k)
	}
}
