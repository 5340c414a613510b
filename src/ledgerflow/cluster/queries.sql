-- Named queries of the cluster: leadership and the worker registry.
-- Each starts with "-- name: <name>".

-- name: try_leader_lock
SELECT pg_try_advisory_lock(%(key)s);

-- name: take_term
UPDATE ledgerflow.leadership
SET term = term + 1, instance = %(instance)s, acquired_at = now()
RETURNING term;

-- name: lock_term
-- Held until the end of the calling transaction: a new leader cannot take its term
-- while a batch or a publish of the previous one is in flight.
SELECT term FROM ledgerflow.leadership FOR SHARE;

-- name: still_connected
SELECT 1;

-- name: heartbeat
INSERT INTO ledgerflow.workers
    (instance, role, host, pid, http_address, queue, started_at, heartbeat_at)
VALUES (%(instance)s, %(role)s, %(host)s, %(pid)s, %(http_address)s, %(queue)s,
        %(started_at)s, now())
ON CONFLICT (instance) DO UPDATE
SET role = excluded.role, host = excluded.host, pid = excluded.pid,
    http_address = excluded.http_address, queue = excluded.queue,
    started_at = excluded.started_at, heartbeat_at = now();

-- name: forget_worker
DELETE FROM ledgerflow.workers WHERE instance = %(instance)s;

-- name: workers
SELECT w.instance, w.role, w.host, w.pid, w.http_address, w.queue, w.started_at,
       w.heartbeat_at, extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       CASE WHEN l.instance = w.instance
            THEN extract(epoch FROM now() - l.acquired_at)::float8 END AS active_for
FROM ledgerflow.workers AS w CROSS JOIN ledgerflow.leadership AS l
ORDER BY w.instance;

-- name: take_shard_term
-- Waits for a batch of the previous holder still in flight (it holds the row FOR SHARE).
INSERT INTO ledgerflow.shard_terms AS s (queue, term, instance)
VALUES (%(queue)s, 1, %(instance)s)
ON CONFLICT (queue) DO UPDATE
SET term = s.term + 1, instance = excluded.instance, acquired_at = now()
RETURNING term;

-- name: lock_shard_term
-- Held until the end of the calling transaction, like lock_term for the leader.
SELECT term FROM ledgerflow.shard_terms WHERE queue = %(queue)s FOR SHARE;

-- name: shard_terms
-- Each shard's holder, since when, and the messages its batches took in the last minute.
SELECT s.queue, s.term, s.instance, s.acquired_at,
       extract(epoch FROM now() - s.acquired_at)::float8 AS held_for,
       (SELECT coalesce(sum(b.message_count), 0) FROM ledgerflow.batches b
        WHERE b.queue = s.queue AND b.committed_at > now() - interval '1 minute')::bigint
           AS last_minute
FROM ledgerflow.shard_terms s ORDER BY s.queue;

-- name: claim_shard_count
-- The queue's number of shards: this one if none was set, else the one set.
WITH claimed AS (
    INSERT INTO ledgerflow.shard_counts (queue, shards) VALUES (%(queue)s, %(shards)s)
    ON CONFLICT (queue) DO NOTHING
    RETURNING shards
)
SELECT shards FROM claimed
UNION ALL
SELECT shards FROM ledgerflow.shard_counts WHERE queue = %(queue)s
LIMIT 1;

-- name: set_shard_count
INSERT INTO ledgerflow.shard_counts (queue, shards) VALUES (%(queue)s, %(shards)s)
ON CONFLICT (queue) DO UPDATE SET shards = excluded.shards, set_at = now();
