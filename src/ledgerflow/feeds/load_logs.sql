-- Named queries of another loader's load log (ledgerflow.feeds.load_logs). They are
-- templates: the names in braces are filled by psycopg.sql, its column and table names
-- quoted as identifiers and the status values as literals.

-- name: load_log
-- The mapped table as rows of ledgerflow.load_log: a status among the values meaning
-- success (compared as text) is 'succeeded', any other (or none) 'failed'.
SELECT {source}::text AS source,
       {table_name} AS table_name,
       {row_count} AS row_count,
       CASE WHEN {status}::text IN ({succeeded}) THEN 'succeeded' ELSE 'failed' END AS status,
       {started_at} AS started_at,
       {finished_at} AS finished_at,
       {reference}::text AS reference
FROM {relation}

-- name: load_pairs
-- Each (source, table) the mapped table logs a successful load of, with its first (what
-- dates a new feed) and its last (what tells whether an onboarded feed is stale). A row
-- without a source, a table or a finish time names no pair.
SELECT l.source, l.table_name, min(l.finished_at) AS first_load_at,
       max(l.finished_at) AS last_load_at
FROM ({load_log}) AS l
WHERE l.status = 'succeeded'
  AND l.source <> '' AND l.table_name <> '' AND l.finished_at IS NOT NULL
GROUP BY l.source, l.table_name

-- name: no_load_pairs
-- What load_pairs gives without a mapped table: no rows, of the same columns.
SELECT NULL::text AS source, NULL::text AS table_name, NULL::timestamptz AS first_load_at,
       NULL::timestamptz AS last_load_at
WHERE false
