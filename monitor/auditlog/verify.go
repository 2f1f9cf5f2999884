package auditlog

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/clawhold/clawhold/datadir"
	"github.com/clawhold/clawhold/events"
	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// BreakKind says how the log was found broken.
type BreakKind string

const (
	// Modified: a record does not authenticate (AEAD failure), its row
	// disagrees with its sealed content, or its hash is not the chain's.
	Modified BreakKind = "modified"
	// Deleted: records are missing between two others (a gap in seq).
	Deleted BreakKind = "deleted"
	// Reordered: a row holds another position's record (its record id or
	// sealed seq names a different seq).
	Reordered BreakKind = "reordered"
	// Truncated: a signed checkpoint names a record beyond the log's end,
	// or a hash the chain does not have at that seq (the tail was cut and
	// possibly re-grown).
	Truncated BreakKind = "truncated"
	// BadSignature: a checkpoint whose signature does not verify with a
	// trusted key.
	BadSignature BreakKind = "bad-signature"
	// PrunedInconsistent: the retention state disagrees with the records
	// or is not backed by a signed checkpoint.
	PrunedInconsistent BreakKind = "pruned-inconsistent"
)

// Break is one place the log is broken.
type Break struct {
	Seq    int64     `json:"seq"`
	Kind   BreakKind `json:"kind"`
	Detail string    `json:"detail"`
}

func (b Break) String() string { return fmt.Sprintf("seq %d: %s: %s", b.Seq, b.Kind, b.Detail) }

// Report is the outcome of Verify.
type Report struct {
	Tenant      string  `json:"tenant"`
	OK          bool    `json:"ok"`
	Records     int     `json:"records"`     // records walked
	Checkpoints int     `json:"checkpoints"` // distinct valid checkpoints checked
	Head        int64   `json:"head"`        // last seq found
	PrunedSeq   int64   `json:"pruned_seq"`  // records up to here were removed by retention
	FirstBroken *Break  `json:"first_broken,omitempty"`
	Breaks      []Break `json:"breaks,omitempty"` // in seq order, at most maxBreaks; later ones may follow from the first
}

const maxBreaks = 100

// VerifyOptions add checkpoints to check beyond the database's and the
// configured checkpoint file's (e.g. a copy kept elsewhere).
type VerifyOptions struct {
	ExtraCheckpoints []Checkpoint
}

// neighbourhood is how far from its row Verify looks for the position a
// misplaced sealed record belongs to.
const neighbourhood = 16

// verifyPage is how many rows one read transaction of Verify walks.
const verifyPage = 1000

type sourcedCheckpoint struct {
	Checkpoint
	source string
}

// Verify walks the whole log and checks every record, the chain, the
// retention state and every checkpoint (database, checkpoint file, extra).
// An error means it could not check (the database or the keyring failed),
// not that the log is broken: that is in the Report.
func (l *Log) Verify(ctx context.Context, o VerifyOptions) (Report, error) {
	// The walk spans many read transactions: a prune committed meanwhile
	// would look like deleted records, so a broken result is re-checked
	// when retention moved under it.
	for attempt := 1; ; attempt++ {
		rep, err := l.verify(ctx, o)
		if err != nil || rep.OK || attempt == 3 {
			return rep, err
		}
		var ps int64
		err = l.db.View(ctx, func(tx *store.Tx) error {
			var err error
			ps, _, err = readStateTx(ctx, tx)
			return err
		})
		if err != nil {
			return rep, fmt.Errorf("verifying the %s audit log: %w", l.tenant, err)
		}
		if ps == rep.PrunedSeq {
			return rep, nil
		}
	}
}

func (l *Log) verify(ctx context.Context, o VerifyOptions) (Report, error) {
	rep := Report{Tenant: l.tenant}
	var breaks []Break
	add := func(b Break) { breaks = append(breaks, b) }

	var prunedSeq int64
	var prunedHash []byte
	var dbCPs []sourcedCheckpoint
	err := l.db.View(ctx, func(tx *store.Tx) error {
		var err error
		if prunedSeq, prunedHash, err = readStateTx(ctx, tx); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT seq, ts, hash, key_id, signature FROM audit_log_checkpoints ORDER BY seq`)
		if err != nil {
			return fmt.Errorf("reading checkpoints: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			cp := sourcedCheckpoint{Checkpoint{Tenant: l.tenant}, "database"}
			var ts int64
			if err := rows.Scan(&cp.Seq, &ts, &cp.Hash, &cp.KeyID, &cp.Signature); err != nil {
				return fmt.Errorf("reading checkpoints: %w", err)
			}
			cp.Time = time.UnixMilli(ts).UTC()
			dbCPs = append(dbCPs, cp)
		}
		return rows.Err()
	})
	if err != nil {
		return rep, fmt.Errorf("verifying the %s audit log: %w", l.tenant, err)
	}
	rep.PrunedSeq = prunedSeq

	all := dbCPs
	if l.opts.CheckpointFile != "" {
		fileCPs, err := ReadCheckpointFile(l.opts.CheckpointFile)
		if err != nil {
			return rep, fmt.Errorf("verifying the %s audit log: %w", l.tenant, err)
		}
		for _, cp := range fileCPs {
			all = append(all, sourcedCheckpoint{cp, "checkpoint file"})
		}
	}
	for _, cp := range o.ExtraCheckpoints {
		all = append(all, sourcedCheckpoint{cp, "extra checkpoints"})
	}

	// Check signatures once per distinct checkpoint; index the good ones.
	bySeq := make(map[int64][]sourcedCheckpoint)
	seen := make(map[string]bool)
	for _, cp := range all {
		if cp.Tenant != l.tenant || cp.Seq < prunedSeq {
			continue // another log's, or about records retention removed
		}
		k := fmt.Sprintf("%d/%x/%s/%x", cp.Seq, cp.Hash, cp.KeyID, cp.Signature)
		if seen[k] {
			continue
		}
		seen[k] = true
		if !l.opts.Signer.verifySig(cp.Checkpoint) {
			why := "signature does not verify"
			if _, ok := l.opts.Signer.Trusted(cp.KeyID); !ok {
				why = fmt.Sprintf("signed by key %q, which is not a trusted audit signing key", cp.KeyID)
			}
			add(Break{cp.Seq, BadSignature, fmt.Sprintf("checkpoint (%s) at seq %d: %s", cp.source, cp.Seq, why)})
			continue
		}
		rep.Checkpoints++
		bySeq[cp.Seq] = append(bySeq[cp.Seq], cp)
	}

	// Retention: pruned_seq must be backed by a signed checkpoint there.
	if prunedSeq > 0 {
		backed := false
		for _, cp := range bySeq[prunedSeq] {
			if bytes.Equal(cp.Hash, prunedHash) {
				backed = true
			} else {
				add(Break{prunedSeq, PrunedInconsistent, fmt.Sprintf("retention state says the chain's hash at seq %d is %x, the checkpoint (%s) signed %x",
					prunedSeq, short(prunedHash), cp.source, short(cp.Hash))})
			}
		}
		if !backed {
			add(Break{prunedSeq, PrunedInconsistent, fmt.Sprintf("retention state says records up to seq %d were pruned, but no valid checkpoint at that seq confirms it", prunedSeq)})
		}
	}

	// Walk.
	expected := prunedSeq + 1
	prev := prunedHash
	trustPrev := true
	reportedPrePrune := false
	after := int64(0)
	for {
		var page []storedRow
		err := l.db.View(ctx, func(tx *store.Tx) error {
			var err error
			page, err = readRowsTx(ctx, tx, after, verifyPage)
			return err
		})
		if err != nil {
			return rep, fmt.Errorf("verifying the %s audit log: %w", l.tenant, err)
		}
		for _, r := range page {
			after = r.seq
			rep.Records++
			if r.seq <= prunedSeq {
				if !reportedPrePrune {
					add(Break{r.seq, PrunedInconsistent, fmt.Sprintf("record %d is still present although retention pruned up to seq %d", r.seq, prunedSeq)})
					reportedPrePrune = true
				}
				continue
			}
			if r.seq > expected {
				if expected == r.seq-1 {
					add(Break{expected, Deleted, fmt.Sprintf("record %d is missing", expected)})
				} else {
					add(Break{expected, Deleted, fmt.Sprintf("records %d to %d are missing", expected, r.seq-1)})
				}
				trustPrev = false
			}
			expected = r.seq + 1
			ok, err := l.checkRow(ctx, r, prev, trustPrev, add)
			if err != nil {
				return rep, fmt.Errorf("verifying the %s audit log: record %d: %w", l.tenant, r.seq, err)
			}
			for _, cp := range bySeq[r.seq] {
				if !bytes.Equal(cp.Hash, r.hash) {
					add(Break{r.seq, Truncated, fmt.Sprintf("checkpoint (%s) signed %s says the chain's hash at seq %d was %x; it is %x: the log was cut back and rewritten from here",
						cp.source, cp.Time.Format(time.RFC3339), r.seq, short(cp.Hash), short(r.hash))})
				}
			}
			prev = r.hash
			trustPrev = ok != Reordered
		}
		if len(page) < verifyPage {
			break
		}
	}
	rep.Head = max(expected-1, prunedSeq)

	// Checkpoints past the end: the tail was cut.
	for seq, cps := range bySeq {
		if seq > rep.Head {
			cp := cps[0]
			add(Break{rep.Head + 1, Truncated, fmt.Sprintf("checkpoint (%s) signed %s names record %d, but the log ends at %d",
				cp.source, cp.Time.Format(time.RFC3339), seq, rep.Head)})
		}
	}

	slices.SortStableFunc(breaks, func(a, b Break) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	if len(breaks) > maxBreaks {
		breaks = breaks[:maxBreaks]
	}
	rep.Breaks = breaks
	rep.OK = len(breaks) == 0
	if !rep.OK {
		rep.FirstBroken = &breaks[0]
	}
	return rep, nil
}

func short(h []byte) []byte {
	if len(h) > 8 {
		return h[:8]
	}
	return h
}

type storedRow struct {
	seq, ts    int64
	rid, typ   string
	body, hash []byte
}

func readRowsTx(ctx context.Context, tx *store.Tx, after int64, limit int) ([]storedRow, error) {
	rows, err := tx.Query(ctx, `SELECT seq, rid, ts, type, body, hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("reading records: %w", err)
	}
	defer rows.Close()
	var out []storedRow
	for rows.Next() {
		var r storedRow
		if err := rows.Scan(&r.seq, &r.rid, &r.ts, &r.typ, &r.body, &r.hash); err != nil {
			return nil, fmt.Errorf("reading records: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// tampered reports whether err from opening a record means its ciphertext
// (or its key version column) was altered, as opposed to the keyring
// failing (root key unavailable), which Verify returns as an error.
func tampered(err error) bool {
	return errors.Is(err, keys.ErrOpen) || errors.Is(err, keys.ErrMalformed) || errors.Is(err, keys.ErrRetired)
}

// checkRow checks one record, reporting what it finds through add, and
// returns the kind of break found ("" when none).
func (l *Log) checkRow(ctx context.Context, r storedRow, prev []byte, trustPrev bool, add func(Break)) (BreakKind, error) {
	if r.rid != rid(r.seq) {
		what := fmt.Sprintf("record id %q", r.rid)
		if n, err := strconv.ParseInt(r.rid, 10, 64); err == nil {
			what = fmt.Sprintf("record %d", n)
		}
		add(Break{r.seq, Reordered, fmt.Sprintf("row %d holds %s", r.seq, what)})
		return Reordered, nil
	}
	pt, b, err := l.open(ctx, r.rid, r.body)
	if err != nil {
		if !tampered(err) && !isDecodeErr(err) {
			return "", err
		}
		// A record sealed for another position opens under that
		// position's id: the rows were reordered, not altered.
		for d := int64(1); d <= neighbourhood; d++ {
			for _, s := range []int64{r.seq - d, r.seq + d} {
				if s < 1 {
					continue
				}
				if _, ob, err := l.open(ctx, rid(s), r.body); err == nil {
					add(Break{r.seq, Reordered, fmt.Sprintf("row %d holds the sealed record %d", r.seq, ob.Seq)})
					return Reordered, nil
				}
			}
		}
		add(Break{r.seq, Modified, "record does not authenticate: its sealed body was altered"})
		return Modified, nil
	}
	clear(b.Salt)
	switch {
	case b.Seq != r.seq:
		add(Break{r.seq, Reordered, fmt.Sprintf("row %d holds the sealed record %d", r.seq, b.Seq)})
		return Reordered, nil
	case b.Type != r.typ:
		add(Break{r.seq, Modified, fmt.Sprintf("row's type %q differs from the sealed record's", r.typ)})
		return Modified, nil
	case b.Time.UnixMilli() != r.ts:
		add(Break{r.seq, Modified, "row's time differs from the sealed record's"})
		return Modified, nil
	}
	want := chainHash(l.tenant, prev, r.seq, r.ts, r.typ, pt)
	clear(pt)
	if trustPrev && !bytes.Equal(want, r.hash) {
		add(Break{r.seq, Modified, "hash does not match the record and its predecessor: the record was rewritten"})
		return Modified, nil
	}
	return "", nil
}

type decodeError struct{ error }

func isDecodeErr(err error) bool {
	var d decodeError
	return errors.As(err, &d)
}

// Prune removes records older than before (retention). It removes a prefix
// of the log: up to the last record before the first one at or after
// before, since the chain can only be shortened from its start. It signs a
// checkpoint at the new start, records the pruned position so Verify
// continues from there, and appends an audit.pruned record. It returns how
// many records it removed.
func (l *Log) Prune(ctx context.Context, before time.Time) (int, error) {
	if l.opts.Signer == nil || l.opts.Signer.priv == nil {
		return 0, errors.New("pruning the audit log: no signing key to confirm the pruned position")
	}
	var n int
	var cp Checkpoint
	var created bool
	err := l.kr.Update(ctx, func(tx *store.Tx) error {
		prunedSeq, prunedHash, err := lockTx(ctx, tx)
		if err != nil {
			return err
		}
		head, _, err := headTx(ctx, tx, prunedSeq, prunedHash)
		if err != nil {
			return err
		}
		var first sql.NullInt64
		if err := tx.QueryRow(ctx, `SELECT MIN(seq) FROM audit_log WHERE ts >= ?`, before.UnixMilli()).Scan(&first); err != nil {
			return err
		}
		upTo := head
		if first.Valid {
			upTo = first.Int64 - 1
		}
		if upTo <= prunedSeq {
			return nil
		}
		if cp, created, err = l.checkpointTx(ctx, tx, upTo); err != nil {
			return err
		}
		res, err := tx.Exec(ctx, `DELETE FROM audit_log WHERE seq <= ?`, upTo)
		if err != nil {
			return err
		}
		d, _ := res.RowsAffected()
		n = int(d)
		if _, err := tx.Exec(ctx, `DELETE FROM audit_log_checkpoints WHERE seq < ?`, upTo); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE audit_log_state SET pruned_seq = ?, pruned_hash = ? WHERE id = 1`, upTo, cp.Hash); err != nil {
			return err
		}
		_, err = l.appendTx(ctx, tx, []events.Event{{
			Time: l.opts.Now(), Type: "audit.pruned", Actor: "clawhold", Subject: l.tenant,
			Detail: map[string]any{"pruned_seq": upTo, "records": n, "before": before.UTC().Format(time.RFC3339), "hash": hex.EncodeToString(cp.Hash)},
		}})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pruning the %s audit log: %w", l.tenant, err)
	}
	if created {
		if err := l.mirror(cp); err != nil {
			return n, err
		}
	}
	if n > 0 {
		if err := l.compactFile(cp.Seq); err != nil {
			return n, err
		}
	}
	return n, nil
}

// compactFile drops the checkpoint file's lines about records retention
// removed (seq below the pruned position), which Verify no longer checks,
// so that the file does not grow forever. Lines it cannot parse are kept.
func (l *Log) compactFile(prunedSeq int64) error {
	if l.opts.CheckpointFile == "" {
		return nil
	}
	data, err := os.ReadFile(l.opts.CheckpointFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("compacting checkpoint file: %w", err)
	}
	var keep []byte
	dropped := 0
	for line := range bytes.Lines(data) {
		var cp Checkpoint
		if json.Unmarshal(line, &cp) == nil && cp.Tenant == l.tenant && cp.Seq < prunedSeq {
			dropped++
			continue
		}
		keep = append(keep, line...)
	}
	if dropped == 0 {
		return nil
	}
	if err := datadir.WriteFileAtomic(l.opts.CheckpointFile, keep, 0o600); err != nil {
		return fmt.Errorf("compacting checkpoint file: %w", err)
	}
	return nil
}
