-- domain: rates
-- Where the rates domain is used, its price batches are loads too (see 020): their
-- sources are pairs, `prices:<source>` into public.prices. ledgerflow.price_batches had
-- no index but its primary key (batch_id); (source, committed_at) serves the skip scan
-- below and a new source's first batch.
CREATE INDEX price_batches_source_idx ON ledgerflow.price_batches (source, committed_at);

CREATE OR REPLACE VIEW ledgerflow.load_pairs AS
WITH RECURSIVE queues AS (
    (SELECT b.queue FROM ledgerflow.batches AS b ORDER BY b.queue LIMIT 1)
    UNION ALL
    SELECT n.queue
    FROM queues AS q
    CROSS JOIN LATERAL (
        SELECT b.queue FROM ledgerflow.batches AS b
        WHERE b.queue > q.queue
        ORDER BY b.queue LIMIT 1
    ) AS n
),
reported AS (
    (SELECT l.source, l.table_name FROM ledgerflow.loads AS l
     WHERE l.status = 'succeeded'
     ORDER BY l.source, l.table_name LIMIT 1)
    UNION ALL
    SELECT n.source, n.table_name
    FROM reported AS r
    CROSS JOIN LATERAL (
        SELECT l.source, l.table_name FROM ledgerflow.loads AS l
        WHERE (l.source, l.table_name) > (r.source, r.table_name) AND l.status = 'succeeded'
        ORDER BY l.source, l.table_name LIMIT 1
    ) AS n
),
priced AS (
    (SELECT p.source FROM ledgerflow.price_batches AS p ORDER BY p.source LIMIT 1)
    UNION ALL
    SELECT n.source
    FROM priced AS s
    CROSS JOIN LATERAL (
        SELECT p.source FROM ledgerflow.price_batches AS p
        WHERE p.source > s.source
        ORDER BY p.source LIMIT 1
    ) AS n
)
SELECT 'queue:' || q.queue AS source, 'public.historical_transactions' AS table_name
FROM queues AS q
UNION  -- a loader may report a pair of ledgerflow's own too
SELECT r.source, r.table_name FROM reported AS r
UNION
SELECT 'prices:' || s.source, 'public.prices' FROM priced AS s;

CREATE OR REPLACE FUNCTION ledgerflow.first_load_at(source TEXT, table_name TEXT)
RETURNS TIMESTAMPTZ
LANGUAGE sql STABLE AS $$
SELECT least(
    (SELECT min(b.committed_at) FROM ledgerflow.batches AS b
     WHERE first_load_at.table_name = 'public.historical_transactions'
       AND starts_with(first_load_at.source, 'queue:')
       AND b.queue = substr(first_load_at.source, 7)),
    (SELECT min(l.finished_at) FROM ledgerflow.loads AS l
     WHERE l.source = first_load_at.source AND l.table_name = first_load_at.table_name
       AND l.status = 'succeeded'),
    (SELECT min(p.committed_at) FROM ledgerflow.price_batches AS p
     WHERE first_load_at.table_name = 'public.prices'
       AND starts_with(first_load_at.source, 'prices:')
       AND p.source = substr(first_load_at.source, 8)))
$$;
