-- Front door accounts (system database only). Times are unix milliseconds.

CREATE TABLE users (
    name          TEXT    PRIMARY KEY,          -- ^[a-z0-9._@-]{1,64}$
    tenant        TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    disabled      BIGINT  NOT NULL DEFAULT 0,   -- 0 or 1
    password_hash TEXT    NOT NULL,             -- argon2id PHC string
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE INDEX users_tenant_idx ON users (tenant);

-- One TOTP secret per user, sealed by the system keyring (kind "totp", id =
-- user name). A row exists only while a secret does, so key rewrap and
-- status see every ciphertext.
CREATE TABLE user_totp (
    user_name    TEXT    PRIMARY KEY REFERENCES users (name) ON DELETE CASCADE,
    secret       BYTEA   NOT NULL,
    key_version  BIGINT  NOT NULL,
    confirmed_at BIGINT,                        -- NULL while enrolment is pending
    last_step    BIGINT  NOT NULL DEFAULT 0,    -- newest accepted time step (replay protection)
    created_at   BIGINT  NOT NULL
);

CREATE INDEX user_totp_key_version_idx ON user_totp (key_version);

-- One-time recovery codes, stored only as SHA-256 hashes.
CREATE TABLE user_recovery_codes (
    user_name  TEXT    NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    code_hash  BYTEA   NOT NULL,
    created_at BIGINT  NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_name, code_hash)
);

-- Single-use tokens that let the first admin be created; SHA-256 hashes only.
CREATE TABLE setup_tokens (
    token_hash BYTEA   PRIMARY KEY,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    used_at    BIGINT
);
