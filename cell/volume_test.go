package cell

import (
	"bytes"
	"testing"

	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/keys/keystest"
	"github.com/clawhold/clawhold/store"
	"github.com/clawhold/clawhold/store/storetest"
)

// TestVolumeKey: a volume key is created once, sealed by the tenant's
// keyring, survives a rotation and rewrap unchanged (the volume's contents
// need no rewrite) and is tied to its tenant and volume.
func TestVolumeKey(t *testing.T) {
	storetest.ForEach(t, "cellvol", func(t *testing.T, b storetest.Backend) {
		ctx := t.Context()
		db, err := b.Open(t).Tenant(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		kr, err := keys.OpenKeyring(ctx, db, keystest.NewRoot(t), "acme", keys.Options{Tables: SealedTables()})
		if err != nil {
			t.Fatal(err)
		}
		k1, err := VolumeKey(ctx, db, kr, "acme", StateVolume)
		if err != nil {
			t.Fatal(err)
		}
		k2, _ := VolumeKey(ctx, db, kr, "acme", StateVolume)
		other, _ := VolumeKey(ctx, db, kr, "acme", "workspace")
		if len(k1) != 32 || !bytes.Equal(k1, k2) || bytes.Equal(k1, other) {
			t.Fatalf("volume keys: same volume must give the same 32 bytes, another volume another key")
		}
		var v1 int64
		db.View(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT key_version FROM cell_volume_keys WHERE volume = ?`, StateVolume).Scan(&v1)
		})
		if _, err := kr.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		res, err := kr.Rewrap(ctx)
		if err != nil || res.Failed > 0 {
			t.Fatalf("rewrap: %+v %v", res, err)
		}
		var v2 int64
		db.View(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT key_version FROM cell_volume_keys WHERE volume = ?`, StateVolume).Scan(&v2)
		})
		k3, err := VolumeKey(ctx, db, kr, "acme", StateVolume)
		if err != nil {
			t.Fatal(err)
		}
		if v2 <= v1 || !bytes.Equal(k1, k3) {
			t.Fatalf("after rotation and rewrap: version %d → %d, key unchanged %v; want a newer version and the same key", v1, v2, bytes.Equal(k1, k3))
		}
		// The sealed key is bound to its tenant: opened as another
		// tenant's, it fails.
		var sealed []byte
		db.View(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT ciphertext FROM cell_volume_keys WHERE volume = ?`, StateVolume).Scan(&sealed)
		})
		if _, err := kr.Open(ctx, keys.Context{Tenant: "acme", Kind: volumeKeyKind, ID: "workspace"}, sealed); err == nil {
			t.Fatal("a volume key opened under another volume's context")
		}
	})
}
