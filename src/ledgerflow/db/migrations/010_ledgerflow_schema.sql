-- ledgerflow's own tables move into their own schema, named without the ledgerflow_ prefix;
-- the original fixture's tables (initial_data, historical_transactions) stay in public.
-- Moving and renaming touch only the catalog: no row is copied, none can be lost, and
-- the migration takes milliseconds whatever the tables hold. Indexes, constraints and
-- serial sequences move with their tables; the view keeps pointing at its table.
CREATE SCHEMA IF NOT EXISTS ledgerflow;

ALTER TABLE ledgerflow_batches SET SCHEMA ledgerflow;
ALTER TABLE ledgerflow.ledgerflow_batches RENAME TO batches;
ALTER SEQUENCE ledgerflow.ledgerflow_batches_id_seq RENAME TO batches_id_seq;

ALTER TABLE rejected_messages SET SCHEMA ledgerflow;

ALTER VIEW ledgerflow_messages SET SCHEMA ledgerflow;
ALTER VIEW ledgerflow.ledgerflow_messages RENAME TO messages;

ALTER TABLE ledgerflow_message_ids SET SCHEMA ledgerflow;
ALTER TABLE ledgerflow.ledgerflow_message_ids RENAME TO message_ids;

ALTER TABLE ledgerflow_leadership SET SCHEMA ledgerflow;
ALTER TABLE ledgerflow.ledgerflow_leadership RENAME TO leadership;

ALTER TABLE ledgerflow_publishes SET SCHEMA ledgerflow;
ALTER TABLE ledgerflow.ledgerflow_publishes RENAME TO publishes;

ALTER TABLE ledgerflow_workers SET SCHEMA ledgerflow;
ALTER TABLE ledgerflow.ledgerflow_workers RENAME TO workers;

ALTER TABLE ledgerflow_provider_totals SET SCHEMA ledgerflow;
ALTER TABLE ledgerflow.ledgerflow_provider_totals RENAME TO provider_totals;

-- The triggers on historical_transactions keep calling the same functions (they are bound
-- by identity, not by name); the functions' bodies now name the moved table.
ALTER FUNCTION ledgerflow_totals_on_insert() SET SCHEMA ledgerflow;
ALTER FUNCTION ledgerflow.ledgerflow_totals_on_insert() RENAME TO totals_on_insert;
ALTER FUNCTION ledgerflow_totals_on_delete() SET SCHEMA ledgerflow;
ALTER FUNCTION ledgerflow.ledgerflow_totals_on_delete() RENAME TO totals_on_delete;
ALTER FUNCTION ledgerflow_totals_on_update() SET SCHEMA ledgerflow;
ALTER FUNCTION ledgerflow.ledgerflow_totals_on_update() RENAME TO totals_on_update;
ALTER FUNCTION ledgerflow_totals_on_truncate() SET SCHEMA ledgerflow;
ALTER FUNCTION ledgerflow.ledgerflow_totals_on_truncate() RENAME TO totals_on_truncate;

CREATE OR REPLACE FUNCTION ledgerflow.totals_on_insert() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledgerflow.provider_totals AS t (provider_id, total, row_count)
    SELECT provider_id, sum(transaction_value), count(*)
    FROM new_rows WHERE provider_id IS NOT NULL
    GROUP BY provider_id ORDER BY provider_id
    ON CONFLICT (provider_id) DO UPDATE
        SET total = t.total + excluded.total, row_count = t.row_count + excluded.row_count;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION ledgerflow.totals_on_delete() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledgerflow.provider_totals AS t
    SET total = t.total - d.total, row_count = t.row_count - d.row_count
    FROM (
        SELECT provider_id, sum(transaction_value) AS total, count(*) AS row_count
        FROM old_rows WHERE provider_id IS NOT NULL GROUP BY provider_id
    ) AS d
    WHERE t.provider_id = d.provider_id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION ledgerflow.totals_on_update() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledgerflow.provider_totals AS t (provider_id, total, row_count)
    SELECT provider_id, sum(amount), sum(n)
    FROM (
        SELECT provider_id, transaction_value AS amount, 1 AS n FROM new_rows
        UNION ALL
        SELECT provider_id, -transaction_value, -1 FROM old_rows
    ) AS changes
    WHERE provider_id IS NOT NULL
    GROUP BY provider_id ORDER BY provider_id
    ON CONFLICT (provider_id) DO UPDATE
        SET total = t.total + excluded.total, row_count = t.row_count + excluded.row_count;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION ledgerflow.totals_on_truncate() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ledgerflow.provider_totals;
    RETURN NULL;
END $$;
