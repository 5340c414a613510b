-- Named queries of a trace (ledgerflow/lineage/trace.py): one message, found by its
-- message id or its body's SHA-256, followed from its batch to KeyDB.

-- name: by_hash
-- The GIN index on hash_keys finds the batches; the full digest settles each position.
-- array_positions reads a batch's keys once (not once a position): a body sent a hundred
-- times costs a hundredth of what walking every position did.
SELECT b.id AS batch_id, p.position - 1 AS position
FROM ledgerflow.batches AS b
CROSS JOIN LATERAL unnest(array_positions(b.hash_keys, %(key)s::bigint)) AS p(position)
WHERE b.hash_keys @> ARRAY[%(key)s::bigint]
  AND substring(b.body_hashes FROM (p.position - 1) * 32 + 1 FOR 32) = %(digest)s
ORDER BY b.id, p.position
LIMIT %(limit)s;

-- name: by_message_id
-- The delivery that counted the id (later ones with the same id are duplicates of it).
SELECT i.batch_id, array_position(b.message_ids, %(message_id)s) - 1 AS position
FROM ledgerflow.message_ids AS i
JOIN ledgerflow.batches AS b ON b.id = i.batch_id
WHERE i.message_id = %(message_id)s;

-- name: message
SELECT b.id AS batch_id, %(position)s::integer AS position, b.queue, b.instance,
       b.leader_term AS term, b.committed_at, b.xid::text AS xid,
       b.message_ids[%(position)s + 1] AS message_id,
       substring(b.body_hashes FROM %(position)s * 32 + 1 FOR 32) AS body_sha256,
       substr(b.outcomes, %(position)s + 1, 1) AS letter,
       b.transaction_ids[%(position)s + 1] AS transaction_id,
       b.rejected_ids[%(position)s + 1] AS rejected_id,
       b.filter_rules[%(position)s + 1] AS rule_version_id
FROM ledgerflow.batches AS b
WHERE b.id = %(batch_id)s;

-- name: transaction
SELECT t.id, t.provider_id, t.transaction_value AS value, d.provider_name,
       t.provider_id || '_' || d.provider_name AS key
FROM historical_transactions AS t
LEFT JOIN initial_data AS d ON d.id = t.provider_id
WHERE t.id = %(id)s;

-- name: first_publication
-- The first publication whose snapshot saw the batch's transaction: the boundary that
-- first included the message, and the value it wrote to KeyDB for the provider. The
-- snapshot decides; the time only bounds the search, with five minutes to spare for a
-- worker's clock that differs from the database's.
SELECT boundary, published_at, instance, term, balances ->> %(key)s AS value
FROM ledgerflow.publishes
WHERE published_at >= %(committed_at)s::timestamptz - interval '5 minutes'
  AND snapshot IS NOT NULL
  AND pg_visible_in_snapshot(%(xid)s::xid8, snapshot)
ORDER BY published_at
LIMIT 1;

-- name: rejection
SELECT reason, detail, received_at FROM ledgerflow.rejected_messages WHERE id = %(id)s;

-- name: rule
SELECT r.name, v.version, v.condition, v.technical, v.functional, v.owner, v.changed_by,
       v.changed_at
FROM ledgerflow.rule_versions AS v
JOIN ledgerflow.rules AS r ON r.id = v.rule_id
WHERE v.id = %(id)s;

-- name: filtered
SELECT provider_id, value FROM ledgerflow.filtered_messages
WHERE batch_id = %(batch_id)s AND position = %(position)s;

-- name: counted_in
SELECT batch_id FROM ledgerflow.message_ids WHERE message_id = %(message_id)s;
