package auditlog

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/keys/keystest"
	"github.com/clawhold/clawhold/store"
	"github.com/clawhold/clawhold/store/storetest"
)

const tenant = "acme"

// env is one tenant's audit log over a real database, with the signer
// from the system database, as clawhold wires it.
type env struct {
	st     store.Store
	db     *store.DB
	kr     *keys.Keyring
	signer *Signer
	file   string
	log    *Log
	root   keys.Root
}

func newEnv(t *testing.T, b storetest.Backend) *env {
	t.Helper()
	ctx := t.Context()
	e := &env{st: b.Open(t), root: keystest.NewRoot(t)}
	sys, err := e.st.System(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sysKR, err := keys.OpenKeyring(ctx, sys, e.root, "system", keys.Options{Tables: SealedTables()})
	if err != nil {
		t.Fatal(err)
	}
	if e.signer, err = LoadSigner(ctx, sys, sysKR); err != nil {
		t.Fatal(err)
	}
	if e.db, err = e.st.Tenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if e.kr, err = keys.OpenKeyring(ctx, e.db, e.root, tenant, keys.Options{Tables: SealedTables()}); err != nil {
		t.Fatal(err)
	}
	e.file = filepath.Join(t.TempDir(), "audit", tenant+".checkpoints")
	e.log = Open(e.db, e.kr, tenant, Options{Signer: e.signer, CheckpointFile: e.file})
	return e
}

// exec runs raw SQL against the tenant database: the attacker's access.
func (e *env) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	err := e.db.Update(t.Context(), func(tx *store.Tx) error {
		_, err := tx.Exec(t.Context(), q, args...)
		return err
	})
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func (e *env) verify(t *testing.T) Report {
	t.Helper()
	rep, err := e.log.Verify(t.Context(), VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

var t0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func sample(i int) events.Event {
	switch i % 3 {
	case 0:
		return events.Event{Time: t0.Add(time.Duration(i) * time.Minute), Type: "auth.login", Actor: "frontdoor", Subject: "alice",
			Detail: map[string]any{"ip": "192.0.2.1", "country": "DE"}}
	case 1:
		return events.Event{Time: t0.Add(time.Duration(i) * time.Minute), Type: "secret.read", Actor: "cli", Subject: fmt.Sprintf("db-password-%d", i),
			Detail: map[string]any{"user": "bob"}}
	default:
		return events.Event{Time: t0.Add(time.Duration(i) * time.Minute), Type: "process.exec", Actor: "cell:web", Subject: "/usr/bin/curl",
			Detail: map[string]any{"process": map[string]any{"pid": float64(100 + i), "argv": []any{"curl", "example.com"}}}}
	}
}

func appendN(t *testing.T, l *Log, from, n int) {
	t.Helper()
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = sample(from + i)
	}
	if _, err := l.Append(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
}

func TestAppendQueryFilter(t *testing.T) {
	storetest.ForEach(t, "auditq", func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		ctx := t.Context()
		recs, err := e.log.Append(ctx, sample(0), sample(1), sample(2))
		if err != nil {
			t.Fatal(err)
		}
		if recs[0].Seq != 1 || recs[2].Seq != 3 || recs[0].User != "alice" || recs[1].User != "bob" || recs[2].User != "" {
			t.Fatalf("records = %+v", recs)
		}
		appendN(t, e.log, 3, 9) // 12 records: seq i+1 is sample(i)
		if head, err := e.log.Head(ctx); err != nil || head != 12 {
			t.Fatalf("Head = %d, %v", head, err)
		}

		all, err := e.log.Query(ctx, Filter{})
		if err != nil || len(all) != 12 {
			t.Fatalf("Query all: %d, %v", len(all), err)
		}
		for i, r := range all {
			ev := sample(i)
			if r.Seq != int64(i+1) || r.Type != ev.Type || r.Subject != ev.Subject || !r.Time.Equal(ev.Time) {
				t.Fatalf("record %d = %+v, want %+v", i, r, ev)
			}
		}
		if pid := all[2].Detail["process"].(map[string]any)["pid"]; pid != float64(102) {
			t.Fatalf("detail did not round-trip: %v", all[2].Detail)
		}

		seqs := func(f Filter) string {
			t.Helper()
			rs, err := e.log.Query(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, r := range rs {
				s = append(s, fmt.Sprint(r.Seq))
			}
			return strings.Join(s, ",")
		}
		for _, tt := range []struct {
			name string
			f    Filter
			want string
		}{
			{"exact type", Filter{Types: []string{"auth.login"}}, "1,4,7,10"},
			{"prefix", Filter{Types: []string{"secret.*"}}, "2,5,8,11"},
			{"two types", Filter{Types: []string{"auth.*", "process.exec"}}, "1,3,4,6,7,9,10,12"},
			{"star", Filter{Types: []string{"*"}, Limit: 2}, "1,2"},
			{"prefix is not a substring", Filter{Types: []string{"auth.l*"}}, "1,4,7,10"},
			{"since until", Filter{Since: t0.Add(3 * time.Minute), Until: t0.Add(5 * time.Minute)}, "4,5,6"},
			{"user from detail", Filter{User: "bob"}, "2,5,8,11"},
			{"user from auth subject", Filter{User: "alice", Limit: 3}, "1,4,7"},
			{"after seq", Filter{AfterSeq: 10}, "11,12"},
			{"newest", Filter{Limit: 3, Newest: true}, "10,11,12"},
			{"newest user", Filter{User: "bob", Limit: 2, Newest: true}, "8,11"},
			{"none", Filter{Types: []string{"nope"}}, ""},
		} {
			if got := seqs(tt.f); got != tt.want {
				t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
			}
		}

		var buf bytes.Buffer
		n, err := e.log.Export(ctx, &buf, Filter{Types: []string{"auth.login"}, Limit: 2})
		if err != nil || n != 2 {
			t.Fatalf("Export: %d, %v", n, err)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 || !strings.Contains(lines[0], `"seq":1,"time":"2026-03-01T09:00:00Z","type":"auth.login","actor":"frontdoor","subject":"alice","user":"alice"`) ||
			!strings.Contains(lines[0], `"tenant":"acme","hash":"`+fmt.Sprintf("%x", recs[0].Hash)+`"`) {
			t.Fatalf("export = %s", buf.String())
		}

		// Sealed at rest: no plaintext field appears in the database.
		var raw []byte
		e.db.View(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT body FROM audit_log WHERE seq = 2`).Scan(&raw)
		})
		if bytes.Contains(raw, []byte("db-password")) || bytes.Contains(raw, []byte("bob")) {
			t.Fatal("record body is not sealed")
		}
	})
}

func TestShipMovesAndDeletes(t *testing.T) {
	storetest.ForEach(t, "auditship", func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		ctx := t.Context()
		const n = 1100 // three batches
		err := e.db.Update(ctx, func(tx *store.Tx) error {
			for i := range n {
				ev := sample(i)
				ev.Subject = fmt.Sprint(i)
				if err := events.AppendTx(ctx, tx, ev); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.log.Ship(ctx)
		if err != nil || got != n {
			t.Fatalf("Ship = %d, %v", got, err)
		}
		if left, _ := events.List(ctx, e.db, events.Filter{}); len(left) != 0 {
			t.Fatalf("%d raw events left after shipping", len(left))
		}
		recs, err := e.log.Query(ctx, Filter{})
		if err != nil || len(recs) != n {
			t.Fatalf("Query: %d, %v", len(recs), err)
		}
		for i, r := range recs {
			if r.Subject != fmt.Sprint(i) || r.Seq != int64(i+1) {
				t.Fatalf("record %d = seq %d subject %s: not oldest first", i, r.Seq, r.Subject)
			}
		}
		if got, err := e.log.Ship(ctx); err != nil || got != 0 {
			t.Fatalf("second Ship = %d, %v", got, err)
		}

		// A batch that fails to seal leaves the raw events in place.
		if err := events.Append(ctx, e.db, events.Event{Type: "x.y", Actor: "a", Subject: "kept"}); err != nil {
			t.Fatal(err)
		}
		broken := Open(e.db, e.kr, "other-tenant", Options{}) // context tenant mismatch: SealTx fails
		if _, err := broken.Ship(ctx); err == nil {
			t.Fatal("Ship with a mismatched keyring succeeded")
		}
		if left, _ := events.List(ctx, e.db, events.Filter{}); len(left) != 1 {
			t.Fatalf("failed ship lost events: %d left", len(left))
		}
		if rep := e.verify(t); !rep.OK || rep.Records != n {
			t.Fatalf("verify after shipping: %+v", rep)
		}
	})
}

func TestConcurrentShippers(t *testing.T) {
	storetest.ForEach(t, "auditconc", func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		ctx := t.Context()
		// A second process: its own Store, keyring and Log on the same data.
		db2, err := b.Open(t).Tenant(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		kr2, err := keys.OpenKeyring(ctx, db2, e.root, tenant, keys.Options{})
		if err != nil {
			t.Fatal(err)
		}
		log2 := Open(db2, kr2, tenant, Options{})

		const writers, per = 2, 400
		done := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for w := range writers {
			wg.Go(func() {
				for i := range per {
					ev := events.Event{Type: "tool.call", Actor: "w", Subject: fmt.Sprintf("%d-%d", w, i)}
					if err := events.Append(ctx, e.db, ev); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		var shippers sync.WaitGroup
		for _, l := range []*Log{e.log, log2} {
			shippers.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					if _, err := l.Ship(ctx); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(done)
		shippers.Wait()
		if _, err := e.log.Ship(ctx); err != nil {
			t.Fatal(err)
		}
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		recs, err := e.log.Query(ctx, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, r := range recs {
			seen[r.Subject]++
		}
		if len(recs) != writers*per || len(seen) != writers*per {
			t.Fatalf("%d records, %d distinct events; want %d of each", len(recs), len(seen), writers*per)
		}
		if rep := e.verify(t); !rep.OK {
			t.Fatalf("verify: %+v", rep)
		}
	})
}

func TestCheckpoint(t *testing.T) {
	storetest.ForEach(t, "auditcp", func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		ctx := t.Context()
		if cp, err := e.log.Checkpoint(ctx); err != nil || cp.Seq != 0 {
			t.Fatalf("checkpoint of an empty log = %+v, %v", cp, err)
		}
		appendN(t, e.log, 0, 5)
		cp, err := e.log.Checkpoint(ctx)
		if err != nil || cp.Seq != 5 || cp.KeyID != e.signer.KeyID() || !ed25519.Verify(e.signer.Public(), cp.message(), cp.Signature) {
			t.Fatalf("checkpoint = %+v, %v", cp, err)
		}
		again, err := e.log.Checkpoint(ctx)
		if err != nil || !bytes.Equal(again.Signature, cp.Signature) {
			t.Fatalf("checkpoint without new records was not a no-op: %+v, %v", again, err)
		}
		appendN(t, e.log, 5, 2)
		if _, err := e.log.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		fromFile, err := ReadCheckpointFile(e.file)
		if err != nil || len(fromFile) != 2 || fromFile[0].Seq != 5 || fromFile[1].Seq != 7 {
			t.Fatalf("checkpoint file = %+v, %v", fromFile, err)
		}
		if fi, err := os.Stat(e.file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("checkpoint file mode: %v %v", fi.Mode(), err)
		}
		rep := e.verify(t)
		if !rep.OK || rep.Records != 7 || rep.Checkpoints != 2 || rep.Head != 7 {
			t.Fatalf("verify = %+v", rep)
		}
		// The signer is stable across loads.
		sys, _ := e.st.System(ctx)
		sysKR, err := keys.OpenKeyring(ctx, sys, e.root, "system", keys.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s2, err := LoadSigner(ctx, sys, sysKR)
		if err != nil || s2.KeyID() != e.signer.KeyID() {
			t.Fatalf("reloaded signer = %v, %v", s2, err)
		}
		// Verify without a signer cannot trust the checkpoints.
		bare := Open(e.db, e.kr, tenant, Options{})
		if rep, err := bare.Verify(ctx, VerifyOptions{}); err != nil || rep.OK || rep.FirstBroken.Kind != BadSignature {
			t.Fatalf("verify without signer = %+v, %v", rep, err)
		}
	})
}

// swapRows exchanges every column but seq of rows a and b (the rid is
// UNIQUE, so through a parking value).
func swapRows(t *testing.T, e *env, a, b int64, cols string) {
	t.Helper()
	ctx := t.Context()
	err := e.db.Update(ctx, func(tx *store.Tx) error {
		read := func(seq int64) (rid string, ts int64, typ string, body, hash []byte) {
			tx.QueryRow(ctx, `SELECT rid, ts, type, body, hash FROM audit_log WHERE seq = ?`, seq).Scan(&rid, &ts, &typ, &body, &hash)
			return
		}
		ra, tsa, ta, ba, ha := read(a)
		rb, tsb, tb, bb, hb := read(b)
		set := func(seq int64, rid string, ts int64, typ string, body, hash []byte) error {
			var err error
			if cols == "all" {
				_, err = tx.Exec(ctx, `UPDATE audit_log SET rid = ?, ts = ?, type = ?, body = ?, hash = ? WHERE seq = ?`, rid, ts, typ, body, hash, seq)
			} else {
				_, err = tx.Exec(ctx, `UPDATE audit_log SET body = ?, hash = ? WHERE seq = ?`, body, hash, seq)
			}
			return err
		}
		if cols == "all" {
			if _, err := tx.Exec(ctx, `UPDATE audit_log SET rid = 'parked' WHERE seq = ?`, a); err != nil {
				return err
			}
		}
		if err := set(b, ra, tsa, ta, ba, ha); err != nil {
			return err
		}
		return set(a, rb, tsb, tb, bb, hb)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestVerifyDetects(t *testing.T) {
	for _, tt := range []struct {
		name   string
		tamper func(t *testing.T, e *env)
		seq    int64
		kind   BreakKind
	}{
		{"byte flipped in body", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE audit_log SET body = ? WHERE seq = 4`, flipLast(t, e, 4))
		}, 4, Modified},
		{"re-sealed with changed content, old hash", func(t *testing.T, e *env) {
			// An attacker holding the keys rewrites record 4 properly
			// sealed: only the chain catches it.
			ctx := t.Context()
			err := e.kr.Update(ctx, func(tx *store.Tx) error {
				b := body{Seq: 4, Time: sample(3).Time, Type: sample(3).Type, Actor: "someone-else", Subject: "alice", Salt: make([]byte, 16)}
				pt, _ := json.Marshal(b)
				ct, v, err := e.kr.SealTx(ctx, tx, keys.Context{Tenant: tenant, Kind: Kind, ID: rid(4)}, pt)
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `UPDATE audit_log SET body = ?, key_version = ? WHERE seq = 4`, ct, int64(v))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}, 4, Modified},
		{"timestamp changed", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE audit_log SET ts = ts + 1000 WHERE seq = 6`)
		}, 6, Modified},
		{"type changed", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE audit_log SET type = 'tool.call' WHERE seq = 6`)
		}, 6, Modified},
		{"record deleted", func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM audit_log WHERE seq = 4`)
		}, 4, Deleted},
		{"first record deleted", func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM audit_log WHERE seq = 1`)
		}, 1, Deleted},
		{"rows swapped", func(t *testing.T, e *env) { swapRows(t, e, 4, 5, "all") }, 4, Reordered},
		{"bodies and hashes swapped", func(t *testing.T, e *env) { swapRows(t, e, 4, 5, "body") }, 4, Reordered},
		{"tail deleted", func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM audit_log WHERE seq > 8`)
		}, 9, Truncated},
		{"tail and its checkpoints deleted", func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM audit_log WHERE seq > 8`)
			e.exec(t, `DELETE FROM audit_log_checkpoints WHERE seq > 8`)
		}, 9, Truncated},
		{"tail cut and regrown", func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM audit_log WHERE seq > 8`)
			e.exec(t, `DELETE FROM audit_log_checkpoints WHERE seq > 8`)
			appendN(t, e.log, 20, 3)
			if _, err := e.log.Checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
		}, 10, Truncated},
		{"checkpoint signature forged", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE audit_log_checkpoints SET signature = ? WHERE seq = 5`, bytes.Repeat([]byte{7}, ed25519.SignatureSize))
		}, 5, BadSignature},
		{"checkpoint signed by a substituted key", func(t *testing.T, e *env) {
			// The attacker adds their own public key (they cannot seal its
			// seed with the system keyring) and re-signs a checkpoint.
			pub, priv, _ := ed25519.GenerateKey(rand.Reader)
			sys, _ := e.st.System(t.Context())
			err := sys.Update(t.Context(), func(tx *store.Tx) error {
				_, err := tx.Exec(t.Context(), `INSERT INTO audit_signing_keys (id, public, ciphertext, key_version, created_at) VALUES (?, ?, ?, 1, ?)`,
					KeyID(pub), []byte(pub), []byte("not sealed"), time.Now().UnixMilli()+1)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			sysKR, err := keys.OpenKeyring(t.Context(), sys, e.root, "system", keys.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if e.signer, err = LoadSigner(t.Context(), sys, sysKR); err != nil || e.signer.KeyID() == KeyID(pub) {
				t.Fatalf("substituted key loaded as the signer: %v", err)
			}
			e.log = Open(e.db, e.kr, tenant, Options{Signer: e.signer, CheckpointFile: e.file})
			e.exec(t, `DELETE FROM audit_log WHERE seq > 8`)
			e.exec(t, `DELETE FROM audit_log_checkpoints WHERE seq > 8`)
			os.Remove(e.file)
			cp := Checkpoint{Tenant: tenant, Seq: 8, Time: time.UnixMilli(time.Now().UnixMilli()).UTC()}
			e.db.View(t.Context(), func(tx *store.Tx) error {
				return tx.QueryRow(t.Context(), `SELECT hash FROM audit_log WHERE seq = 8`).Scan(&cp.Hash)
			})
			cp.KeyID = KeyID(pub)
			cp.Signature = ed25519.Sign(priv, cp.message())
			e.exec(t, `INSERT INTO audit_log_checkpoints (seq, ts, hash, key_id, signature) VALUES (?, ?, ?, ?, ?)`,
				cp.Seq, cp.Time.UnixMilli(), cp.Hash, cp.KeyID, cp.Signature)
		}, 8, BadSignature},
		{"pruned state forged", func(t *testing.T, e *env) {
			// Hide records 1-3 as if retention had removed them.
			var h []byte
			e.db.View(t.Context(), func(tx *store.Tx) error {
				return tx.QueryRow(t.Context(), `SELECT hash FROM audit_log WHERE seq = 3`).Scan(&h)
			})
			e.exec(t, `DELETE FROM audit_log WHERE seq <= 3`)
			e.exec(t, `UPDATE audit_log_state SET pruned_seq = 3, pruned_hash = ? WHERE id = 1`, h)
		}, 3, PrunedInconsistent},
	} {
		t.Run(tt.name, func(t *testing.T) {
			storetest.ForEach(t, "auditv", func(t *testing.T, b storetest.Backend) {
				e := newEnv(t, b)
				appendN(t, e.log, 0, 5)
				if _, err := e.log.Checkpoint(t.Context()); err != nil {
					t.Fatal(err)
				}
				appendN(t, e.log, 5, 5)
				if _, err := e.log.Checkpoint(t.Context()); err != nil {
					t.Fatal(err)
				}
				if rep := e.verify(t); !rep.OK || rep.Records != 10 || rep.Checkpoints != 2 {
					t.Fatalf("before tampering: %+v", rep)
				}
				tt.tamper(t, e)
				rep := e.verify(t)
				if rep.OK || rep.FirstBroken == nil {
					t.Fatalf("tampering not detected: %+v", rep)
				}
				if got := *rep.FirstBroken; got.Seq != tt.seq || got.Kind != tt.kind {
					t.Fatalf("first break = %v, want seq %d %s (all: %v)", got, tt.seq, tt.kind, rep.Breaks)
				}
				t.Logf("%v", rep.FirstBroken)
			})
		})
	}
}

func TestVerifyNeedsTheFileForTailAndCheckpoints(t *testing.T) {
	// Without the checkpoint file, cutting the tail together with its
	// checkpoints is invisible: the file is what catches it (above).
	storetest.ForEach(t, "auditnf", func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		appendN(t, e.log, 0, 10)
		if _, err := e.log.Checkpoint(t.Context()); err != nil {
			t.Fatal(err)
		}
		e.exec(t, `DELETE FROM audit_log WHERE seq > 8`)
		e.exec(t, `DELETE FROM audit_log_checkpoints`)
		noFile := Open(e.db, e.kr, tenant, Options{Signer: e.signer})
		if rep, _ := noFile.Verify(t.Context(), VerifyOptions{}); !rep.OK {
			t.Fatalf("expected the database alone to look fine: %+v", rep)
		}
		extra, err := ReadCheckpointFile(e.file)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := noFile.Verify(t.Context(), VerifyOptions{ExtraCheckpoints: extra})
		if err != nil || rep.OK || rep.FirstBroken.Kind != Truncated || rep.FirstBroken.Seq != 9 {
			t.Fatalf("extra checkpoints: %+v, %v", rep, err)
		}
	})
}

func TestPruneThenVerify(t *testing.T) {
	storetest.ForEach(t, "auditprune", func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		ctx := t.Context()
		appendN(t, e.log, 0, 10) // minute i is seq i+1
		if _, err := e.log.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		n, err := e.log.Prune(ctx, t0.Add(4*time.Minute+30*time.Second))
		if err != nil || n != 5 {
			t.Fatalf("Prune = %d, %v", n, err)
		}
		rep := e.verify(t)
		if !rep.OK || rep.PrunedSeq != 5 || rep.Records != 6 || rep.Head != 11 {
			t.Fatalf("verify after prune: %+v", rep)
		}
		recs, err := e.log.Query(ctx, Filter{Types: []string{"audit.pruned"}})
		if err != nil || len(recs) != 1 || recs[0].Seq != 11 || recs[0].Detail["pruned_seq"] != float64(5) {
			t.Fatalf("prune record: %+v, %v", recs, err)
		}
		// Nothing older remains: pruning again removes nothing.
		if n, err := e.log.Prune(ctx, t0.Add(4*time.Minute)); err != nil || n != 0 {
			t.Fatalf("second Prune = %d, %v", n, err)
		}
		appendN(t, e.log, 20, 2)
		if _, err := e.log.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		if rep := e.verify(t); !rep.OK || rep.Head != 13 {
			t.Fatalf("verify after prune and append: %+v", rep)
		}
		// Pruning everything keeps the chain verifiable from the state.
		if n, err := e.log.Prune(ctx, time.Now().Add(time.Hour)); err != nil || n != 8 {
			t.Fatalf("Prune all = %d, %v", n, err)
		}
		if cps, err := ReadCheckpointFile(e.file); err != nil || len(cps) != 1 || cps[0].Seq != 13 {
			t.Fatalf("checkpoint file not compacted to the pruned position: %+v, %v", cps, err)
		}
		appendN(t, e.log, 30, 1)
		if rep := e.verify(t); !rep.OK || rep.PrunedSeq != 13 || rep.Head != 15 {
			t.Fatalf("verify after pruning all: %+v", rep)
		}
		// Deleting the prune checkpoint from the database is still backed
		// by the file; deleting an unpruned record below is not hidden.
		e.exec(t, `DELETE FROM audit_log_checkpoints`)
		if rep := e.verify(t); !rep.OK {
			t.Fatalf("verify with only the file's checkpoints: %+v", rep)
		}
		os.Remove(e.file)
		if rep := e.verify(t); rep.OK || rep.FirstBroken.Kind != PrunedInconsistent {
			t.Fatalf("prune state without any checkpoint: %+v", rep)
		}
	})
}

func TestRewrapKeepsVerify(t *testing.T) {
	storetest.ForEach(t, "auditrewrap", func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		ctx := t.Context()
		appendN(t, e.log, 0, 70) // more than one rewrap batch
		if _, err := e.log.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		v, err := e.kr.Rotate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		res, err := e.kr.Rewrap(ctx)
		if err != nil || res.Rewrapped != 70 || res.Failed != 0 {
			t.Fatalf("Rewrap = %+v, %v", res, err)
		}
		var old int
		e.db.View(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT COUNT(*) FROM audit_log WHERE key_version <> ?`, int64(v)).Scan(&old)
		})
		if old != 0 {
			t.Fatalf("%d records still under the old version", old)
		}
		if rep := e.verify(t); !rep.OK || rep.Records != 70 {
			t.Fatalf("verify after rewrap: %+v", rep)
		}
		// The system keyring's rewrap re-seals the signing key, which
		// stays trusted.
		sys, _ := e.st.System(ctx)
		sysKR, err := keys.OpenKeyring(ctx, sys, e.root, "system", keys.Options{Tables: SealedTables()})
		if err != nil {
			t.Fatal(err)
		}
		sysKR.Rotate(ctx)
		if res, err := sysKR.Rewrap(ctx); err != nil || res.Rewrapped != 1 {
			t.Fatalf("system Rewrap = %+v, %v", res, err)
		}
		s2, err := LoadSigner(ctx, sys, sysKR)
		if err != nil || s2.KeyID() != e.signer.KeyID() {
			t.Fatalf("signer after rewrap: %v", err)
		}
		l2 := Open(e.db, e.kr, tenant, Options{Signer: s2, CheckpointFile: e.file})
		if rep, err := l2.Verify(ctx, VerifyOptions{}); err != nil || !rep.OK {
			t.Fatalf("verify with the rewrapped signer: %+v, %v", rep, err)
		}
	})
}

func TestSecretsNeverInErrors(t *testing.T) {
	storetest.ForEach(t, "auditsecret", func(t *testing.T, b storetest.Backend) {
		e := newEnv(t, b)
		ctx := t.Context()
		const secret = "hunter2-TOPSECRET-value"
		if _, err := e.log.Append(ctx, events.Event{Type: "tool.call", Actor: "agent", Subject: secret, Detail: map[string]any{"arg": secret}}); err != nil {
			t.Fatal(err)
		}
		appendN(t, e.log, 1, 3)
		var body []byte
		e.db.View(ctx, func(tx *store.Tx) error {
			return tx.QueryRow(ctx, `SELECT body FROM audit_log WHERE seq = 1`).Scan(&body)
		})
		if bytes.Contains(body, []byte(secret)) {
			t.Fatal("plaintext at rest")
		}
		// Re-seal record 1 with another salt but the same content: the hash
		// no longer matches. The report must not echo the content.
		e.kr.Update(ctx, func(tx *store.Tx) error {
			b := fmt.Appendf(nil, `{"seq":1,"time":"%s","type":"tool.call","actor":"agent","subject":%q,"salt":"AAAAAAAAAAAAAAAAAAAAAA=="}`,
				time.UnixMilli(0).UTC().Format(time.RFC3339Nano), secret)
			ct, v, _ := e.kr.SealTx(ctx, tx, keys.Context{Tenant: tenant, Kind: Kind, ID: rid(1)}, b)
			_, err := tx.Exec(ctx, `UPDATE audit_log SET body = ?, key_version = ? WHERE seq = 1`, ct, int64(v))
			return err
		})
		rep := e.verify(t)
		if rep.OK {
			t.Fatal("not detected")
		}
		if s := fmt.Sprintf("%+v", rep); strings.Contains(s, secret) {
			t.Fatalf("report leaks the record: %s", s)
		}
		e.exec(t, `UPDATE audit_log SET body = ? WHERE seq = 2`, flipLast(t, e, 2))
		_, err := e.log.Query(ctx, Filter{})
		if err == nil || strings.Contains(err.Error(), secret) {
			t.Fatalf("query of a tampered log: %v", err)
		}
	})
}

func flipLast(t *testing.T, e *env, seq int64) []byte {
	t.Helper()
	var b []byte
	err := e.db.View(t.Context(), func(tx *store.Tx) error {
		return tx.QueryRow(t.Context(), `SELECT body FROM audit_log WHERE seq = ?`, seq).Scan(&b)
	})
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	return b
}

// BenchmarkAppend measures sealing and chaining, batches of 512 records
// into SQLite on disk, side by side with the same batches written to the
// raw events table (no sealing, no chain: the cost clawhold adds) and with
// Ship (raw rows read, sealed, chained, inserted and deleted: the path
// every event takes in clawhold up).
func BenchmarkAppend(b *testing.B) {
	ctx := context.Background()
	open := func(b *testing.B) (*store.DB, *Log) {
		dir := b.TempDir()
		os.Chmod(dir, 0o700)
		st, err := store.OpenSQLite(dir)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		db, err := st.Tenant(ctx, tenant)
		if err != nil {
			b.Fatal(err)
		}
		kr, err := keys.OpenKeyring(ctx, db, keystest.NewRoot(b), tenant, keys.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return db, Open(db, kr, tenant, Options{})
	}
	batch := make([]events.Event, 512)
	for i := range batch {
		batch[i] = sample(i)
	}
	raw := func(db *store.DB) error {
		return db.Update(ctx, func(tx *store.Tx) error {
			for _, ev := range batch {
				if err := events.AppendTx(ctx, tx, ev); err != nil {
					return err
				}
			}
			return nil
		})
	}
	b.Run("raw-events", func(b *testing.B) {
		db, _ := open(b)
		for b.Loop() {
			if err := raw(db); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("sealed-chained", func(b *testing.B) {
		_, l := open(b)
		for b.Loop() {
			if _, err := l.Append(ctx, batch...); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("ship", func(b *testing.B) {
		db, l := open(b)
		for b.Loop() {
			b.StopTimer()
			if err := raw(db); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if n, err := l.Ship(ctx); err != nil || n != len(batch) {
				b.Fatal(n, err)
			}
		}
		b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "records/s")
	})
}
