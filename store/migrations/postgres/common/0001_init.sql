-- Key material, secrets and events: every database (system and each tenant). Times are unix milliseconds.

CREATE TABLE key_versions (
    keyring        TEXT    NOT NULL,
    version        BIGINT  NOT NULL,
    algorithm      TEXT    NOT NULL,
    wrapped        BYTEA,             -- NULL once destroyed
    root_key_id    TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    deactivated_at BIGINT,            -- no longer used to encrypt
    destroyed_at   BIGINT,
    PRIMARY KEY (keyring, version)
);

CREATE TABLE secrets (
    name        TEXT    PRIMARY KEY,
    version     BIGINT  NOT NULL,
    ciphertext  BYTEA   NOT NULL,
    key_version BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- Re-encryption after key rotation finds secrets by key version.
CREATE INDEX secrets_key_version_idx ON secrets (key_version);

CREATE TABLE events (
    id      BIGSERIAL PRIMARY KEY,
    ts      BIGINT  NOT NULL,
    type    TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);
