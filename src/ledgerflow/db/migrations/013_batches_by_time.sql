-- The console reads the batches of the last minute (throughput) and, later, of any time
-- window (lineage): an index on commit time keeps that quick at any history.
CREATE INDEX IF NOT EXISTS batches_committed_at_idx ON ledgerflow.batches (committed_at);
