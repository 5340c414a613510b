-- Running totals per provider, kept by statement-level triggers on historical_transactions,
-- so that publishing balances costs the same with ten rows or ten million, and stays
-- correct whoever writes the rows (ledgerflow, the original producer, a person with psql).
CREATE TABLE ledgerflow_provider_totals (
    provider_id INTEGER PRIMARY KEY,
    total NUMERIC NOT NULL,
    row_count BIGINT NOT NULL
);

CREATE FUNCTION ledgerflow_totals_on_insert() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledgerflow_provider_totals AS t (provider_id, total, row_count)
    SELECT provider_id, sum(transaction_value), count(*)
    FROM new_rows WHERE provider_id IS NOT NULL
    GROUP BY provider_id ORDER BY provider_id
    ON CONFLICT (provider_id) DO UPDATE
        SET total = t.total + excluded.total, row_count = t.row_count + excluded.row_count;
    RETURN NULL;
END $$;

CREATE FUNCTION ledgerflow_totals_on_delete() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledgerflow_provider_totals AS t
    SET total = t.total - d.total, row_count = t.row_count - d.row_count
    FROM (
        SELECT provider_id, sum(transaction_value) AS total, count(*) AS row_count
        FROM old_rows WHERE provider_id IS NOT NULL GROUP BY provider_id
    ) AS d
    WHERE t.provider_id = d.provider_id;
    RETURN NULL;
END $$;

CREATE FUNCTION ledgerflow_totals_on_update() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledgerflow_provider_totals AS t (provider_id, total, row_count)
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

CREATE FUNCTION ledgerflow_totals_on_truncate() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ledgerflow_provider_totals;
    RETURN NULL;
END $$;

-- No row may be written between the backfill and the triggers taking over.
LOCK TABLE historical_transactions IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER ledgerflow_totals_insert AFTER INSERT ON historical_transactions
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerflow_totals_on_insert();
CREATE TRIGGER ledgerflow_totals_delete AFTER DELETE ON historical_transactions
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerflow_totals_on_delete();
CREATE TRIGGER ledgerflow_totals_update AFTER UPDATE ON historical_transactions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerflow_totals_on_update();
CREATE TRIGGER ledgerflow_totals_truncate AFTER TRUNCATE ON historical_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerflow_totals_on_truncate();

INSERT INTO ledgerflow_provider_totals (provider_id, total, row_count)
SELECT provider_id, sum(transaction_value), count(*)
FROM historical_transactions WHERE provider_id IS NOT NULL
GROUP BY provider_id;
