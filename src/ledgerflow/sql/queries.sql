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

-- name: seen_message_ids
SELECT message_id FROM ledgerflow_messages
WHERE message_id = ANY(%(message_ids)s::text[]) AND outcome IN ('stored', 'rejected');

-- name: insert_batch
INSERT INTO ledgerflow_batches
    (queue, leader_term, instance, message_count, stored_count, rejected_count,
     duplicate_count, redelivered_count)
VALUES
    (%(queue)s, %(term)s, %(instance)s, %(message_count)s, %(stored_count)s,
     %(rejected_count)s, %(duplicate_count)s, %(redelivered_count)s)
RETURNING id;

-- name: unacknowledged_messages
-- Every message of the queue's batches after the last one RabbitMQ acknowledged, in the
-- order they were delivered; a redelivery recognised earlier is the same message again.
SELECT m.body_sha256
FROM ledgerflow_batches AS b
JOIN ledgerflow_messages AS m ON m.batch_id = b.id
WHERE b.queue = %(queue)s AND b.id > %(after)s AND m.outcome <> 'redelivered'
ORDER BY b.id, m.position;

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

-- name: insert_messages
INSERT INTO ledgerflow_messages
    (batch_id, position, message_id, redelivered, body_sha256, outcome,
     transaction_id, rejected_id)
SELECT %(batch_id)s, position, message_id, redelivered, body_sha256, outcome,
       transaction_id, rejected_id
FROM unnest(%(positions)s::integer[], %(message_ids)s::text[], %(redelivered)s::boolean[],
            %(hashes)s::bytea[], %(outcomes)s::text[], %(transaction_ids)s::integer[],
            %(rejected_ids)s::bigint[])
    AS m(position, message_id, redelivered, body_sha256, outcome, transaction_id, rejected_id);

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
