package auditlog

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/clawhold/clawhold/keys"
	"github.com/clawhold/clawhold/store"
)

// signingKeyKind is the encryption-context kind of sealed signing seeds.
const signingKeyKind = "audit-signing-key"

// checkpointDomain separates checkpoint signatures from every other use of
// the key.
const checkpointDomain = "clawhold/audit-checkpoint/v1"

// Checkpoint is a signed statement that tenant's chain had hash after seq.
type Checkpoint struct {
	Tenant    string    `json:"tenant"`
	Seq       int64     `json:"seq"`
	Time      time.Time `json:"time"`
	Hash      []byte    `json:"hash"` // JSON: base64
	KeyID     string    `json:"key_id"`
	Signature []byte    `json:"signature"`
}

func (c Checkpoint) message() []byte {
	var m []byte
	m = appendLP(m, []byte(checkpointDomain))
	m = appendLP(m, []byte(c.Tenant))
	m = binary.BigEndian.AppendUint64(m, uint64(c.Seq))
	m = binary.BigEndian.AppendUint64(m, uint64(c.Time.UnixMilli()))
	return appendLP(m, c.Hash)
}

// Signer holds the checkpoint signing key and every public key Verify
// trusts. A key is trusted only if its seed, sealed by the system keyring,
// opens and derives it: the anchor is the root key, so someone who can write
// the database but not unwrap keys cannot substitute a key of their own.
type Signer struct {
	id      string
	priv    ed25519.PrivateKey
	trusted map[string]ed25519.PublicKey
}

// KeyID returns the id of an Ed25519 public key: hex of the first 8 bytes
// of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// LoadSigner loads the signing keys from the system database, creating one
// on first use. Rows that fail to open or whose public key does not match
// their seed are not trusted (and logged by the caller via Untrusted).
func LoadSigner(ctx context.Context, sysDB *store.DB, sysKR *keys.Keyring) (*Signer, error) {
	s, err := loadSigner(ctx, sysDB, sysKR)
	if err != nil {
		return nil, err
	}
	if s.priv != nil {
		return s, nil
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("generating audit signing key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	id := KeyID(pub)
	err = sysKR.Update(ctx, func(tx *store.Tx) error {
		ct, v, err := sysKR.SealTx(ctx, tx, keys.Context{Tenant: sysKR.Tenant(), Kind: signingKeyKind, ID: id}, seed)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO audit_signing_keys (id, public, ciphertext, key_version, created_at) VALUES (?, ?, ?, ?, ?)`,
			id, []byte(pub), ct, int64(v), time.Now().UnixMilli())
		return err
	})
	clear(seed)
	if err != nil {
		return nil, fmt.Errorf("storing audit signing key: %w", err)
	}
	// Reload rather than use ours: a process that raced us may have made
	// one too, and both are then trusted; the newest signs.
	s, err = loadSigner(ctx, sysDB, sysKR)
	if err != nil {
		return nil, err
	}
	if s.priv == nil {
		return nil, errors.New("audit signing key vanished after creation")
	}
	return s, nil
}

func loadSigner(ctx context.Context, db *store.DB, kr *keys.Keyring) (*Signer, error) {
	type row struct {
		id      string
		pub, ct []byte
		created int64
	}
	var rowsOut []row
	err := db.View(ctx, func(tx *store.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, public, ciphertext, created_at FROM audit_signing_keys ORDER BY created_at, id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.pub, &r.ct, &r.created); err != nil {
				return err
			}
			rowsOut = append(rowsOut, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("loading audit signing keys: %w", err)
	}
	s := &Signer{trusted: make(map[string]ed25519.PublicKey)}
	for _, r := range rowsOut {
		seed, err := kr.Open(ctx, keys.Context{Tenant: kr.Tenant(), Kind: signingKeyKind, ID: r.id}, r.ct)
		if err != nil {
			if tampered(err) {
				continue // not trusted: see Verify's bad-signature
			}
			return nil, fmt.Errorf("opening audit signing key %s: %w", r.id, err)
		}
		if len(seed) != ed25519.SeedSize {
			clear(seed)
			continue
		}
		priv := ed25519.NewKeyFromSeed(seed)
		clear(seed)
		pub := priv.Public().(ed25519.PublicKey)
		if KeyID(pub) != r.id || !pub.Equal(ed25519.PublicKey(r.pub)) {
			continue
		}
		s.trusted[r.id] = pub
		s.id, s.priv = r.id, priv // newest last
	}
	return s, nil
}

// KeyID returns the id of the key that signs.
func (s *Signer) KeyID() string { return s.id }

// Public returns the signing key's public half.
func (s *Signer) Public() ed25519.PublicKey { return s.priv.Public().(ed25519.PublicKey) }

// Trusted returns the public key with id, if it is trusted.
func (s *Signer) Trusted(id string) (ed25519.PublicKey, bool) {
	if s == nil {
		return nil, false
	}
	k, ok := s.trusted[id]
	return k, ok
}

func (s *Signer) sign(c *Checkpoint) {
	c.KeyID = s.id
	c.Signature = ed25519.Sign(s.priv, c.message())
}

// verifySig reports whether c carries a valid signature by a trusted key.
func (s *Signer) verifySig(c Checkpoint) bool {
	pub, ok := s.Trusted(c.KeyID)
	return ok && ed25519.Verify(pub, c.message(), c.Signature)
}

// CheckpointPath is where the checkpoint file of tenant's log lives.
func CheckpointPath(dataDir, tenant string) string {
	return filepath.Join(dataDir, "audit", tenant+".checkpoints")
}

// Checkpoint signs the chain's head and stores the checkpoint in the
// database and, if configured, the checkpoint file. If the head has not
// moved since the last checkpoint (or the log is empty) it returns the last
// one and stores nothing.
func (l *Log) Checkpoint(ctx context.Context) (Checkpoint, error) {
	if l.opts.Signer == nil || l.opts.Signer.priv == nil {
		return Checkpoint{}, errors.New("audit log checkpoint: no signing key")
	}
	var cp Checkpoint
	created := false
	err := l.db.Update(ctx, func(tx *store.Tx) error {
		var err error
		cp, created, err = l.checkpointTx(ctx, tx, 0)
		return err
	})
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpointing the %s audit log: %w", l.tenant, err)
	}
	if created {
		if err := l.mirror(cp); err != nil {
			return cp, err
		}
	}
	return cp, nil
}

// checkpointTx stores a checkpoint at seq (0: the head) unless the newest
// stored checkpoint already names it.
func (l *Log) checkpointTx(ctx context.Context, tx *store.Tx, at int64) (Checkpoint, bool, error) {
	prunedSeq, prunedHash, err := lockTx(ctx, tx)
	if err != nil {
		return Checkpoint{}, false, err
	}
	seq, hash := int64(0), []byte(nil)
	if at == 0 {
		if seq, hash, err = headTx(ctx, tx, prunedSeq, prunedHash); err != nil {
			return Checkpoint{}, false, err
		}
	} else {
		seq = at
		if err := tx.QueryRow(ctx, `SELECT hash FROM audit_log WHERE seq = ?`, at).Scan(&hash); err != nil {
			return Checkpoint{}, false, fmt.Errorf("reading record %d: %w", at, err)
		}
	}
	if seq == 0 {
		return Checkpoint{}, false, nil
	}
	last := Checkpoint{Tenant: l.tenant}
	var ts int64
	q := `SELECT seq, ts, hash, key_id, signature FROM audit_log_checkpoints WHERE seq = ?`
	err = tx.QueryRow(ctx, q, seq).Scan(&last.Seq, &ts, &last.Hash, &last.KeyID, &last.Signature)
	if err == nil && last.Seq == seq && string(last.Hash) == string(hash) {
		last.Time = time.UnixMilli(ts).UTC()
		return last, false, nil
	}
	cp := Checkpoint{Tenant: l.tenant, Seq: seq, Time: time.UnixMilli(l.opts.Now().UnixMilli()).UTC(), Hash: hash}
	l.opts.Signer.sign(&cp)
	// Replace a checkpoint at the same seq: its hash disagrees with the
	// chain (so Verify reports the chain anyway, from the file's copy).
	if _, err := tx.Exec(ctx, `DELETE FROM audit_log_checkpoints WHERE seq = ?`, seq); err != nil {
		return Checkpoint{}, false, err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO audit_log_checkpoints (seq, ts, hash, key_id, signature) VALUES (?, ?, ?, ?, ?)`,
		cp.Seq, cp.Time.UnixMilli(), cp.Hash, cp.KeyID, cp.Signature); err != nil {
		return Checkpoint{}, false, fmt.Errorf("storing checkpoint: %w", err)
	}
	return cp, true, nil
}

// mirror appends cp to the checkpoint file.
func (l *Log) mirror(cp Checkpoint) error {
	if l.opts.CheckpointFile == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(l.opts.CheckpointFile), 0o700); err != nil {
		return fmt.Errorf("writing checkpoint file: %w", err)
	}
	line, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(l.opts.CheckpointFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("writing checkpoint file: %w", err)
	}
	_, err = f.Write(append(line, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing checkpoint file %s: %w", l.opts.CheckpointFile, err)
	}
	return nil
}

// ReadCheckpointFile reads a checkpoint file (JSON lines). A missing file
// holds no checkpoints. A line that does not parse is an error: the file is
// evidence and must not be silently skipped.
func ReadCheckpointFile(path string) ([]Checkpoint, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoints: %w", err)
	}
	defer f.Close()
	var out []Checkpoint
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var cp Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &cp); err != nil {
			return nil, fmt.Errorf("reading checkpoints %s:%d: %w", path, n, err)
		}
		out = append(out, cp)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading checkpoints %s: %w", path, err)
	}
	return out, nil
}
