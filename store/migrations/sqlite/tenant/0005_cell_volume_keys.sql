-- The key of each encrypted cell volume (package cell): random, sealed by the
-- tenant's keyring, so rotation and rewrap re-seal it without rewriting the
-- volume's contents.
CREATE TABLE cell_volume_keys (
    volume      TEXT    PRIMARY KEY,
    ciphertext  BLOB    NOT NULL,
    key_version INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE INDEX cell_volume_keys_key_version_idx ON cell_volume_keys (key_version);
