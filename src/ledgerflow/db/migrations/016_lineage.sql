-- Lineage: filtering rules with their versions, the filtered outcome, and what a trace of
-- one message needs (its body hash indexed, the publication that first included it).

-- A rule is a name; what it does is its newest version. Every change (created, changed,
-- disabled, enabled) is a new version, kept for ever: a filtered message points at the
-- version that filtered it.
CREATE TABLE ledgerflow.rules (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ledgerflow.rule_versions (
    id BIGSERIAL PRIMARY KEY,            -- what batches.filter_rules holds
    rule_id BIGINT NOT NULL REFERENCES ledgerflow.rules(id),
    version INTEGER NOT NULL CHECK (version >= 1),
    condition TEXT NOT NULL,             -- CEL, checked when saved
    technical TEXT NOT NULL,             -- the technical justification
    functional TEXT NOT NULL,            -- the functional justification
    owner TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    change TEXT NOT NULL CHECK (change IN ('created', 'changed', 'disabled', 'enabled')),
    changed_by TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (rule_id, version)
);

-- The filtered outcome: letter F in outcomes, the rule version in filter_rules at the same
-- position (NULL elsewhere; the column is NULL when nothing in the batch was filtered).
ALTER TABLE ledgerflow.batches
    ADD COLUMN filtered_count INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN filter_rules BIGINT[],
    -- The first 8 bytes of each body's SHA-256, as signed integers, in delivery order:
    -- what a trace by hash looks up through the GIN index below.
    ADD COLUMN hash_keys BIGINT[],
    -- The transaction that committed the batch: a publication's snapshot tells whether
    -- it saw the batch. NULL for batches written before this migration (a default here
    -- would give them all this migration's transaction).
    ADD COLUMN xid XID8;
ALTER TABLE ledgerflow.batches ALTER COLUMN xid SET DEFAULT pg_current_xact_id();

CREATE INDEX batches_hash_keys_idx ON ledgerflow.batches USING gin (hash_keys);

-- How many messages each rule version filtered in each batch: stage counts per rule over
-- any time window read these few rows, never the per-message arrays.
CREATE TABLE ledgerflow.batch_filters (
    batch_id BIGINT NOT NULL REFERENCES ledgerflow.batches(id),
    rule_version_id BIGINT NOT NULL REFERENCES ledgerflow.rule_versions(id),
    filtered INTEGER NOT NULL,
    PRIMARY KEY (batch_id, rule_version_id)
);
CREATE INDEX batch_filters_rule_version_idx ON ledgerflow.batch_filters (rule_version_id);

-- Each filtered message as it was parsed: the log of filtered messages people read and
-- export, with the rule version that filtered it (a minority of messages: one row each).
CREATE TABLE ledgerflow.filtered_messages (
    batch_id BIGINT NOT NULL REFERENCES ledgerflow.batches(id),
    position INTEGER NOT NULL,           -- in the batch, from 0, as in ledgerflow.messages
    rule_version_id BIGINT NOT NULL REFERENCES ledgerflow.rule_versions(id),
    provider_id INTEGER NOT NULL,
    value NUMERIC NOT NULL,
    PRIMARY KEY (batch_id, position)
);
CREATE INDEX filtered_messages_rule_version_idx
    ON ledgerflow.filtered_messages (rule_version_id, batch_id);

-- A publication keeps the snapshot it read and the values it wrote to KeyDB, so a trace
-- can say which boundary first included a message and what KeyDB held then.
ALTER TABLE ledgerflow.publishes
    ADD COLUMN snapshot PG_SNAPSHOT,
    ADD COLUMN balances JSONB;
CREATE INDEX publishes_published_at_idx ON ledgerflow.publishes (published_at);

CREATE OR REPLACE VIEW ledgerflow.messages AS
SELECT b.id AS batch_id,
       p.position - 1 AS position,
       b.queue,
       b.message_ids[p.position] AS message_id,
       substring(b.body_hashes FROM (p.position - 1) * 32 + 1 FOR 32) AS body_sha256,
       CASE substr(b.outcomes, p.position, 1)
           WHEN 'S' THEN 'stored' WHEN 'R' THEN 'rejected' WHEN 'D' THEN 'duplicate'
           WHEN 'F' THEN 'filtered' ELSE 'redelivered' END AS outcome,
       b.transaction_ids[p.position] AS transaction_id,
       b.rejected_ids[p.position] AS rejected_id,
       b.committed_at,
       b.filter_rules[p.position] AS rule_version_id
FROM ledgerflow.batches AS b
CROSS JOIN LATERAL generate_series(1, b.message_count) AS p(position);
