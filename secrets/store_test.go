package secrets

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/kms"
	"github.com/clawhold/clawhold/store"
)

// newLocalRoot is a real local root key (kms's env backend) holding 32
// random bytes.
func newLocalRoot(t *testing.T) keys.Root {
	key := make([]byte, 32)
	rand.Read(key)
	t.Setenv("CLAWHOLD_TEST_ROOT_KEY", base64.StdEncoding.EncodeToString(key))
	root, err := kms.OpenEnv("CLAWHOLD_TEST_ROOT_KEY")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func testStores(t *testing.T) map[string]func(t *testing.T) *store.DB {
	m := map[string]func(t *testing.T) *store.DB{"sqlite": func(t *testing.T) *store.DB {
		dir := t.TempDir()
		s, err := store.OpenSQLite(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		db, err := s.Tenant(context.Background(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		return db
	}}
	dsn := os.Getenv("CLAWHOLD_TEST_POSTGRES_DSN")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but CLAWHOLD_TEST_POSTGRES_DSN is unset")
		}
		t.Log("PostgreSQL not available (CLAWHOLD_TEST_POSTGRES_DSN): SQLite only")
		return m
	}
	m["postgres"] = func(t *testing.T) *store.DB {
		s, err := store.OpenPostgres(context.Background(), dsn, store.PostgresOptions{SchemaPrefix: fmt.Sprintf("st%d_", time.Now().UnixNano())})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.DeleteTenant(context.Background(), "acme"); s.Close() })
		db, err := s.Tenant(context.Background(), "acme")
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	return m
}

// TestReadsNeverFailDuringRewrapAndRetire: secret reads (the provider's and
// the CLI's path) run while keys rotate, every record is rewrapped and old
// versions are retired as soon as nothing uses them. No read may fail:
// the row lock on PostgreSQL, and SQLite's single writer, keep a record's
// version alive from the read to the open.
func TestReadsNeverFailDuringRewrapAndRetire(t *testing.T) {
	ctx := context.Background()
	for name, open := range testStores(t) {
		t.Run(name, func(t *testing.T) {
			db := open(t)
			kr, err := keys.OpenKeyring(ctx, db, newLocalRoot(t), "acme", keys.Options{Tables: []keys.SealedTable{SealedTable()}})
			if err != nil {
				t.Fatal(err)
			}
			s := New(db, kr)
			names := make([]string, 8)
			for i := range names {
				names[i] = fmt.Sprintf("k%d", i)
				if _, err := s.Set(ctx, "test", names[i], []byte("value-"+names[i])); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(3 * time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, 16)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(deadline) {
						vals, _, err := s.GetMany(ctx, "test", names)
						if err != nil {
							errs <- err
							return
						}
						for _, n := range names {
							if string(vals[n]) != "value-"+n {
								errs <- fmt.Errorf("%s read back wrong", n)
								return
							}
						}
					}
				}()
			}
			retired := 0
			for time.Now().Before(deadline) {
				v, err := kr.Rotate(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := kr.Rewrap(ctx); err != nil {
					t.Fatal(err)
				}
				if err := kr.Retire(ctx, v-1); err == nil {
					retired++
				} else if !errors.Is(err, keys.ErrInUse) && !strings.Contains(err.Error(), "already retired") {
					t.Fatal(err)
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("a read failed during rewrap and retire: %v", err)
			}
			if retired == 0 {
				t.Fatal("no version was retired: the test proved nothing")
			}
			t.Logf("%d versions retired under concurrent reads", retired)
		})
	}
}
