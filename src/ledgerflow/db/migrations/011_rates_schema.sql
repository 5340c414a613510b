-- domain: rates
-- The record of committed price batches joins ledgerflow's other tables in their schema
-- (see 010); regions, ports and prices stay where the original dump puts them.
ALTER TABLE ledgerflow_price_batches SET SCHEMA ledgerflow;
ALTER TABLE ledgerflow.ledgerflow_price_batches RENAME TO price_batches;
