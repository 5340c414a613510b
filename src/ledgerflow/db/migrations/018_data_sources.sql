-- Comparisons by message id: the data sources people configure (a source table, the
-- persistency table it feeds, optionally a target table, each with its id column), and
-- the results of every comparison run, so the console shows the last ones and what each
-- found without running them again.

-- The tables and columns are checked against the catalog when a source is saved; the
-- name `ledgerflow` is the built-in source (the queue, historical_transactions, KeyDB),
-- which is not stored here.
CREATE TABLE ledgerflow.data_sources (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
        CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' AND name <> 'ledgerflow'),
    source_schema TEXT NOT NULL,
    source_table TEXT NOT NULL,
    source_id_column TEXT NOT NULL,
    persistency_schema TEXT NOT NULL,
    persistency_table TEXT NOT NULL,
    persistency_id_column TEXT NOT NULL,
    target_schema TEXT,                  -- the target is optional: all three, or none
    target_table TEXT,
    target_id_column TEXT,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((target_schema IS NULL) = (target_table IS NULL)
           AND (target_table IS NULL) = (target_id_column IS NULL))
);

-- One row per run. The source is kept by name, not by reference: a removed source's
-- results stay readable. counts holds, per stage pair, exact figures (ids on each side,
-- missing, foreign, mismatched, how many of them explained, and a count per explanation).
CREATE TABLE ledgerflow.comparisons (
    id BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ NOT NULL,
    counts JSONB NOT NULL,
    unexplained BIGINT NOT NULL,
    explained BIGINT NOT NULL,
    explained_kept BIGINT NOT NULL,     -- explained items stored in comparison_items
    ran_by TEXT NOT NULL
);
-- The console's last results: newest first, for every source or for one.
CREATE INDEX comparisons_started_at_idx ON ledgerflow.comparisons (started_at DESC, id DESC);
CREATE INDEX comparisons_source_idx ON ledgerflow.comparisons (source, started_at DESC);

-- What a run found, one row per id. Every unexplained item is stored; of the explained
-- ones at most a configurable number a run (10,000 by default): a million filtered ids
-- are still counted exactly in comparisons.counts, and each filtered message stays
-- traceable in its batch (batch_id and position point at it).
CREATE TABLE ledgerflow.comparison_items (
    id BIGSERIAL PRIMARY KEY,
    comparison_id BIGINT NOT NULL REFERENCES ledgerflow.comparisons(id) ON DELETE CASCADE,
    -- missing: in a stage, not in the next; foreign: in the next stage, explained by no
    -- row of the one before; mismatch: in both, with a different value.
    kind TEXT NOT NULL CHECK (kind IN ('missing', 'foreign', 'mismatch')),
    stages TEXT NOT NULL CHECK (stages IN ('source-persistency', 'persistency-target')),
    item_id TEXT NOT NULL,               -- the id compared, as text
    explained BOOLEAN NOT NULL,
    explanation TEXT,                    -- why, when explained: "filtered by rule big v3"
    detail TEXT,                         -- what was found, explained or not
    rule_version_id BIGINT REFERENCES ledgerflow.rule_versions(id),
    batch_id BIGINT,                     -- where ledgerflow's lineage holds the message
    position INTEGER,                    -- its position in that batch, from 0
    expected TEXT,                       -- a mismatch: what should be there (exact text)
    actual TEXT                          -- and what is
);
-- A run's items, unexplained first or only, in the order they were found.
CREATE INDEX comparison_items_comparison_idx
    ON ledgerflow.comparison_items (comparison_id, explained, id);
