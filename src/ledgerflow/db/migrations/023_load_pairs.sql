-- Detection without reading every load: the distinct (source, table) pairs that loaded
-- successfully, found in time proportional to the number of pairs, not of loads.
--
-- PostgreSQL does not skip from one distinct value of an index to the next by itself
-- (a DISTINCT reads every entry): a recursive query does it, one index descent per
-- distinct value ("the next queue after this one"). ledgerflow.loads
-- is walked the same way over loads_source_table_idx: it grows with every reported load
-- and is never pruned, so a DISTINCT over it would grow with history too. (At 10,000
-- pairs, DISTINCT wins while each has a few loads, 5 ms against 35 ms with two, and
-- loses once they have a hundred, 183 ms against 78 ms.)
-- The view ledgerflow.load_log stays as it is, one row per load.
CREATE VIEW ledgerflow.load_pairs AS
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
)
SELECT 'queue:' || q.queue AS source, 'public.historical_transactions' AS table_name
FROM queues AS q
UNION  -- a loader may report a pair of ledgerflow's own too
SELECT r.source, r.table_name FROM reported AS r;

-- When a pair first loaded successfully: asked only of the pairs that have no feed yet,
-- each part found by an index. A queue's first batch by id need not be its earliest
-- (batches may be written with their own committed_at), so the minimum is taken, and
-- (queue, committed_at) makes it one descent: with only (queue, id) and committed_at,
-- the planner walks committed_at from the oldest batch for a queue it cannot estimate
-- (108 ms at 1,000,000 batches for a new queue).
CREATE INDEX batches_queue_committed_at_idx ON ledgerflow.batches (queue, committed_at);

CREATE FUNCTION ledgerflow.first_load_at(source TEXT, table_name TEXT)
RETURNS TIMESTAMPTZ
LANGUAGE sql STABLE AS $$
SELECT least(
    (SELECT min(b.committed_at) FROM ledgerflow.batches AS b
     WHERE first_load_at.table_name = 'public.historical_transactions'
       AND starts_with(first_load_at.source, 'queue:')
       AND b.queue = substr(first_load_at.source, 7)),
    (SELECT min(l.finished_at) FROM ledgerflow.loads AS l
     WHERE l.source = first_load_at.source AND l.table_name = first_load_at.table_name
       AND l.status = 'succeeded'))
$$;
