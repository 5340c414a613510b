-- Named queries of the feeds domain, loaded by ledgerflow.db.queries.

-- name: record_load
INSERT INTO ledgerflow.loads
    (source, table_name, row_count, status, started_at, finished_at, reported_by)
VALUES (%(source)s, %(table_name)s, %(row_count)s, %(status)s, %(started_at)s,
        %(finished_at)s, %(reported_by)s)
RETURNING id, reported_at;

-- name: detect
-- Every (source, table) pair with a successful load and no feed yet becomes a feed,
-- dated by its first successful load. The pairs are ledgerflow.load_pairs (as many index
-- descents as there are pairs, however long the history) and those of another loader's
-- mapped load log, if any (``mapped``: no rows without one); the date is looked up, by
-- index, only for the pairs that are new. One transaction at a time detects (the
-- advisory lock below), so two instances never race; the unique key settles the rest.
WITH mapped AS (
    {mapped}
),
pairs AS (
    SELECT p.source, p.table_name FROM ledgerflow.load_pairs AS p
    UNION
    SELECT m.source, m.table_name FROM mapped AS m
)
INSERT INTO ledgerflow.feeds (source, table_name, first_load_at)
SELECT n.source, n.table_name,
       least(ledgerflow.first_load_at(n.source, n.table_name), m.first_load_at)
FROM pairs AS n
LEFT JOIN mapped AS m ON m.source = n.source AND m.table_name = n.table_name
WHERE NOT EXISTS (
    SELECT 1 FROM ledgerflow.feeds AS f
    WHERE f.source = n.source AND f.table_name = n.table_name
)
ON CONFLICT (source, table_name) DO NOTHING
RETURNING id, source, table_name, state, first_load_at, detected_at;

-- name: detect_lock
SELECT pg_advisory_xact_lock(%(key)s);

-- name: feeds
SELECT id, source, table_name, state, first_load_at, detected_at
FROM ledgerflow.feeds ORDER BY detected_at DESC, id DESC LIMIT %(limit)s;

-- name: view_definition
-- The SELECT a view stands for, where the database has such a view.
SELECT pg_get_viewdef(c.oid, true)
FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(name)s AND c.relkind IN ('v', 'm');

-- name: insert_model
INSERT INTO ledgerflow.models (name, sql, registered_by)
VALUES (%(name)s, %(sql)s, %(by)s)
ON CONFLICT (name) DO UPDATE
SET sql = excluded.sql, registered_by = excluded.registered_by, registered_at = now()
RETURNING id;

-- name: forget_model_tables
DELETE FROM ledgerflow.model_tables WHERE model_id = %(model_id)s;

-- name: insert_model_tables
INSERT INTO ledgerflow.model_tables (model_id, table_name, via)
SELECT %(model_id)s, t, v FROM unnest(%(tables)s::text[], %(vias)s::text[]) AS m(t, v);

-- name: models
SELECT m.name, m.registered_by, m.registered_at,
       coalesce(array_agg(t.table_name ORDER BY t.table_name)
                FILTER (WHERE t.table_name IS NOT NULL), '{}') AS tables
FROM ledgerflow.models AS m
LEFT JOIN ledgerflow.model_tables AS t ON t.model_id = m.id
GROUP BY m.id ORDER BY m.name;
