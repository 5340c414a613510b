-- Every running worker, active or standby, for `ledgerflow status`: each one writes its
-- heartbeat here every few seconds and removes its row when it stops cleanly.
CREATE TABLE ledgerflow_workers (
    instance TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    http_address TEXT,
    queue TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);

-- `ledgerflow status` reads each instance's latest publication.
CREATE INDEX ledgerflow_publishes_instance_idx ON ledgerflow_publishes (instance, published_at);
