-- The tamper-evident audit log (package monitor/auditlog): every database
-- (system and each tenant) keeps its own. Times are unix milliseconds.

-- One sealed record per event. seq is assigned by the appender (1, 2, 3, ...
-- with no gaps), not by AUTOINCREMENT, so a gap means a deleted record. rid is
-- seq zero-padded to 20 digits: the record id in the encryption context, and
-- a TEXT key that keys rewrap can page through. hash chains each record to
-- the previous one over the plaintext, so rewrap can re-seal without
-- breaking it.
CREATE TABLE audit_log (
    seq         BIGINT  PRIMARY KEY,
    rid         TEXT    NOT NULL UNIQUE,
    ts          BIGINT  NOT NULL,
    type        TEXT    NOT NULL,
    key_version BIGINT  NOT NULL,
    body        BYTEA   NOT NULL,
    hash        BYTEA   NOT NULL
);

CREATE INDEX audit_log_ts_idx ON audit_log (ts);
CREATE INDEX audit_log_type_idx ON audit_log (type);
CREATE INDEX audit_log_key_version_idx ON audit_log (key_version);

-- Signed (Ed25519) statements "the chain's hash at seq was hash".
CREATE TABLE audit_log_checkpoints (
    seq       BIGINT  PRIMARY KEY,
    ts        BIGINT  NOT NULL,
    hash      BYTEA   NOT NULL,
    key_id    TEXT    NOT NULL,
    signature BYTEA   NOT NULL
);

-- One row: how far retention has pruned, so the chain still verifies from
-- there. Appenders lock it (PostgreSQL: FOR UPDATE) to serialise.
CREATE TABLE audit_log_state (
    id          BIGINT PRIMARY KEY CHECK (id = 1),
    pruned_seq  BIGINT  NOT NULL,
    pruned_hash BYTEA   NOT NULL
);

INSERT INTO audit_log_state (id, pruned_seq, pruned_hash)
    VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Checkpoint signing keys (system database only): the Ed25519 seed sealed by
-- the system keyring, and the public key beside it.
CREATE TABLE audit_signing_keys (
    id          TEXT    PRIMARY KEY,
    public      BYTEA   NOT NULL,
    ciphertext  BYTEA   NOT NULL,
    key_version BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL
);
