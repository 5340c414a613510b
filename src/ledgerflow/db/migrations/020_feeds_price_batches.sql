-- domain: rates
-- Where the rates domain is used, its price batches are loads too: one row each in the
-- load log, as `prices:<source>` into public.prices.
CREATE OR REPLACE VIEW ledgerflow.load_log AS
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
FROM ledgerflow.loads AS l
UNION ALL
SELECT 'prices:' || p.source, 'public.prices', p.row_count::bigint, 'succeeded',
       p.committed_at, p.committed_at, 'price batch ' || p.batch_id
FROM ledgerflow.price_batches AS p;
