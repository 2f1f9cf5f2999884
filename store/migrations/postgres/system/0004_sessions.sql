-- Front-door login sessions (system database only). Times are unix milliseconds.
--
-- The session token (the cookie value) is never stored: id is the hex
-- SHA-256 of it, so a dump of this table cannot be replayed as cookies.
-- user_name is a plain name, not a foreign key to users: disabling a
-- user revokes its sessions (RevokeUser) and keeps them for the record.
CREATE TABLE sessions (
    id            TEXT    PRIMARY KEY,
    user_name     TEXT    NOT NULL,
    tenant        TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,  -- absolute expiry
    idle_timeout  BIGINT  NOT NULL,  -- milliseconds
    client_ip     TEXT    NOT NULL,  -- at login
    user_agent    TEXT    NOT NULL,  -- at login
    revoked_at    BIGINT,
    revoke_reason TEXT,
    expired_at    BIGINT,           -- when an expiry was noticed (and its event recorded)
    sealed        BYTEA   NOT NULL,  -- system keyring, Context{Kind: "session", ID: id, User: user_name}
    key_version   BIGINT  NOT NULL
);

-- RevokeUser and `sessions list --user` find sessions by user.
CREATE INDEX sessions_user_idx ON sessions (user_name);
-- Sweep finds long-expired sessions.
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
