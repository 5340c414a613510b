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
    filtered_count = %(filtered_count)s,
    body_hashes = %(body_hashes)s, outcomes = %(outcomes)s, message_ids = %(message_ids)s,
    transaction_ids = %(transaction_ids)s, rejected_ids = %(rejected_ids)s,
    filter_rules = %(filter_rules)s::bigint[], hash_keys = %(hash_keys)s::bigint[]
WHERE id = %(batch_id)s;

-- name: unacknowledged_batches
-- The queue's batches after the last one RabbitMQ acknowledged, in the order they were
-- committed: each message's body hash and outcome, in delivery order.
SELECT body_hashes, outcomes FROM ledgerflow.batches
WHERE queue = %(queue)s AND id > %(after)s
ORDER BY id;

-- name: last_batch
SELECT coalesce(max(id), 0) FROM ledgerflow.batches WHERE queue = %(queue)s;

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
-- The snapshot is the publishing transaction's own (REPEATABLE READ: the one the balances
-- were read in), so a trace can tell which batches this publication saw.
INSERT INTO ledgerflow.publishes
    (boundary, term, instance, provider_count, published_at, lag_seconds, snapshot, balances)
VALUES (%(boundary)s, %(term)s, %(instance)s, %(provider_count)s, %(published_at)s,
        %(lag_seconds)s, pg_current_snapshot(), %(balances)s)
ON CONFLICT (boundary, term) DO UPDATE
SET published_at = excluded.published_at, lag_seconds = excluded.lag_seconds,
    provider_count = excluded.provider_count, snapshot = excluded.snapshot,
    balances = excluded.balances;

-- name: last_publications
SELECT DISTINCT ON (instance) instance, boundary, published_at, lag_seconds,
       extract(epoch FROM now() - published_at)::float8 AS age
FROM ledgerflow.publishes ORDER BY instance, published_at DESC;

-- name: advisory_lock
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

-- name: insert_rule
INSERT INTO ledgerflow.rules (name) VALUES (%(name)s)
ON CONFLICT (name) DO NOTHING
RETURNING id;

-- name: rule_id
SELECT id FROM ledgerflow.rules WHERE name = %(name)s;

-- name: lock_rule
-- Two changes to one rule at once would both become the same next version.
SELECT id FROM ledgerflow.rules WHERE name = %(name)s FOR UPDATE;

-- name: insert_rule_version
INSERT INTO ledgerflow.rule_versions
    (rule_id, version, condition, technical, functional, owner, enabled, change, changed_by)
VALUES (%(rule_id)s, %(version)s, %(condition)s, %(technical)s, %(functional)s, %(owner)s,
        %(enabled)s, %(change)s, %(changed_by)s)
RETURNING id;

-- name: rule_version
SELECT v.id AS version_id, r.name, v.version, v.condition, v.technical, v.functional,
       v.owner, v.enabled, v.change, v.changed_by, v.changed_at
FROM ledgerflow.rule_versions AS v JOIN ledgerflow.rules AS r ON r.id = v.rule_id
WHERE v.id = %(id)s;

-- name: current_rule
SELECT v.id AS version_id, r.name, v.version, v.condition, v.technical, v.functional,
       v.owner, v.enabled, v.change, v.changed_by, v.changed_at
FROM ledgerflow.rules AS r
JOIN ledgerflow.rule_versions AS v ON v.rule_id = r.id
WHERE r.name = %(name)s
ORDER BY v.version DESC
LIMIT 1;

-- name: current_rules
-- Each rule's newest version, in the order rules are evaluated (creation order).
SELECT DISTINCT ON (r.id) v.id AS version_id, r.name, v.version, v.condition, v.technical,
       v.functional, v.owner, v.enabled, v.change, v.changed_by, v.changed_at
FROM ledgerflow.rules AS r
JOIN ledgerflow.rule_versions AS v ON v.rule_id = r.id
ORDER BY r.id, v.version DESC;

-- name: rule_history
SELECT v.id AS version_id, r.name, v.version, v.condition, v.technical, v.functional,
       v.owner, v.enabled, v.change, v.changed_by, v.changed_at
FROM ledgerflow.rules AS r
JOIN ledgerflow.rule_versions AS v ON v.rule_id = r.id
WHERE r.name = %(name)s
ORDER BY v.version DESC;

-- name: rule_set_version
-- Every change is a new version row, so the newest id names the rule set.
SELECT coalesce(max(id), 0) FROM ledgerflow.rule_versions;

-- name: insert_batch_filters
INSERT INTO ledgerflow.batch_filters (batch_id, rule_version_id, filtered)
SELECT %(batch_id)s, r, c FROM unnest(%(rules)s::bigint[], %(counts)s::integer[]) AS t(r, c);

-- name: check_pattern
-- A regular expression of a condition, compiled by PostgreSQL when the rule is saved.
SELECT ''::text ~ %(pattern)s;
