-- Key material, secrets and events: every database (system and each tenant). Times are unix milliseconds.

CREATE TABLE key_versions (
    keyring        TEXT    NOT NULL,
    version        INTEGER NOT NULL,
    algorithm      TEXT    NOT NULL,
    wrapped        BLOB,              -- NULL once destroyed
    root_key_id    TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    deactivated_at INTEGER,           -- no longer used to encrypt
    destroyed_at   INTEGER,
    PRIMARY KEY (keyring, version)
);

CREATE TABLE secrets (
    name        TEXT    PRIMARY KEY,
    version     INTEGER NOT NULL,
    ciphertext  BLOB    NOT NULL,
    key_version INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Re-encryption after key rotation finds secrets by key version.
CREATE INDEX secrets_key_version_idx ON secrets (key_version);

CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      INTEGER NOT NULL,
    type    TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);
