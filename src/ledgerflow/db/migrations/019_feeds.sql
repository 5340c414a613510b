-- Feeds, part one: the load log and the feeds detected from it.
--
-- The load log is a view: ledgerflow's own loads are already recorded (each transaction
-- batch in ledgerflow.batches, each price batch in ledgerflow.price_batches where the
-- rates domain is used), so nothing more is written on the ingest path; loads reported by
-- other loaders (POST /loads, `ledgerflow rates load`) are rows of ledgerflow.loads.

CREATE TABLE ledgerflow.loads (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL CHECK (length(source) BETWEEN 1 AND 200),   -- loader or upstream
    table_name TEXT NOT NULL CHECK (length(table_name) BETWEEN 1 AND 200),  -- schema.table
    row_count BIGINT NOT NULL CHECK (row_count >= 0),
    status TEXT NOT NULL CHECK (status IN ('succeeded', 'failed')),
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL CHECK (finished_at >= started_at),
    reported_by TEXT NOT NULL,
    reported_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX loads_source_table_idx ON ledgerflow.loads (source, table_name, finished_at);

-- A feed is a (source, table) pair that loaded successfully once; its onboarding state
-- moves on from 'detected' (the workflow comes with the console's feed pages).
CREATE TABLE ledgerflow.feeds (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    table_name TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'detected'
        CHECK (state IN ('detected', 'described', 'in_review', 'onboarded', 'rejected',
                         'on_hold')),
    first_load_at TIMESTAMPTZ NOT NULL,
    detected_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (source, table_name)
);

-- Every load, ledgerflow's own and the reported ones, one row each.
CREATE VIEW ledgerflow.load_log AS
SELECT 'queue:' || b.queue AS source,
       'public.historical_transactions' AS table_name,
       b.stored_count::bigint AS row_count,
       'succeeded' AS status,
       b.committed_at AS started_at,
       b.committed_at AS finished_at,
       'batch ' || b.id AS reference
FROM ledgerflow.batches AS b
UNION ALL
SELECT l.source, l.table_name, l.row_count, l.status, l.started_at, l.finished_at,
       'load ' || l.id
FROM ledgerflow.loads AS l;
