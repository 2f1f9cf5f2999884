// Package auditlog keeps the tamper-evident audit log: one per database (the
// system's and each tenant's), stored in that database.
//
// Every record is sealed with the database's keyring and hash-chained:
//
//	hash_n = SHA-256("clawhold/audit-log/v1" || tenant || hash_{n-1} || seq || ts || type || body)
//
// over the plaintext body, so that keys rewrap can re-seal records without
// breaking the chain. Records are numbered 1, 2, 3, ... without gaps, and
// checkpoints signed with an Ed25519 key (whose seed the system keyring
// seals) anchor the chain's head, in the database and in a file beside it,
// so that rewriting, deleting, reordering and truncating records are all
// detectable by [Log.Verify].
//
// Writers keep recording raw events in the events table, which is the log's
// inbox: [Log.Ship] moves its rows into the log.
package auditlog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// Kind is the encryption-context kind of audit records.
const Kind = "audit-log"

// chainDomain separates the chain's hashes from every other SHA-256 use.
const chainDomain = "clawhold/audit-log/v1"

// shipBatch bounds one Ship transaction (and how long it holds the writer).
const shipBatch = 512

// SealedTables lists the tables this package seals, for the keyring's
// rewrap, status and retire. audit_signing_keys exists (and has rows) only
// in the system database; in a tenant database it is empty.
func SealedTables() []keys.SealedTable {
	return []keys.SealedTable{
		{Table: "audit_log", KeyColumn: "rid", CipherColumn: "body", VersionColumn: "key_version", Kind: Kind},
		{Table: "audit_signing_keys", KeyColumn: "id", CipherColumn: "ciphertext", VersionColumn: "key_version", Kind: signingKeyKind},
	}
}

// Record is one audit-log entry, decrypted.
type Record struct {
	Seq     int64          `json:"seq"`
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	Actor   string         `json:"actor"`
	Subject string         `json:"subject"`
	User    string         `json:"user,omitempty"`
	Detail  map[string]any `json:"detail,omitempty"`
	Hash    []byte         `json:"-"` // the chain's hash after this record
}

// body is a record's sealed plaintext. Field order is fixed (a struct, not
// a map), and Detail's keys are sorted by encoding/json, so the encoding is
// canonical; the chain hashes the stored bytes, so it never re-encodes.
type body struct {
	Seq     int64          `json:"seq"`
	Time    time.Time      `json:"time"`
	Type    string         `json:"type"`
	Actor   string         `json:"actor"`
	Subject string         `json:"subject"`
	User    string         `json:"user,omitempty"`
	Detail  map[string]any `json:"detail,omitempty"`
	// Salt makes the plaintext unguessable, so that the stored hash cannot
	// confirm a guessed record (e.g. "did alice log in at 09:00?").
	Salt []byte `json:"salt"`
}

// Options configure a Log. Zero values take defaults.
type Options struct {
	// Signer signs checkpoints and holds the public keys Verify trusts.
	// Without it Checkpoint fails and Verify reports checkpoints it cannot
	// check as bad signatures.
	Signer *Signer
	// CheckpointFile, when set, receives a JSON line per checkpoint
	// (appended, mode 0600, fsynced): an anchor outside the database, so
	// that deleting the log's tail and its checkpoints together is still
	// detected.
	CheckpointFile string
	Now            func() time.Time
	Logger         *slog.Logger
}

// Log is one database's audit log. It is safe for concurrent use, and for
// use by several processes sharing the database.
type Log struct {
	db     *store.DB
	kr     *keys.Keyring
	tenant string
	opts   Options
}

// Open returns the audit log of db, whose records kr seals. tenant is the
// keyring's tenant ("system" for the system database).
func Open(db *store.DB, kr *keys.Keyring, tenant string, o Options) *Log {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Log{db: db, kr: kr, tenant: tenant, opts: o}
}

// Tenant is the tenant whose log this is.
func (l *Log) Tenant() string { return l.tenant }

// rid is the record id of seq: the encryption context's ID and the TEXT key
// rewrap pages by, so it must sort like seq.
func rid(seq int64) string { return fmt.Sprintf("%020d", seq) }

// chainHash computes hash_n. Variable-length fields are length-prefixed so
// that no two distinct records hash the same bytes.
func chainHash(tenant string, prev []byte, seq, ts int64, typ string, plaintext []byte) []byte {
	h := sha256.New()
	var buf []byte
	buf = appendLP(buf, []byte(chainDomain))
	buf = appendLP(buf, []byte(tenant))
	buf = appendLP(buf, prev)
	buf = binary.BigEndian.AppendUint64(buf, uint64(seq))
	buf = binary.BigEndian.AppendUint64(buf, uint64(ts))
	buf = appendLP(buf, []byte(typ))
	buf = binary.AppendUvarint(buf, uint64(len(plaintext)))
	h.Write(buf)
	h.Write(plaintext)
	return h.Sum(nil)
}

func appendLP(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// userOf derives a record's user: detail["user"] when it is a string, else
// the subject of auth.* events (the user logging in).
func userOf(ev events.Event) string {
	if u, ok := ev.Detail["user"].(string); ok {
		return u
	}
	if strings.HasPrefix(ev.Type, "auth.") {
		return ev.Subject
	}
	return ""
}

// lockTx serialises writers of the log. SQLite's write transaction already
// holds the database's only write lock; PostgreSQL locks the state row.
// It returns the pruned position.
func lockTx(ctx context.Context, tx *store.Tx) (prunedSeq int64, prunedHash []byte, err error) {
	q := `SELECT pruned_seq, pruned_hash FROM audit_log_state WHERE id = 1`
	if tx.Dialect() == store.Postgres {
		q += ` FOR UPDATE`
	}
	if err := tx.QueryRow(ctx, q).Scan(&prunedSeq, &prunedHash); err != nil {
		return 0, nil, fmt.Errorf("reading audit log state: %w", err)
	}
	return prunedSeq, prunedHash, nil
}

// headTx returns the last record's seq and hash, or the pruned position
// when the log holds no record.
func headTx(ctx context.Context, tx *store.Tx, prunedSeq int64, prunedHash []byte) (int64, []byte, error) {
	var seq int64
	var hash []byte
	err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && seq < prunedSeq) {
		return prunedSeq, prunedHash, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("reading audit log head: %w", err)
	}
	return seq, hash, nil
}

// appendTx seals and chains evs after the head, inside tx.
func (l *Log) appendTx(ctx context.Context, tx *store.Tx, evs []events.Event) ([]Record, error) {
	prunedSeq, prunedHash, err := lockTx(ctx, tx)
	if err != nil {
		return nil, err
	}
	seq, prev, err := headTx(ctx, tx, prunedSeq, prunedHash)
	if err != nil {
		return nil, err
	}
	out := make([]Record, 0, len(evs))
	for _, ev := range evs {
		seq++
		if ev.Time.IsZero() {
			ev.Time = l.opts.Now()
		}
		b := body{
			Seq:     seq,
			Time:    ev.Time.UTC(),
			Type:    ev.Type,
			Actor:   ev.Actor,
			Subject: ev.Subject,
			User:    userOf(ev),
			Detail:  ev.Detail,
			Salt:    make([]byte, 16),
		}
		if _, err := rand.Read(b.Salt); err != nil {
			return nil, fmt.Errorf("reading salt: %w", err)
		}
		if len(b.Detail) == 0 {
			b.Detail = nil
		}
		pt, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encoding %s record: %w", ev.Type, err)
		}
		ts := ev.Time.UnixMilli()
		hash := chainHash(l.tenant, prev, seq, ts, ev.Type, pt)
		ct, v, err := l.kr.SealTx(ctx, tx, keys.Context{Tenant: l.tenant, Kind: Kind, ID: rid(seq)}, pt)
		if err != nil {
			return nil, fmt.Errorf("sealing audit record %d: %w", seq, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO audit_log (seq, rid, ts, type, key_version, body, hash) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			seq, rid(seq), ts, ev.Type, int64(v), ct, hash); err != nil {
			return nil, fmt.Errorf("storing audit record %d: %w", seq, err)
		}
		out = append(out, Record{Seq: seq, Time: b.Time, Type: b.Type, Actor: b.Actor, Subject: b.Subject, User: b.User, Detail: b.Detail, Hash: hash})
		prev = hash
	}
	return out, nil
}

// Append seals and chains evs in one transaction. Zero times become now.
func (l *Log) Append(ctx context.Context, evs ...events.Event) ([]Record, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	var out []Record
	err := l.kr.Update(ctx, func(tx *store.Tx) error {
		var err error
		out, err = l.appendTx(ctx, tx, evs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("appending to the %s audit log: %w", l.tenant, err)
	}
	return out, nil
}

// Ship moves the raw events table's rows into the log, oldest first, and
// returns how many it moved. Each batch is inserted into the log and deleted
// from the events table in one transaction, so with any number of shippers
// running at once no event is lost or logged twice.
func (l *Log) Ship(ctx context.Context) (int, error) {
	// A read first: clawhold up ships every few hundred milliseconds, and
	// most of the time there is nothing to take the write lock for.
	var pending bool
	err := l.db.View(ctx, func(tx *store.Tx) error {
		err := tx.QueryRow(ctx, `SELECT 1 FROM events LIMIT 1`).Scan(new(int))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		pending = err == nil
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("shipping events to the %s audit log: %w", l.tenant, err)
	}
	if !pending {
		return 0, nil
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n := 0
		err := l.kr.Update(ctx, func(tx *store.Tx) error {
			// Lock first: on PostgreSQL, a second shipper waits here and
			// then reads the events table without the rows we delete.
			if _, _, err := lockTx(ctx, tx); err != nil {
				return err
			}
			evs, err := pendingTx(ctx, tx, shipBatch)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				return nil
			}
			if _, err := l.appendTx(ctx, tx, evs); err != nil {
				return err
			}
			// By id, not by range: on PostgreSQL an event with a lower id
			// may commit after we read, and must stay for the next batch.
			ids := make([]any, len(evs))
			for i, ev := range evs {
				ids[i] = ev.ID
			}
			q := `DELETE FROM events WHERE id IN (?` + strings.Repeat(`, ?`, len(ids)-1) + `)`
			res, err := tx.Exec(ctx, q, ids...)
			if err != nil {
				return fmt.Errorf("deleting shipped events: %w", err)
			}
			if d, err := res.RowsAffected(); err == nil && d != int64(len(evs)) {
				// Another shipper took them: roll back rather than log twice.
				return fmt.Errorf("deleting shipped events: %d of %d rows were already gone", int64(len(evs))-d, len(evs))
			}
			n = len(evs)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("shipping events to the %s audit log: %w", l.tenant, err)
		}
		total += n
		if n < shipBatch {
			return total, nil
		}
	}
}

// pendingTx reads up to limit raw events, oldest first.
func pendingTx(ctx context.Context, tx *store.Tx, limit int) ([]events.Event, error) {
	rows, err := tx.Query(ctx, `SELECT id, ts, type, actor, subject, detail FROM events ORDER BY id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("reading events: %w", err)
	}
	defer rows.Close()
	var out []events.Event
	for rows.Next() {
		var ev events.Event
		var ts int64
		var detail string
		if err := rows.Scan(&ev.ID, &ts, &ev.Type, &ev.Actor, &ev.Subject, &detail); err != nil {
			return nil, fmt.Errorf("reading events: %w", err)
		}
		ev.Time = time.UnixMilli(ts).UTC()
		if detail != "" && detail != "{}" {
			if err := json.Unmarshal([]byte(detail), &ev.Detail); err != nil {
				// Keep the evidence even if it is not the JSON we wrote.
				ev.Detail = map[string]any{"raw_detail": detail}
			}
		}
		out = append(out, ev)
	}
	return out, rows.Err()
}

// Head returns the seq of the last record (0 for an empty log).
func (l *Log) Head(ctx context.Context) (int64, error) {
	var seq int64
	err := l.db.View(ctx, func(tx *store.Tx) error {
		ps, ph, err := readStateTx(ctx, tx)
		if err != nil {
			return err
		}
		seq, _, err = headTx(ctx, tx, ps, ph)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reading the %s audit log head: %w", l.tenant, err)
	}
	return seq, nil
}

func readStateTx(ctx context.Context, tx *store.Tx) (int64, []byte, error) {
	var ps int64
	var ph []byte
	if err := tx.QueryRow(ctx, `SELECT pruned_seq, pruned_hash FROM audit_log_state WHERE id = 1`).Scan(&ps, &ph); err != nil {
		return 0, nil, fmt.Errorf("reading audit log state: %w", err)
	}
	return ps, ph, nil
}

// open decrypts and decodes one stored record under the context of id.
func (l *Log) open(ctx context.Context, id string, ct []byte) ([]byte, body, error) {
	pt, err := l.kr.Open(ctx, keys.Context{Tenant: l.tenant, Kind: Kind, ID: id}, ct)
	if err != nil {
		return nil, body{}, err
	}
	var b body
	if err := json.Unmarshal(pt, &b); err != nil {
		// Not err: a JSON error can quote the plaintext.
		return nil, body{}, decodeError{errors.New("record authenticates but is not a valid audit record")}
	}
	return pt, b, nil
}
