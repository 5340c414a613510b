-- Sharded ingestion (LEDGERFLOW_SHARDS, docs/scaling.md): each shard's queue has one
-- active consumer at a time, chosen by RabbitMQ; the worker that becomes it takes the
-- shard's next term here, and every batch it writes locks that term until its commit, so
-- a consumer the broker replaced cannot commit after its successor started.
CREATE TABLE ledgerflow.shard_terms (
    queue TEXT PRIMARY KEY,          -- the shard's queue, incoming_transactions.3
    term BIGINT NOT NULL,
    instance TEXT NOT NULL,          -- the worker holding it
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- How many shards each queue has: claimed by the first sharded worker (or producer) and
-- changed only by `ledgerflow shards resize`, so that workers started together agree on
-- it, and one configured otherwise refuses to start.
CREATE TABLE ledgerflow.shard_counts (
    queue TEXT PRIMARY KEY,          -- the original queue, incoming_transactions
    shards INTEGER NOT NULL CHECK (shards > 0),
    set_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
