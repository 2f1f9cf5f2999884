-- The tamper-evident audit log (package monitor/auditlog): every database
-- (system and each tenant) keeps its own. Times are unix milliseconds.

-- One sealed record per event. seq is assigned by the appender (1, 2, 3, ...
-- with no gaps), not by AUTOINCREMENT, so a gap means a deleted record. rid is
-- seq zero-padded to 20 digits: the record id in the encryption context, and
-- a TEXT key that keys rewrap can page through. hash chains each record to
-- the previous one over the plaintext, so rewrap can re-seal without
-- breaking it.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY,
    rid         TEXT    NOT NULL UNIQUE,
    ts          INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    key_version INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    hash        BLOB    NOT NULL
);

CREATE INDEX audit_log_ts_idx ON audit_log (ts);
CREATE INDEX audit_log_type_idx ON audit_log (type);
CREATE INDEX audit_log_key_version_idx ON audit_log (key_version);

-- Signed (Ed25519) statements "the chain's hash at seq was hash".
CREATE TABLE audit_log_checkpoints (
    seq       INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,
    hash      BLOB    NOT NULL,
    key_id    TEXT    NOT NULL,
    signature BLOB    NOT NULL
);

-- One row: how far retention has pruned, so the chain still verifies from
-- there. Appenders lock it (PostgreSQL: FOR UPDATE) to serialise.
CREATE TABLE audit_log_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    pruned_seq  INTEGER NOT NULL,
    pruned_hash BLOB    NOT NULL
);

INSERT INTO audit_log_state (id, pruned_seq, pruned_hash)
    VALUES (1, 0, X'0000000000000000000000000000000000000000000000000000000000000000');

-- Checkpoint signing keys (system database only): the Ed25519 seed sealed by
-- the system keyring, and the public key beside it.
CREATE TABLE audit_signing_keys (
    id          TEXT    PRIMARY KEY,
    public      BLOB    NOT NULL,
    ciphertext  BLOB    NOT NULL,
    key_version INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
