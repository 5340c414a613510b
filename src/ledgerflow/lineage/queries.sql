-- Named queries of the lineage domain, loaded by ledgerflow.db.queries.
-- Each starts with "-- name: <name>".
--
-- The configured_* queries are templates: their {placeholders} are the tables and id
-- columns of a configured data source, filled in with psycopg.sql.Identifier (names
-- checked against the catalog when the source was saved, and again before each run).
-- They hold no other braces, so that sql.SQL(...).format can read them.

-- name: repeatable_read
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ;

-- name: comparison_memory
-- A million ids hash into about 50 MB: with the default 4 MB every anti-join would spill
-- to disk in batches. LOCAL: for this transaction only.
SET LOCAL work_mem = '256MB';

-- name: insert_comparison
INSERT INTO ledgerflow.comparisons
    (source, started_at, finished_at, counts, unexplained, explained, explained_kept, ran_by)
VALUES (%(source)s, now(), now(), '{}', 0, 0, 0, %(ran_by)s)
RETURNING id;

-- name: finish_comparison
UPDATE ledgerflow.comparisons
SET finished_at = clock_timestamp(), counts = %(counts)s, unexplained = %(unexplained)s,
    explained = %(explained)s, explained_kept = %(explained_kept)s
WHERE id = %(id)s;

-- name: comparison
SELECT id, source, started_at, finished_at, counts, unexplained, explained, explained_kept,
       ran_by
FROM ledgerflow.comparisons WHERE id = %(id)s;

-- name: last_comparisons
-- Newest first, of every source or of one (comparisons_started_at_idx and
-- comparisons_source_idx).
SELECT id, source, started_at, finished_at, counts, unexplained, explained, explained_kept,
       ran_by
FROM ledgerflow.comparisons
WHERE %(source)s::text IS NULL OR source = %(source)s::text
ORDER BY started_at DESC, id DESC
LIMIT %(limit)s;

-- name: comparison_items
-- One page of a run's items: unexplained first, each group in the order found.
SELECT kind, stages, item_id, explained, explanation, detail, rule_version_id, batch_id,
       position, expected, actual
FROM ledgerflow.comparison_items
WHERE comparison_id = %(comparison_id)s AND (NOT %(only_unexplained)s OR NOT explained)
ORDER BY explained, id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: ledgerflow_counts
-- The built-in source's stage sizes: messages the queue delivered (a redelivery, A, is
-- the same message again), and rows in historical_transactions. Letters are counted per
-- batch row, without unnesting a message.
SELECT coalesce(sum(length(replace(outcomes, 'A', ''))), 0)::bigint AS messages,
       (SELECT count(*) FROM historical_transactions) AS rows
FROM ledgerflow.batches;

-- name: ledgerflow_missing
-- The built-in source, queue -> historical_transactions: every delivered message that
-- is not a stored row. Filtered, rejected and duplicate messages are explained by their
-- outcome; a stored message whose row is gone is not. Each batch's arrays are unnested
-- side by side, once: subscripting a toasted array once per message would detoast it
-- every time. Returns a count per explanation (NULL: unexplained) and the explained
-- items kept (the newest, up to the limit).
WITH not_stored AS MATERIALIZED (
    SELECT b.id AS batch_id, u.position::integer - 1 AS position, u.outcome, u.rejected_id,
           u.rule_version_id, u.message_id
    FROM ledgerflow.batches AS b
    CROSS JOIN LATERAL unnest(string_to_array(b.outcomes, NULL), b.rejected_ids,
                              b.filter_rules, b.message_ids)
        WITH ORDINALITY AS u(outcome, rejected_id, rule_version_id, message_id, position)
    WHERE b.outcomes ~ '[FRD]' AND u.outcome IN ('F', 'R', 'D')
),
gone AS MATERIALIZED (
    SELECT b.id AS batch_id, t.position::integer - 1 AS position, t.transaction_id
    FROM ledgerflow.batches AS b
    CROSS JOIN LATERAL unnest(b.transaction_ids) WITH ORDINALITY AS t(transaction_id, position)
    WHERE t.transaction_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM historical_transactions AS h WHERE h.id = t.transaction_id)
),
labelled AS MATERIALIZED (
    SELECT n.batch_id, n.position, n.outcome, n.rule_version_id, n.message_id,
           CASE n.outcome
               WHEN 'F' THEN coalesce('filtered by rule ' || r.name || ' v' || v.version,
                                      'filtered by rule version ' || n.rule_version_id,
                                      'filtered (no rule recorded)')
               WHEN 'R' THEN 'rejected: ' || coalesce(j.reason, 'reason not recorded')
               ELSE 'duplicate'
           END AS label
    FROM not_stored AS n
    LEFT JOIN ledgerflow.rule_versions AS v ON v.id = n.rule_version_id
    LEFT JOIN ledgerflow.rules AS r ON r.id = v.rule_id
    LEFT JOIN ledgerflow.rejected_messages AS j ON j.id = n.rejected_id
),
kept AS (
    INSERT INTO ledgerflow.comparison_items
        (comparison_id, kind, stages, item_id, explained, explanation, detail,
         rule_version_id, batch_id, position)
    SELECT %(comparison_id)s, 'missing', 'source-persistency',
           coalesce(k.message_id,
                    encode(substring(b.body_hashes FROM k.position * 32 + 1 FOR 32), 'hex')),
           true,
           CASE WHEN k.outcome = 'D'
                THEN 'duplicate of a message counted in batch ' || coalesce(c.batch_id::text, '?')
                ELSE k.label END,
           'batch ' || k.batch_id || ', position ' || k.position,
           k.rule_version_id, k.batch_id, k.position
    FROM (SELECT * FROM labelled ORDER BY batch_id DESC, position
          LIMIT %(explained_limit)s) AS k
    JOIN ledgerflow.batches AS b ON b.id = k.batch_id
    LEFT JOIN ledgerflow.message_ids AS c ON k.outcome = 'D' AND c.message_id = k.message_id
    UNION ALL
    SELECT %(comparison_id)s, 'missing', 'source-persistency',
           coalesce(b.message_ids[g.position + 1],
                    encode(substring(b.body_hashes FROM g.position * 32 + 1 FOR 32), 'hex')),
           false, NULL,
           'stored in batch ' || g.batch_id || ', position ' || g.position
               || ', as historical_transactions.id ' || g.transaction_id || ': the row is gone',
           NULL, g.batch_id, g.position
    FROM gone AS g
    JOIN ledgerflow.batches AS b ON b.id = g.batch_id
    RETURNING explained
)
SELECT label, count(*) AS n, (SELECT count(*) FROM kept WHERE explained) AS kept
FROM (SELECT label FROM labelled UNION ALL SELECT NULL FROM gone) AS found
GROUP BY label;

-- name: ledgerflow_foreign
-- The built-in source, the other way: rows of historical_transactions no batch stored.
-- Rows older than the first row a batch stored are the ones loaded before ledgerflow
-- (the fixture's initial rows); when no batch has stored a row yet, that is all of them.
WITH first_stored AS (
    SELECT min(t.id) AS id
    FROM ledgerflow.batches AS b CROSS JOIN LATERAL unnest(b.transaction_ids) AS t(id)
),
foreign_rows AS MATERIALIZED (
    SELECT h.id, h.provider_id, h.transaction_value, coalesce(h.id < f.id, true) AS before_first
    FROM historical_transactions AS h CROSS JOIN first_stored AS f
    WHERE NOT EXISTS (
        SELECT 1 FROM ledgerflow.batches AS b CROSS JOIN LATERAL unnest(b.transaction_ids) AS t(id)
        WHERE t.id = h.id
    )
),
kept AS (
    INSERT INTO ledgerflow.comparison_items
        (comparison_id, kind, stages, item_id, explained, explanation, detail)
    SELECT %(comparison_id)s, 'foreign', 'source-persistency', r.id::text, true,
           'loaded before ledgerflow''s first batch',
           'provider ' || coalesce(r.provider_id::text, 'NULL') || ', value ' || r.transaction_value
    FROM (SELECT * FROM foreign_rows WHERE before_first ORDER BY id DESC
          LIMIT %(explained_limit)s) AS r
    UNION ALL
    SELECT %(comparison_id)s, 'foreign', 'source-persistency', r.id::text, false, NULL,
           'provider ' || coalesce(r.provider_id::text, 'NULL') || ', value ' || r.transaction_value
               || ': no batch stored this row'
    FROM foreign_rows AS r WHERE NOT r.before_first
    RETURNING explained
)
SELECT count(*) FILTER (WHERE before_first) AS explained,
       count(*) FILTER (WHERE NOT before_first) AS unexplained,
       (SELECT count(*) FROM kept WHERE explained) AS kept
FROM foreign_rows;

-- name: last_publication
-- The newest publication: what KeyDB should hold now.
SELECT boundary, published_at, balances
FROM ledgerflow.publishes
ORDER BY published_at DESC, boundary DESC
LIMIT 1;

-- name: insert_target_items
-- KeyDB against the last publication: the keys that differ, are missing, or were not
-- published (a handful: one key a provider).
INSERT INTO ledgerflow.comparison_items
    (comparison_id, kind, stages, item_id, explained, detail, expected, actual)
SELECT %(comparison_id)s, i.kind, 'persistency-target', i.key, false, i.detail, i.expected,
       i.actual
FROM unnest(%(kinds)s::text[], %(keys)s::text[], %(details)s::text[], %(expected)s::text[],
            %(actual)s::text[]) AS i(kind, key, detail, expected, actual);

-- name: configured_missing
-- A configured source: the ids of {left_table} absent from {right_table}, each explained
-- when ledgerflow's lineage explains it: the id was counted (ledgerflow.message_ids) by a
-- batch where its outcome is filtered, rejected or duplicate. Ids are compared as text,
-- so integer and text columns meet. NOT EXISTS, measured against EXCEPT and LEFT JOIN
-- (see lineage/comparisons.py). Returns a count per explanation (NULL: unexplained) and
-- the explained items kept (the newest, up to the limit).
WITH missing AS MATERIALIZED (
    SELECT DISTINCT l.{left_id}::text AS id
    FROM {left_table} AS l
    WHERE l.{left_id} IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM {right_table} AS r WHERE r.{right_id}::text = l.{left_id}::text)
),
counted AS MATERIALIZED (
    -- Index lookups: the planner cannot know that a few ids are missing out of millions,
    -- and would hash every counted id instead.
    SELECT c.message_id AS id, c.batch_id
    FROM ledgerflow.message_ids AS c
    WHERE c.message_id = ANY ((SELECT array_agg(id) FROM missing)::text[])
),
per_batch AS MATERIALIZED (
    SELECT batch_id, count(*) AS ids FROM counted GROUP BY batch_id
),
-- Where each counted id sits in its batch (its first position), and its outcome there: a
-- batch holding a few of them is searched once per id, one holding many is unnested once.
dense AS MATERIALIZED (
    SELECT b.id AS batch_id, u.message_id, u.position::integer - 1 AS position, u.outcome,
           u.rejected_id, u.rule_version_id
    FROM ledgerflow.batches AS b
    CROSS JOIN LATERAL unnest(b.message_ids, string_to_array(b.outcomes, NULL), b.rejected_ids,
                              b.filter_rules)
        WITH ORDINALITY AS u(message_id, outcome, rejected_id, rule_version_id, position)
    WHERE b.id = ANY ((SELECT array_agg(batch_id) FROM per_batch WHERE ids > 32)::bigint[])
),
found AS MATERIALIZED (
    SELECT c.id, c.batch_id, p.position - 1 AS position, substr(b.outcomes, p.position, 1) AS outcome,
           b.rejected_ids[p.position] AS rejected_id, b.filter_rules[p.position] AS rule_version_id
    FROM counted AS c
    JOIN per_batch AS n ON n.batch_id = c.batch_id AND n.ids <= 32
    JOIN ledgerflow.batches AS b ON b.id = c.batch_id
    CROSS JOIN LATERAL (SELECT array_position(b.message_ids, c.id) AS position) AS p
    WHERE p.position IS NOT NULL
    UNION ALL
    (SELECT DISTINCT ON (c.id) c.id, c.batch_id, d.position, d.outcome, d.rejected_id,
            d.rule_version_id
     FROM counted AS c
     JOIN dense AS d ON d.batch_id = c.batch_id AND d.message_id = c.id
     ORDER BY c.id, d.position)
),
labelled AS MATERIALIZED (
    SELECT m.id, f.batch_id, f.position, f.outcome, f.rule_version_id, c.batch_id AS counted_in,
           CASE f.outcome
               WHEN 'F' THEN coalesce('filtered by rule ' || r.name || ' v' || v.version,
                                      'filtered by rule version ' || f.rule_version_id,
                                      'filtered (no rule recorded)')
               WHEN 'R' THEN 'rejected: ' || coalesce(j.reason, 'reason not recorded')
               WHEN 'D' THEN 'duplicate'
           END AS label
    FROM missing AS m
    LEFT JOIN counted AS c ON c.id = m.id
    LEFT JOIN found AS f ON f.id = m.id
    LEFT JOIN ledgerflow.rule_versions AS v ON v.id = f.rule_version_id
    LEFT JOIN ledgerflow.rules AS r ON r.id = v.rule_id
    LEFT JOIN ledgerflow.rejected_messages AS j ON j.id = f.rejected_id
),
kept AS (
    INSERT INTO ledgerflow.comparison_items
        (comparison_id, kind, stages, item_id, explained, explanation, detail,
         rule_version_id, batch_id, position)
    SELECT %(comparison_id)s, 'missing', %(stages)s, k.id, true,
           CASE WHEN k.outcome = 'D'
                THEN 'duplicate of a message counted in batch ' || k.counted_in
                ELSE k.label END,
           'batch ' || k.batch_id || ', position ' || k.position,
           k.rule_version_id, k.batch_id, k.position
    FROM (SELECT * FROM labelled WHERE label IS NOT NULL ORDER BY batch_id DESC, position
          LIMIT %(explained_limit)s) AS k
    UNION ALL
    SELECT %(comparison_id)s, 'missing', %(stages)s, k.id, false, NULL,
           CASE WHEN k.outcome = 'S'
                THEN 'ledgerflow stored it: batch ' || k.batch_id || ', position ' || k.position
                WHEN k.outcome IS NOT NULL
                THEN 'outcome ' || k.outcome || ' in batch ' || k.batch_id || ', position '
                     || k.position
                WHEN k.counted_in IS NOT NULL
                THEN 'counted in batch ' || k.counted_in || ', not found in its lineage'
                ELSE 'not in ledgerflow''s lineage' END,
           NULL, k.batch_id, k.position
    FROM labelled AS k WHERE k.label IS NULL
    RETURNING explained
)
SELECT label, count(*) AS n, (SELECT count(*) FROM kept WHERE explained) AS kept
FROM labelled
GROUP BY label;

-- name: configured_foreign
-- A configured source, the other way: ids of {right_table} that no row of {left_table}
-- has (written there by something else). Returns their count.
WITH extra AS MATERIALIZED (
    SELECT DISTINCT r.{right_id}::text AS id
    FROM {right_table} AS r
    WHERE r.{right_id} IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM {left_table} AS l WHERE l.{left_id}::text = r.{right_id}::text)
),
kept AS (
    INSERT INTO ledgerflow.comparison_items
        (comparison_id, kind, stages, item_id, explained, detail)
    SELECT %(comparison_id)s, 'foreign', %(stages)s, e.id, false, %(detail)s
    FROM extra AS e
)
SELECT count(*) FROM extra;

-- name: configured_ids_unique
-- How many ids a stage holds, when a unique index on the column says each row's is its
-- own.
SELECT count({id}) FROM {table};

-- name: configured_ids
-- How many distinct ids a stage holds.
SELECT count(*) FROM (SELECT DISTINCT {id}::text FROM {table} WHERE {id} IS NOT NULL) AS ids;

-- name: find_table
-- The table, view or materialized view a configured name means: in the given schema, or
-- else in the first schema of the search path that has one by that name.
SELECT n.nspname, c.relname, has_table_privilege(c.oid, 'SELECT') AS readable
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND c.relname = %(table)s
  AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(false))
           ELSE n.nspname = %(schema)s::text END
ORDER BY array_position(current_schemas(false), n.nspname::text)
LIMIT 1;

-- name: find_column
-- The column, and whether a single-column unique index without a predicate covers it.
SELECT a.attname,
       EXISTS (SELECT 1 FROM pg_catalog.pg_index AS i
               WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1
                 AND i.indkey[0] = a.attnum AND i.indpred IS NULL AND i.indexprs IS NULL)
           AS is_unique
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attname = %(column)s
  AND a.attnum > 0 AND NOT a.attisdropped;

-- name: insert_source
INSERT INTO ledgerflow.data_sources
    (name, source_schema, source_table, source_id_column, persistency_schema,
     persistency_table, persistency_id_column, target_schema, target_table,
     target_id_column, created_by)
VALUES (%(name)s, %(source_schema)s, %(source_table)s, %(source_id)s,
        %(persistency_schema)s, %(persistency_table)s, %(persistency_id)s,
        %(target_schema)s, %(target_table)s, %(target_id)s, %(created_by)s)
RETURNING created_at;

-- name: sources
SELECT name, source_schema, source_table, source_id_column, persistency_schema,
       persistency_table, persistency_id_column, target_schema, target_table,
       target_id_column, created_by, created_at
FROM ledgerflow.data_sources
WHERE %(name)s::text IS NULL OR name = %(name)s::text
ORDER BY name;

-- name: delete_source
DELETE FROM ledgerflow.data_sources WHERE name = %(name)s RETURNING name;
