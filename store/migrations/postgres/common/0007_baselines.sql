-- Learned baselines (monitor/anomaly): per-user login profiles in the
-- system database, hourly count series in every database. state is JSON
-- owned by the detector; pinned is the operator's threshold (events per
-- hour), never written by the detector. Times are unix milliseconds.

CREATE TABLE baselines (
    metric     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    pinned     DOUBLE PRECISION,
    first_seen BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    PRIMARY KEY (metric, key)
);
