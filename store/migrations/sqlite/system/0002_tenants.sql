-- The tenants that exist (system database only). Times are unix milliseconds.
CREATE TABLE tenants (
    name       TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL
);
