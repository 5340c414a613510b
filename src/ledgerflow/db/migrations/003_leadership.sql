-- Single active instance: the holder of a PostgreSQL advisory lock is the leader, and each
-- new leader takes the next term. Every write of the leader checks its term in the same
-- transaction (FOR SHARE), so a deposed leader can neither commit a batch nor publish.
CREATE TABLE ledgerflow_leadership (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    term BIGINT NOT NULL DEFAULT 0,
    instance TEXT,
    acquired_at TIMESTAMPTZ
);
INSERT INTO ledgerflow_leadership DEFAULT VALUES;

-- One row per balance publication: which boundary, by whom, how late.
CREATE TABLE ledgerflow_publishes (
    boundary TIMESTAMPTZ NOT NULL,
    term BIGINT NOT NULL,
    instance TEXT NOT NULL,
    provider_count INTEGER NOT NULL,
    published_at TIMESTAMPTZ NOT NULL,
    lag_seconds DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (boundary, term)
);
