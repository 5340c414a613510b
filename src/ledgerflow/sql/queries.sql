-- Named queries, loaded by ledgerflow.queries. Each starts with "-- name: <name>".

-- name: try_leader_lock
SELECT pg_try_advisory_lock(%(key)s);

-- name: take_term
UPDATE ledgerflow_leadership
SET term = term + 1, instance = %(instance)s, acquired_at = now()
RETURNING term;

-- name: lock_term
-- Held until the end of the calling transaction: a new leader cannot take its term
-- while a batch or a publish of the previous one is in flight.
SELECT term FROM ledgerflow_leadership FOR SHARE;

-- name: provider_ids
SELECT id FROM initial_data;

-- name: claim_message_ids
-- Returns the ids not counted before; the others belong to duplicates.
INSERT INTO ledgerflow_message_ids (message_id, batch_id)
SELECT message_id, %(batch_id)s FROM unnest(%(message_ids)s::text[]) AS m(message_id)
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id;

-- name: insert_batch
-- The lineage columns are filled by finish_batch once the rows exist.
INSERT INTO ledgerflow_batches
    (queue, leader_term, instance, message_count, stored_count, rejected_count,
     duplicate_count, redelivered_count)
VALUES (%(queue)s, %(term)s, %(instance)s, %(message_count)s, 0, 0, 0, 0)
RETURNING id;

-- name: finish_batch
UPDATE ledgerflow_batches
SET stored_count = %(stored_count)s, rejected_count = %(rejected_count)s,
    duplicate_count = %(duplicate_count)s, redelivered_count = %(redelivered_count)s,
    body_hashes = %(body_hashes)s, outcomes = %(outcomes)s, message_ids = %(message_ids)s,
    transaction_ids = %(transaction_ids)s, rejected_ids = %(rejected_ids)s
WHERE id = %(batch_id)s;

-- name: unacknowledged_batches
-- The queue's batches after the last one RabbitMQ acknowledged, in the order they were
-- committed: each message's body hash and outcome, in delivery order.
SELECT body_hashes, outcomes FROM ledgerflow_batches
WHERE queue = %(queue)s AND id > %(after)s
ORDER BY id;

-- name: has_batches
SELECT EXISTS (SELECT 1 FROM ledgerflow_batches WHERE queue = %(queue)s);

-- name: insert_transactions
-- Serial ids are drawn in input order, so the returned ids sorted ascending match it.
INSERT INTO historical_transactions (provider_id, transaction_value)
SELECT provider_id, transaction_value
FROM unnest(%(provider_ids)s::integer[], %(values)s::numeric[])
    AS t(provider_id, transaction_value)
RETURNING id;

-- name: insert_rejected
INSERT INTO rejected_messages
    (queue, message_id, reason, detail, body, properties, received_at)
SELECT %(queue)s, message_id, reason, detail, body, properties, received_at
FROM unnest(%(message_ids)s::text[], %(reasons)s::text[], %(details)s::text[],
            %(bodies)s::bytea[], %(properties)s::jsonb[], %(received_at)s::timestamptz[])
    AS r(message_id, reason, detail, body, properties, received_at)
RETURNING id;

-- name: balances
SELECT d.id, d.provider_name, d.initial_value + coalesce(t.total, 0) AS balance
FROM initial_data AS d
LEFT JOIN ledgerflow_provider_totals AS t ON t.provider_id = d.id
ORDER BY d.id;

-- name: published_by_other_term
SELECT EXISTS (
    SELECT 1 FROM ledgerflow_publishes WHERE boundary = %(boundary)s AND term <> %(term)s
);

-- name: record_publish
INSERT INTO ledgerflow_publishes
    (boundary, term, instance, provider_count, published_at, lag_seconds)
VALUES (%(boundary)s, %(term)s, %(instance)s, %(provider_count)s, %(published_at)s,
        %(lag_seconds)s)
ON CONFLICT (boundary, term) DO UPDATE
SET published_at = excluded.published_at, lag_seconds = excluded.lag_seconds,
    provider_count = excluded.provider_count;

-- name: heartbeat
INSERT INTO ledgerflow_workers
    (instance, role, host, pid, http_address, queue, started_at, heartbeat_at)
VALUES (%(instance)s, %(role)s, %(host)s, %(pid)s, %(http_address)s, %(queue)s,
        %(started_at)s, now())
ON CONFLICT (instance) DO UPDATE
SET role = excluded.role, host = excluded.host, pid = excluded.pid,
    http_address = excluded.http_address, queue = excluded.queue,
    started_at = excluded.started_at, heartbeat_at = now();

-- name: forget_worker
DELETE FROM ledgerflow_workers WHERE instance = %(instance)s;

-- name: workers
SELECT w.instance, w.role, w.host, w.pid, w.http_address, w.queue, w.started_at,
       w.heartbeat_at, extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       CASE WHEN l.instance = w.instance
            THEN extract(epoch FROM now() - l.acquired_at)::float8 END AS active_for
FROM ledgerflow_workers AS w CROSS JOIN ledgerflow_leadership AS l
ORDER BY w.instance;

-- name: last_publications
SELECT DISTINCT ON (instance) instance, boundary, published_at, lag_seconds,
       extract(epoch FROM now() - published_at)::float8 AS age
FROM ledgerflow_publishes ORDER BY instance, published_at DESC;

-- name: rejected_summary
SELECT count(*) AS total,
       count(*) FILTER (WHERE received_at > now() - interval '1 hour') AS last_hour
FROM rejected_messages;

-- name: resolve_codes
-- The ports a code stands for: the port itself, or every port in the region and all the
-- regions below it. Empty when the code is neither.
WITH RECURSIVE tree AS (
    SELECT slug FROM regions WHERE slug = %(code)s
    UNION ALL
    SELECT r.slug FROM regions AS r JOIN tree AS t ON r.parent_slug = t.slug
)
SELECT code FROM ports WHERE code = %(code)s
UNION
SELECT p.code FROM ports AS p JOIN tree AS t ON p.parent_slug = t.slug;

-- name: daily_rates
-- One row per day from date_to down to date_from (dates, not timestamps, so the series
-- does not depend on the session's time zone): the count and average of the lane's prices.
-- The codes compare with collation "C", as prices_lane_day_idx holds them (migration 009).
SELECT d.day::date, count(p.price), avg(p.price)
FROM generate_series(%(date_to)s::date, %(date_from)s::date, interval '-1 day') AS d(day)
LEFT JOIN prices AS p
    ON p.day = d.day::date
   AND p.day BETWEEN %(date_from)s::date AND %(date_to)s::date
   AND p.orig_code COLLATE "C" = ANY(%(orig)s::text[])
   AND p.dest_code COLLATE "C" = ANY(%(dest)s::text[])
GROUP BY d.day
ORDER BY d.day DESC;

-- name: claim_price_batch
INSERT INTO ledgerflow_price_batches (batch_id, source, row_count)
VALUES (%(batch_id)s, %(source)s, %(row_count)s)
ON CONFLICT (batch_id) DO NOTHING
RETURNING batch_id;

-- name: price_batch
SELECT row_count, committed_at FROM ledgerflow_price_batches WHERE batch_id = %(batch_id)s;

-- name: known_ports
SELECT code FROM ports WHERE code = ANY(%(codes)s::text[]);
