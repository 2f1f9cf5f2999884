package keys

import (
	"bytes"
	"context"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clawhold/clawhold/store"
)

// testRoot is a local AES-GCM root key: the same construction as package
// kms's file backend, kept here so keys' tests do not import kms (which
// imports keys).
type testRoot struct{ aead cipher.AEAD }

func newTestRoot(t testing.TB) *testRoot {
	key := make([]byte, KeySize)
	rand.Read(key)
	a, err := newAEAD(AES256GCM, key)
	if err != nil {
		t.Fatal(err)
	}
	return &testRoot{a}
}

func (r *testRoot) ID() string { return "test-root" }
func (r *testRoot) Wrap(_ context.Context, pt, aad []byte) ([]byte, error) {
	nonce := make([]byte, r.aead.NonceSize())
	rand.Read(nonce)
	return r.aead.Seal(nonce, nonce, pt, aad), nil
}
func (r *testRoot) Unwrap(_ context.Context, w, aad []byte) ([]byte, error) {
	if len(w) < r.aead.NonceSize() {
		return nil, errors.New("short")
	}
	return r.aead.Open(nil, w[:r.aead.NonceSize()], w[r.aead.NonceSize():], aad)
}

// clock is a controllable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }
func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var secretsTable = SealedTable{Table: "secrets", KeyColumn: "name", CipherColumn: "ciphertext", VersionColumn: "key_version", Kind: "secret"}

const day = 24 * time.Hour

// backends returns a function opening a fresh tenant database per backend:
// SQLite always, PostgreSQL when a server is configured (required in CI).
func backends(t *testing.T) map[string]func(t *testing.T, tenant string) *store.DB {
	m := map[string]func(t *testing.T, tenant string) *store.DB{}
	m["sqlite"] = func(t *testing.T, tenant string) *store.DB {
		dir := t.TempDir()
		os.Chmod(dir, 0o700)
		s, err := store.OpenSQLite(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		db, err := s.Tenant(context.Background(), tenant)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	dsn := os.Getenv("CLAWHOLD_TEST_POSTGRES_DSN")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true but CLAWHOLD_TEST_POSTGRES_DSN is unset: scripts/postgres.sh start must run first")
		}
		t.Log("PostgreSQL not available (set CLAWHOLD_TEST_POSTGRES_DSN; scripts/postgres.sh start prints it): testing SQLite only")
		return m
	}
	m["postgres"] = func(t *testing.T, tenant string) *store.DB {
		prefix := fmt.Sprintf("kt%d_", time.Now().UnixNano())
		s, err := store.OpenPostgres(context.Background(), dsn, store.PostgresOptions{SchemaPrefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.DeleteTenant(context.Background(), tenant)
			s.Close()
		})
		db, err := s.Tenant(context.Background(), tenant)
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	return m
}

func openTestKeyring(t *testing.T, db *store.DB, root Root, tenant string, clk *clock, alg Algorithm) *Keyring {
	t.Helper()
	p := DefaultPolicy()
	p.Algorithm = alg
	k, err := OpenKeyring(context.Background(), db, root, tenant, Options{Policy: p, Tables: []SealedTable{secretsTable}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func putSecret(ctx context.Context, k *Keyring, name string, value []byte) error {
	return k.Update(ctx, func(tx *store.Tx) error {
		ct, v, err := k.SealTx(ctx, tx, Context{Tenant: k.Tenant(), Kind: "secret", ID: name}, value)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO secrets (name, version, ciphertext, key_version, created_at, updated_at)
			VALUES (?, 1, ?, ?, 0, 0)
			ON CONFLICT (name) DO UPDATE SET version = secrets.version + 1, ciphertext = excluded.ciphertext,
				key_version = excluded.key_version`, name, ct, int64(v))
		return err
	})
}

// getSecret reads without locks, as a plain reader would. A copy read just
// before a rewrap moved the row and a retire destroyed its old version
// gives ErrRetired; reading again must then succeed (real loss would not).
func getSecret(ctx context.Context, db *store.DB, k *Keyring, name string) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		var ct []byte
		err := db.View(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT ciphertext FROM secrets WHERE name = ?`, name).Scan(&ct)
		})
		if err != nil {
			return nil, err
		}
		pt, err := k.Open(ctx, Context{Tenant: k.Tenant(), Kind: "secret", ID: name}, ct)
		if errors.Is(err, ErrRetired) && attempt < 3 {
			continue
		}
		return pt, err
	}
}

func sealOne(t *testing.T, k *Keyring, db *store.DB, c Context, pt []byte) []byte {
	t.Helper()
	var ct []byte
	err := k.Update(context.Background(), func(tx *store.Tx) error {
		var err error
		ct, _, err = k.SealTx(context.Background(), tx, c, pt)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func TestSealOpenAttacks(t *testing.T) {
	ctx := context.Background()
	for bname, open := range backends(t) {
		for _, alg := range []Algorithm{AES256GCM, XChaCha20Poly1305} {
			t.Run(bname+"/"+alg.String(), func(t *testing.T) {
				root := newTestRoot(t)
				clk := newClock()
				dbA, dbB := open(t, "acme"), open(t, "globex")
				a := openTestKeyring(t, dbA, root, "acme", clk, alg)
				b := openTestKeyring(t, dbB, root, "globex", clk, alg)
				c := Context{Tenant: "acme", Kind: "secret", ID: "models/openai/apiKey", User: "alice", Session: "s1"}
				pt := []byte("sk-test-0123456789")
				ct := sealOne(t, a, dbA, c, pt)

				h, _, err := ParseHeader(ct)
				if err != nil || h.Algorithm != alg || h.KeyID != "tenant:acme" || h.Version != 1 {
					t.Fatalf("header = %+v, %v", h, err)
				}
				got, err := a.Open(ctx, c, ct)
				if err != nil || !bytes.Equal(got, pt) {
					t.Fatalf("round trip failed: %v", err)
				}
				// Every single flipped bit, anywhere, must fail.
				for i := range ct {
					for bit := 0; bit < 8; bit++ {
						bad := bytes.Clone(ct)
						bad[i] ^= 1 << bit
						if _, err := a.Open(ctx, c, bad); err == nil {
							t.Fatalf("opened with bit %d of byte %d flipped", bit, i)
						}
					}
				}
				// Every truncation must fail.
				for n := 0; n < len(ct); n++ {
					if _, err := a.Open(ctx, c, ct[:n]); err == nil {
						t.Fatalf("opened a ciphertext truncated to %d bytes", n)
					}
				}
				if _, err := a.Open(ctx, c, append(bytes.Clone(ct), 0)); err == nil {
					t.Fatal("opened a ciphertext with a byte appended")
				}
				// A wrong context: each field on its own.
				for name, wrong := range map[string]Context{
					"kind":    {Tenant: "acme", Kind: "event", ID: c.ID, User: c.User, Session: c.Session},
					"id":      {Tenant: "acme", Kind: c.Kind, ID: "models/anthropic/apiKey", User: c.User, Session: c.Session},
					"user":    {Tenant: "acme", Kind: c.Kind, ID: c.ID, User: "bob", Session: c.Session},
					"session": {Tenant: "acme", Kind: c.Kind, ID: c.ID, User: c.User, Session: "s2"},
					"no user": {Tenant: "acme", Kind: c.Kind, ID: c.ID},
				} {
					if _, err := a.Open(ctx, wrong, ct); err == nil {
						t.Errorf("opened with a wrong context (%s)", name)
					}
				}
				// A wrong tenant: the other tenant's keyring, with its own or
				// the original context, and the key id rewritten to match.
				if _, err := b.Open(ctx, Context{Tenant: "globex", Kind: c.Kind, ID: c.ID, User: c.User, Session: c.Session}, ct); err == nil {
					t.Error("tenant globex opened tenant acme's ciphertext")
				}
				if _, err := b.Open(ctx, c, ct); err == nil {
					t.Error("globex's keyring accepted an acme context")
				}
				moved := bytes.Replace(ct, []byte("tenant:acme"), []byte("tenant:glob"), 1)
				if _, err := a.Open(ctx, c, moved); err == nil {
					t.Error("opened a ciphertext whose key id was rewritten")
				}
				// Nonces are fresh: the same plaintext seals differently.
				if ct2 := sealOne(t, a, dbA, c, pt); bytes.Equal(ct, ct2) {
					t.Error("two seals of the same plaintext are identical")
				}
			})
		}
	}
}

func TestRotationExpiryRewrapRetire(t *testing.T) {
	ctx := context.Background()
	for bname, open := range backends(t) {
		t.Run(bname, func(t *testing.T) {
			clk := newClock()
			db := open(t, "acme")
			root := newTestRoot(t)
			k := openTestKeyring(t, db, root, "acme", clk, DefaultAlgorithm())

			for i := range 10 {
				if err := putSecret(ctx, k, fmt.Sprintf("s%02d", i), []byte(fmt.Sprintf("value-%d", i))); err != nil {
					t.Fatal(err)
				}
			}
			st := mustStatus(t, k)
			if st.Active != 1 || len(st.Warnings) != 0 || st.Versions[0].Records != 10 {
				t.Fatalf("fresh status = %+v", st)
			}

			// 79 days: nothing due.
			clk.Advance(79 * day)
			if err := k.RotateIfDue(ctx); err != nil {
				t.Fatal(err)
			}
			if st := mustStatus(t, k); st.Active != 1 || len(st.Warnings) != 0 {
				t.Fatalf("day 79: %+v", st)
			}
			// 80 days: status warns, and the next write rotates first.
			clk.Advance(day)
			if st := mustStatus(t, k); len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "rotation due") {
				t.Fatalf("day 80: want a rotation warning, got %q", st.Warnings)
			}
			if err := putSecret(ctx, k, "s00", []byte("value-0b")); err != nil {
				t.Fatal(err)
			}
			st = mustStatus(t, k)
			if st.Active != 2 || st.Versions[1].State != StateDeactivated || st.Versions[1].Records != 9 || st.Versions[0].Records != 1 {
				t.Fatalf("after automatic rotation: %+v", st)
			}
			// Version 1 passes 90 days: expired, still opens.
			clk.Advance(11 * day)
			if st := mustStatus(t, k); st.Versions[1].State != StateExpired {
				t.Fatalf("v1 at 91 days: %+v", st.Versions[1])
			}
			if v, err := getSecret(ctx, db, k, "s05"); err != nil || string(v) != "value-5" {
				t.Fatalf("reading v1 data after expiry: %q %v", v, err)
			}
			// Retire refuses while v1 seals data, and always for the active version.
			if err := k.Retire(ctx, 1); !errors.Is(err, ErrInUse) {
				t.Fatalf("retire v1 with data: %v", err)
			}
			if err := k.Retire(ctx, 2); err == nil {
				t.Fatal("retired the active version")
			}
			keepOld := mustCiphertext(t, db, "s05")
			res, err := k.Rewrap(ctx)
			if err != nil || res.Rewrapped != 9 || res.Failed != 0 {
				t.Fatalf("rewrap = %+v, %v", res, err)
			}
			st = mustStatus(t, k)
			if st.Versions[1].Records != 0 || st.Versions[0].Records != 10 {
				t.Fatalf("after rewrap: %+v", st)
			}
			for i := range 10 {
				want := fmt.Sprintf("value-%d", i)
				if i == 0 {
					want = "value-0b"
				}
				if v, err := getSecret(ctx, db, k, fmt.Sprintf("s%02d", i)); err != nil || string(v) != want {
					t.Fatalf("s%02d after rewrap: %v", i, err)
				}
			}
			if err := k.Retire(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := k.Open(ctx, Context{Tenant: "acme", Kind: "secret", ID: "s05"}, keepOld); err == nil || !strings.Contains(err.Error(), "retired") {
				t.Fatalf("opening data of a retired version: %v", err)
			}
			var wrapped []byte
			db.View(ctx, func(tx *store.Tx) error {
				return tx.QueryRow(ctx, `SELECT wrapped FROM key_versions WHERE keyring = 'tenant:acme' AND version = 1`).Scan(&wrapped)
			})
			if wrapped != nil {
				t.Fatal("retired version still has wrapped material in the database")
			}
			if st := mustStatus(t, k); st.Versions[1].State != StateDestroyed {
				t.Fatalf("v1 state after retire: %s", st.Versions[1].State)
			}

			// Hard limit: an active version past max age never encrypts, even
			// when the caller bypasses the rotating Update.
			clk.Advance(91 * day)
			err = db.Update(ctx, func(tx *store.Tx) error {
				_, _, err := k.SealTx(ctx, tx, Context{Tenant: "acme", Kind: "secret", ID: "x"}, []byte("x"))
				return err
			})
			if !errors.Is(err, ErrExpired) {
				t.Fatalf("sealing with an expired version: %v", err)
			}
			if err := putSecret(ctx, k, "x", []byte("x")); err != nil {
				t.Fatalf("Update should rotate past expiry: %v", err)
			}
			if st := mustStatus(t, k); st.Active != 3 {
				t.Fatalf("active after expiry rotation = %d", st.Active)
			}
		})
	}
}

// Two keyrings on one database stand for two processes (the CLI and a
// running `clawhold up`): a rotation in one is picked up by the other on its
// next write, and both rotate once, not twice.
func TestKeyringAcrossProcesses(t *testing.T) {
	ctx := context.Background()
	for bname, open := range backends(t) {
		t.Run(bname, func(t *testing.T) {
			clk := newClock()
			db := open(t, "acme")
			root := newTestRoot(t)
			a := openTestKeyring(t, db, root, "acme", clk, AES256GCM)
			b := openTestKeyring(t, db, root, "acme", clk, AES256GCM)
			if err := putSecret(ctx, a, "one", []byte("1")); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := putSecret(ctx, b, "two", []byte("2")); err != nil {
				t.Fatal(err)
			}
			ct := mustCiphertext(t, db, "two")
			if h, _, _ := ParseHeader(ct); h.Version != 2 {
				t.Fatalf("b sealed with version %d after a rotated to 2", h.Version)
			}
			if v, err := getSecret(ctx, db, a, "two"); err != nil || string(v) != "2" {
				t.Fatalf("a reading b's write: %v", err)
			}
			clk.Advance(81 * day)
			if err := a.RotateIfDue(ctx); err != nil {
				t.Fatal(err)
			}
			if err := b.RotateIfDue(ctx); err != nil {
				t.Fatal(err)
			}
			if st := mustStatus(t, b); st.Active != 3 {
				t.Fatalf("both due at once: active = %d, want 3 (one rotation)", st.Active)
			}
		})
	}
}

// The concurrency test, after Vault transit's: writers and readers hammer the
// keyring while it rotates, rewraps and tries to retire old versions. No
// operation may fail and every last written value must read back.
func TestConcurrentRotateRewrap(t *testing.T) {
	ctx := context.Background()
	dur := 4 * time.Second
	if testing.Short() {
		dur = time.Second
	}
	for bname, open := range backends(t) {
		t.Run(bname, func(t *testing.T) {
			db := open(t, "acme")
			k := openTestKeyring(t, db, newTestRoot(t), "acme", newClock(), DefaultAlgorithm())
			deadline := time.Now().Add(dur)
			var (
				wg                               sync.WaitGroup
				ops, rotations, rewraps, retires atomic.Int64
				errMu                            sync.Mutex
				firstErr                         error
			)
			fail := func(err error) {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
			const workers = 12
			final := make([]map[string]string, workers)
			for w := range workers {
				final[w] = map[string]string{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; time.Now().Before(deadline); i++ {
						name := fmt.Sprintf("w%02d-k%02d", w, i%16)
						val := fmt.Sprintf("w%d-i%d", w, i)
						if err := putSecret(ctx, k, name, []byte(val)); err != nil {
							fail(fmt.Errorf("write %s: %w", name, err))
							return
						}
						final[w][name] = val
						got, err := getSecret(ctx, db, k, name)
						if err != nil {
							fail(fmt.Errorf("read %s: %w", name, err))
							return
						}
						if string(got) != val { // only this worker writes its names
							fail(fmt.Errorf("read %s: lost update", name))
							return
						}
						ops.Add(2)
					}
				}()
			}
			wg.Add(2)
			go func() { // rotator + retirer
				defer wg.Done()
				for time.Now().Before(deadline) {
					n, err := k.Rotate(ctx)
					if err != nil {
						fail(fmt.Errorf("rotate: %w", err))
						return
					}
					rotations.Add(1)
					for old := uint32(1); old+1 < n; old++ {
						switch err := k.Retire(ctx, old); {
						case err == nil:
							retires.Add(1)
						case errors.Is(err, ErrInUse), strings.Contains(err.Error(), "already retired"):
						default:
							fail(fmt.Errorf("retire %d: %w", old, err))
							return
						}
					}
					time.Sleep(40 * time.Millisecond)
				}
			}()
			go func() { // rewrapper
				defer wg.Done()
				for time.Now().Before(deadline) {
					res, err := k.Rewrap(ctx)
					if err != nil || res.Failed > 0 {
						fail(fmt.Errorf("rewrap: %+v %w", res, err))
						return
					}
					rewraps.Add(1)
				}
			}()
			wg.Wait()
			if firstErr != nil {
				t.Fatal(firstErr)
			}
			for w := range workers {
				for name, val := range final[w] {
					got, err := getSecret(ctx, db, k, name)
					if err != nil || string(got) != val {
						t.Fatalf("%s after the run: %v (lost data)", name, err)
					}
				}
			}
			if rotations.Load() < 5 || rewraps.Load() < 5 || retires.Load() < 1 {
				t.Fatalf("too little contention to prove anything: %d rotations, %d rewraps, %d retires",
					rotations.Load(), rewraps.Load(), retires.Load())
			}
			t.Logf("%d ops, %d rotations, %d rewraps, %d retires", ops.Load(), rotations.Load(), rewraps.Load(), retires.Load())
		})
	}
}

func mustStatus(t *testing.T, k *Keyring) Status {
	t.Helper()
	st, err := k.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustCiphertext(t *testing.T, db *store.DB, name string) []byte {
	t.Helper()
	var ct []byte
	err := db.View(context.Background(), func(tx *store.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT ciphertext FROM secrets WHERE name = ?`, name).Scan(&ct)
	})
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// Processes that open a new keyring at the same time, or rotate it at the
// same time, end with one version per rotation and no errors.
func TestConcurrentOpenAndRotate(t *testing.T) {
	ctx := context.Background()
	for bname, open := range backends(t) {
		t.Run(bname, func(t *testing.T) {
			db := open(t, "acme")
			root, clk := newTestRoot(t), newClock()
			var wg sync.WaitGroup
			krs := make([]*Keyring, 6)
			errs := make([]error, len(krs))
			for i := range krs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p := DefaultPolicy()
					krs[i], errs[i] = OpenKeyring(ctx, db, root, "acme", Options{Policy: p, Tables: []SealedTable{secretsTable}, Now: clk.Now})
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if st := mustStatus(t, krs[0]); len(st.Versions) != 1 {
				t.Fatalf("concurrent opens created %d versions, want 1", len(st.Versions))
			}
			for i := range krs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = krs[i].Rotate(ctx)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if st := mustStatus(t, krs[0]); st.Active != uint32(len(krs)+1) {
				t.Fatalf("after %d concurrent rotations active = v%d", len(krs), st.Active)
			}
		})
	}
}

// A keyring moves from one root key to another: every live version is
// re-wrapped, data still opens, the old root no longer opens the keyring,
// and a repeated run changes nothing.
func TestRewrapRoot(t *testing.T) {
	ctx := context.Background()
	for bname, open := range backends(t) {
		t.Run(bname, func(t *testing.T) {
			clk := newClock()
			db := open(t, "acme")
			oldRoot, newRoot := newTestRoot(t), &namedRoot{newTestRoot(t), "new-root"}
			k := openTestKeyring(t, db, oldRoot, "acme", clk, AES256GCM)
			if err := putSecret(ctx, k, "a", []byte("one")); err != nil {
				t.Fatal(err)
			}
			if _, err := k.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := putSecret(ctx, k, "b", []byte("two")); err != nil {
				t.Fatal(err)
			}
			moved := openTestKeyring(t, db, newRoot, "acme", clk, AES256GCM)
			if _, err := moved.RewrapRoot(ctx, newTestRoot(t)); err == nil {
				t.Fatal("re-wrapped with a wrong old root")
			}
			n, err := moved.RewrapRoot(ctx, oldRoot)
			if err != nil || n != 2 {
				t.Fatalf("RewrapRoot = %d, %v; want 2 versions", n, err)
			}
			if n, err := moved.RewrapRoot(ctx, oldRoot); err != nil || n != 0 {
				t.Fatalf("second RewrapRoot = %d, %v; want 0", n, err)
			}
			fresh := openTestKeyring(t, db, newRoot, "acme", clk, AES256GCM)
			for name, want := range map[string]string{"a": "one", "b": "two"} {
				if v, err := getSecret(ctx, db, fresh, name); err != nil || string(v) != want {
					t.Fatalf("%s under the new root: %v", name, err)
				}
			}
			stale := openTestKeyring(t, db, oldRoot, "acme", clk, AES256GCM)
			if _, err := getSecret(ctx, db, stale, "a"); err == nil {
				t.Fatal("the old root still opens the keyring")
			}
			if st := mustStatus(t, fresh); st.Versions[0].RootKeyID != "new-root" || st.Versions[1].RootKeyID != "new-root" {
				t.Fatalf("root ids after the move: %+v", st.Versions)
			}
		})
	}
}

type namedRoot struct {
	*testRoot
	id string
}

func (r *namedRoot) ID() string { return r.id }
