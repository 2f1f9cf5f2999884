package auditlog

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/clawhold/clawhold/store"
)

// Filter selects records; zero fields match everything.
type Filter struct {
	AfterSeq int64     // only records after this seq (tailing)
	Types    []string  // exact types, or "prefix.*" for a family ("auth.*")
	Since    time.Time // records at or after
	Until    time.Time // records at or before
	User     string    // records whose user is this (needs decrypting: filtered after)
	Limit    int       // at most this many; 0 for all
	// Newest selects the last Limit matches instead of the first; Query
	// still returns them oldest first.
	Newest bool
}

// queryPage is how many rows one read transaction of a scan decrypts.
const queryPage = 512

// Query returns the matching records, decrypted, oldest first.
func (l *Log) Query(ctx context.Context, f Filter) ([]Record, error) {
	var out []Record
	err := l.scan(ctx, f, func(r Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if f.Newest {
		slices.Reverse(out)
	}
	return out, nil
}

// ExportLine is one line of Export's output.
type ExportLine struct {
	Seq     int64          `json:"seq"`
	Time    string         `json:"time"` // RFC 3339, nanoseconds
	Type    string         `json:"type"`
	Actor   string         `json:"actor"`
	Subject string         `json:"subject"`
	User    string         `json:"user,omitempty"`
	Detail  map[string]any `json:"detail,omitempty"`
	Tenant  string         `json:"tenant"`
	Hash    string         `json:"hash"` // the chain's hash after this record, hex
}

// Export writes the matching records to w as JSON lines, oldest first, for
// a SIEM, and returns how many it wrote. f.Newest is ignored.
func (l *Log) Export(ctx context.Context, w io.Writer, f Filter) (int, error) {
	f.Newest = false
	n := 0
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	err := l.scan(ctx, f, func(r Record) error {
		n++
		return enc.Encode(ExportLine{
			Seq: r.Seq, Time: r.Time.UTC().Format(time.RFC3339Nano), Type: r.Type, Actor: r.Actor,
			Subject: r.Subject, User: r.User, Detail: r.Detail, Tenant: l.tenant, Hash: hex.EncodeToString(r.Hash),
		})
	})
	return n, err
}

// scan calls fn for each matching record, in seq order (descending when
// f.Newest), page by page.
func (l *Log) scan(ctx context.Context, f Filter, fn func(Record) error) error {
	var where []string
	var args []any
	if !f.Since.IsZero() {
		where = append(where, "ts >= ?")
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where = append(where, "ts <= ?")
		args = append(args, f.Until.UnixMilli())
	}
	if len(f.Types) > 0 {
		var or []string
		for _, t := range f.Types {
			if prefix, ok := strings.CutSuffix(t, "*"); ok {
				if prefix == "" {
					or = nil
					break // "*" matches every type
				}
				or = append(or, "substr(type, 1, ?) = ?")
				args = append(args, int64(len(prefix)), prefix)
			} else {
				or = append(or, "type = ?")
				args = append(args, t)
			}
		}
		if len(or) > 0 {
			where = append(where, "("+strings.Join(or, " OR ")+")")
		}
	}
	cond := ""
	for _, w := range where {
		cond += " AND " + w
	}
	order, cmp := "ASC", ">"
	cursor := f.AfterSeq
	if f.Newest {
		order, cmp = "DESC", "<"
		cursor = 1<<63 - 1
	}
	q := fmt.Sprintf(`SELECT seq, rid, ts, type, body, hash FROM audit_log WHERE seq %s ? AND seq > ?%s ORDER BY seq %s LIMIT %d`,
		cmp, cond, order, queryPage)
	n := 0
	for {
		var page []storedRow
		err := l.db.View(ctx, func(tx *store.Tx) error {
			rows, err := tx.Query(ctx, q, append([]any{cursor, f.AfterSeq}, args...)...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var r storedRow
				if err := rows.Scan(&r.seq, &r.rid, &r.ts, &r.typ, &r.body, &r.hash); err != nil {
					return err
				}
				page = append(page, r)
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("querying the %s audit log: %w", l.tenant, err)
		}
		for _, r := range page {
			cursor = r.seq
			_, b, err := l.open(ctx, r.rid, r.body)
			if err != nil {
				return fmt.Errorf("querying the %s audit log: record %d: %w (run clawhold logs verify)", l.tenant, r.seq, err)
			}
			if f.User != "" && b.User != f.User {
				continue
			}
			if err := fn(Record{Seq: r.seq, Time: b.Time, Type: b.Type, Actor: b.Actor, Subject: b.Subject, User: b.User, Detail: b.Detail, Hash: r.hash}); err != nil {
				return err
			}
			if n++; f.Limit > 0 && n >= f.Limit {
				return nil
			}
		}
		if len(page) < queryPage {
			return nil
		}
	}
}
