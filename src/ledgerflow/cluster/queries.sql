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
