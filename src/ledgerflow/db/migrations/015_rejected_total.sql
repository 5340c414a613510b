-- How many messages were ever rejected, kept by statement-level triggers like the provider
-- totals (004): the console shows it on every overview, and counting the table each time
-- costs a scan of every rejected message (40 ms at half a million, measured).
CREATE TABLE ledgerflow.rejected_total (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    total BIGINT NOT NULL
);

CREATE FUNCTION ledgerflow.rejected_total_on_insert() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledgerflow.rejected_total SET total = total + (SELECT count(*) FROM new_rows);
    RETURN NULL;
END $$;

CREATE FUNCTION ledgerflow.rejected_total_on_delete() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledgerflow.rejected_total SET total = total - (SELECT count(*) FROM old_rows);
    RETURN NULL;
END $$;

CREATE FUNCTION ledgerflow.rejected_total_on_truncate() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledgerflow.rejected_total SET total = 0;
    RETURN NULL;
END $$;

-- No row may be written between the count and the triggers taking over.
LOCK TABLE ledgerflow.rejected_messages IN SHARE ROW EXCLUSIVE MODE;

CREATE TRIGGER rejected_total_insert AFTER INSERT ON ledgerflow.rejected_messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerflow.rejected_total_on_insert();
CREATE TRIGGER rejected_total_delete AFTER DELETE ON ledgerflow.rejected_messages
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerflow.rejected_total_on_delete();
CREATE TRIGGER rejected_total_truncate AFTER TRUNCATE ON ledgerflow.rejected_messages
    FOR EACH STATEMENT EXECUTE FUNCTION ledgerflow.rejected_total_on_truncate();

INSERT INTO ledgerflow.rejected_total (total) SELECT count(*) FROM ledgerflow.rejected_messages;
