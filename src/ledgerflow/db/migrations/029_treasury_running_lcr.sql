-- domain: treasury
-- The LCR kept current by the active worker (treasury/liquidity.py, RunningLcr): after a
-- batch it reads again only the instruments, currencies and trades the batch touched, and
-- it rebuilds everything when the reference data change.

-- The reference data's version: every statement that changes ledgerflow.instruments moves
-- it on, in that statement's transaction, so a reader sees the new version exactly when it sees the
-- new rows.
CREATE TABLE ledgerflow.treasury_versions (
    name TEXT PRIMARY KEY,
    version BIGINT NOT NULL DEFAULT 0
);
INSERT INTO ledgerflow.treasury_versions (name) VALUES ('instruments');

CREATE FUNCTION ledgerflow.treasury_version_moves() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ledgerflow.treasury_versions SET version = version + 1 WHERE name = TG_TABLE_NAME;
    RETURN NULL;
END;
$$;

CREATE TRIGGER instruments_version
AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ledgerflow.instruments
FOR EACH STATEMENT EXECUTE FUNCTION ledgerflow.treasury_version_moves();

-- The read of some instruments' positions in every book.
CREATE INDEX positions_instrument_idx ON ledgerflow.positions (instrument);
