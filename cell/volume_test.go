package cell

import (
	"bytes"
	"testing"
	"time"

	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/keys/keystest"
	"github.com/clawhold/clawhold/store"
	"github.com/clawhold/clawhold/store/storetest"
)

// TestVolumeKeys: a volume's first key is created once, sealed by the
// tenant's keyring; a key rotation adds a generation (new files are sealed
// under it) and keeps the old one unchanged (no file is rewritten); a
// rewrap re-seals every generation without adding one; keys are tied to
// their tenant and volume.
func TestVolumeKeys(t *testing.T) {
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
		gens := func() [][]byte {
			t.Helper()
			g, err := VolumeKeys(ctx, db, kr, "acme", StateVolume)
			if err != nil {
				t.Fatal(err)
			}
			return g
		}
		first := gens()
		again := gens()
		other, _ := VolumeKeys(ctx, db, kr, "acme", "workspace")
		if len(first) != 1 || len(first[0]) != 32 || len(again) != 1 || !bytes.Equal(first[0], again[0]) || bytes.Equal(first[0], other[0]) {
			t.Fatalf("volume keys: the same volume must give the same one 32-byte key, another volume another key")
		}
		versions := func() map[string]int64 {
			out := map[string]int64{}
			db.View(ctx, func(tx *store.Tx) error {
				rs, err := tx.Query(ctx, `SELECT volume, key_version FROM cell_volume_keys`)
				if err != nil {
					return err
				}
				defer rs.Close()
				for rs.Next() {
					var n string
					var v int64
					rs.Scan(&n, &v)
					out[n] = v
				}
				return rs.Err()
			})
			return out
		}
		before := versions()

		// Generations are ordered against key versions by creation time
		// in milliseconds: a rotation in the same millisecond as the first
		// key would look older than it.
		time.Sleep(5 * time.Millisecond)
		if _, err := kr.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		rotated := gens()
		if len(rotated) != 2 || !bytes.Equal(rotated[0], first[0]) || bytes.Equal(rotated[1], first[0]) {
			t.Fatalf("after a rotation: %d generations, the first unchanged: %v; want 2, a new key last", len(rotated), len(rotated) > 0 && bytes.Equal(rotated[0], first[0]))
		}
		res, err := kr.Rewrap(ctx)
		if err != nil || res.Failed > 0 {
			t.Fatalf("rewrap: %+v %v", res, err)
		}
		after := versions()
		if after[StateVolume] <= before[StateVolume] {
			t.Errorf("rewrap left generation 0 sealed under version %d", after[StateVolume])
		}
		rewrapped := gens()
		if len(rewrapped) != 2 || !bytes.Equal(rewrapped[0], first[0]) || !bytes.Equal(rewrapped[1], rotated[1]) {
			t.Fatalf("after rewrap: %d generations; want the same 2 keys", len(rewrapped))
		}
		// The sealed key is bound to its volume: opened as another
		// volume's, it fails.
		var sealed []byte
		db.View(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT ciphertext FROM cell_volume_keys WHERE volume = ?`, StateVolume).Scan(&sealed)
		})
		if _, err := kr.Open(ctx, keys.Context{Tenant: "acme", Kind: volumeKeyKind, ID: "workspace"}, sealed); err == nil {
			t.Fatal("a volume key opened under another volume's context")
		}
		if _, err := kr.Open(ctx, keys.Context{Tenant: "acme", Kind: volumeKeyKind, ID: StateVolume + "#1"}, sealed); err == nil {
			t.Fatal("generation 0 opened as generation 1")
		}
	})
}
