-- Named queries of the transactions domain, loaded by ledgerflow.db.queries.
-- Each starts with "-- name: <name>".

-- name: provider_ids
SELECT id FROM initial_data;

-- name: claim_message_ids
-- Returns the ids not counted before; the others belong to duplicates.
INSERT INTO ledgerflow.message_ids (message_id, batch_id)
SELECT message_id, %(batch_id)s FROM unnest(%(message_ids)s::text[]) AS m(message_id)
ON CONFLICT (message_id) DO NOTHING
RETURNING message_id;

-- name: insert_batch
-- The lineage columns are filled by finish_batch once the rows exist.
INSERT INTO ledgerflow.batches
    (queue, leader_term, instance, message_count, stored_count, rejected_count,
     duplicate_count, redelivered_count)
VALUES (%(queue)s, %(term)s, %(instance)s, %(message_count)s, 0, 0, 0, 0)
RETURNING id;

-- name: finish_batch
UPDATE ledgerflow.batches
SET stored_count = %(stored_count)s, rejected_count = %(rejected_count)s,
    duplicate_count = %(duplicate_count)s, redelivered_count = %(redelivered_count)s,
    body_hashes = %(body_hashes)s, outcomes = %(outcomes)s, message_ids = %(message_ids)s,
    transaction_ids = %(transaction_ids)s, rejected_ids = %(rejected_ids)s
WHERE id = %(batch_id)s;

-- name: unacknowledged_batches
-- The queue's batches after the last one RabbitMQ acknowledged, in the order they were
-- committed: each message's body hash and outcome, in delivery order.
SELECT body_hashes, outcomes FROM ledgerflow.batches
WHERE queue = %(queue)s AND id > %(after)s
ORDER BY id;

-- name: has_batches
SELECT EXISTS (SELECT 1 FROM ledgerflow.batches WHERE queue = %(queue)s);

-- name: insert_transactions
-- Serial ids are drawn in input order, so the returned ids sorted ascending match it.
INSERT INTO historical_transactions (provider_id, transaction_value)
SELECT provider_id, transaction_value
FROM unnest(%(provider_ids)s::integer[], %(values)s::numeric[])
    AS t(provider_id, transaction_value)
RETURNING id;

-- name: repeatable_read
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;

-- name: balances
SELECT d.id, d.provider_name, d.initial_value + coalesce(t.total, 0) AS balance
FROM initial_data AS d
LEFT JOIN ledgerflow.provider_totals AS t ON t.provider_id = d.id
ORDER BY d.id;

-- name: published_by_other_term
SELECT EXISTS (
    SELECT 1 FROM ledgerflow.publishes WHERE boundary = %(boundary)s AND term <> %(term)s
);

-- name: record_publish
INSERT INTO ledgerflow.publishes
    (boundary, term, instance, provider_count, published_at, lag_seconds)
VALUES (%(boundary)s, %(term)s, %(instance)s, %(provider_count)s, %(published_at)s,
        %(lag_seconds)s)
ON CONFLICT (boundary, term) DO UPDATE
SET published_at = excluded.published_at, lag_seconds = excluded.lag_seconds,
    provider_count = excluded.provider_count;

-- name: last_publications
SELECT DISTINCT ON (instance) instance, boundary, published_at, lag_seconds,
       extract(epoch FROM now() - published_at)::float8 AS age
FROM ledgerflow.publishes ORDER BY instance, published_at DESC;

-- name: seed_lock
SELECT pg_advisory_xact_lock(%(key)s);

-- name: any_provider
SELECT 1 FROM initial_data LIMIT 1;

-- name: insert_provider
INSERT INTO initial_data (provider_name, initial_value)
VALUES (%(name)s, %(value)s)
RETURNING id;

-- name: insert_transaction
INSERT INTO historical_transactions (provider_id, transaction_value)
VALUES (%(provider_id)s, %(value)s);

-- name: providers_in_order
SELECT id FROM initial_data ORDER BY id;

-- name: throughput
-- Messages committed over the last %(seconds)s seconds, per second (ledgerflow.batches
-- holds one row per batch: a minute at full speed is a few hundred rows).
SELECT coalesce(sum(message_count), 0)::float8 / %(seconds)s
FROM ledgerflow.batches
WHERE committed_at > now() - make_interval(secs => %(seconds)s);
