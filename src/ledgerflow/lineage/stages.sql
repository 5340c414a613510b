-- Named queries of the stage counts (ledgerflow/lineage/stages.py): how many messages
-- reached each stage of a pipeline over a time window, from the batches' own counts.

-- name: transaction_stages
-- The window's batches through the index on commit time; "published" counts the stored
-- messages the newest publication's snapshot saw.
WITH b AS (
    SELECT * FROM ledgerflow.batches
    WHERE committed_at >= %(since)s AND committed_at < %(until)s
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
),
latest AS (
    SELECT snapshot FROM ledgerflow.publishes
    WHERE snapshot IS NOT NULL ORDER BY published_at DESC LIMIT 1
)
SELECT coalesce(sum(message_count), 0)::bigint AS received,
       coalesce(sum(redelivered_count), 0)::bigint AS redelivered,
       coalesce(sum(duplicate_count), 0)::bigint AS duplicate,
       coalesce(sum(rejected_count), 0)::bigint AS rejected,
       coalesce(sum(filtered_count), 0)::bigint AS filtered,
       coalesce(sum(stored_count), 0)::bigint AS stored,
       coalesce(sum(stored_count) FILTER (
           WHERE xid IS NOT NULL
             AND pg_visible_in_snapshot(xid, (SELECT snapshot FROM latest))
       ), 0)::bigint AS published,
       count(*)::bigint AS batches
FROM b;

-- name: rejected_by_reason
SELECT r.reason, count(*)::bigint AS count
FROM ledgerflow.batches AS b
CROSS JOIN LATERAL unnest(b.rejected_ids) AS u(id)
JOIN ledgerflow.rejected_messages AS r ON r.id = u.id
WHERE b.committed_at >= %(since)s AND b.committed_at < %(until)s
  AND b.rejected_count > 0
  AND (%(queue)s::text IS NULL OR b.queue = %(queue)s)
GROUP BY r.reason
ORDER BY count DESC, r.reason;

-- name: filtered_by_rule
SELECT f.rule_version_id, r.name, v.version, sum(f.filtered)::bigint AS count
FROM ledgerflow.batches AS b
JOIN ledgerflow.batch_filters AS f ON f.batch_id = b.id
JOIN ledgerflow.rule_versions AS v ON v.id = f.rule_version_id
JOIN ledgerflow.rules AS r ON r.id = v.rule_id
WHERE b.committed_at >= %(since)s AND b.committed_at < %(until)s
  AND (%(queue)s::text IS NULL OR b.queue = %(queue)s)
GROUP BY f.rule_version_id, r.name, v.version
ORDER BY count DESC, r.name, v.version;

-- name: filtered_over_time
-- Filtered messages per rule (by name, all versions) per bucket of %(bucket)s seconds.
SELECT to_timestamp(floor(extract(epoch FROM b.committed_at) / %(bucket)s) * %(bucket)s) AS at,
       r.name, sum(f.filtered)::bigint AS count
FROM ledgerflow.batches AS b
JOIN ledgerflow.batch_filters AS f ON f.batch_id = b.id
JOIN ledgerflow.rule_versions AS v ON v.id = f.rule_version_id
JOIN ledgerflow.rules AS r ON r.id = v.rule_id
WHERE b.committed_at >= %(since)s AND b.committed_at < %(until)s
  AND (%(queue)s::text IS NULL OR b.queue = %(queue)s)
GROUP BY 1, 2
ORDER BY 1, 2;

-- name: price_batch_stages
-- Price batches exist where the rates domain is used; the caller checks for the table.
SELECT count(*)::bigint AS committed, coalesce(sum(row_count), 0)::bigint AS rows
FROM ledgerflow.price_batches
WHERE committed_at >= %(since)s AND committed_at < %(until)s;

-- name: price_batches_rejected
SELECT count(*)::bigint FROM ledgerflow.rejected_messages
WHERE reason = 'invalid_price_batch'
  AND received_at >= %(since)s AND received_at < %(until)s;

-- name: has_price_batches
SELECT to_regclass('ledgerflow.price_batches') IS NOT NULL;

-- name: filtered_messages
-- The log of filtered messages in a window, newest first, a page at a time.
SELECT b.id AS batch_id, m.position, b.committed_at, b.queue,
       b.message_ids[m.position + 1] AS message_id,
       encode(substring(b.body_hashes FROM m.position * 32 + 1 FOR 32), 'hex') AS body_sha256,
       m.provider_id, m.value, r.name AS rule, v.version, v.technical, v.functional
FROM ledgerflow.filtered_messages AS m
JOIN ledgerflow.batches AS b ON b.id = m.batch_id
JOIN ledgerflow.rule_versions AS v ON v.id = m.rule_version_id
JOIN ledgerflow.rules AS r ON r.id = v.rule_id
WHERE b.committed_at >= %(since)s AND b.committed_at < %(until)s
  AND (%(rule)s::text IS NULL OR r.name = %(rule)s)
ORDER BY b.id DESC, m.position DESC
LIMIT %(limit)s;
