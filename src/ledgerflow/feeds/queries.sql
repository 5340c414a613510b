-- Named queries of the feeds domain, loaded by ledgerflow.db.queries.

-- name: record_load
INSERT INTO ledgerflow.loads
    (source, table_name, row_count, status, started_at, finished_at, reported_by)
VALUES (%(source)s, %(table_name)s, %(row_count)s, %(status)s, %(started_at)s,
        %(finished_at)s, %(reported_by)s)
RETURNING id, reported_at;

-- name: detect
-- Every (source, table) pair with a successful load and no feed yet becomes a feed,
-- dated by its first successful load. One transaction at a time detects (the advisory
-- lock below), so two instances never race; the unique key settles the rest.
INSERT INTO ledgerflow.feeds (source, table_name, first_load_at)
SELECT source, table_name, min(finished_at)
FROM ledgerflow.load_log AS l
WHERE status = 'succeeded'
  AND NOT EXISTS (
      SELECT 1 FROM ledgerflow.feeds AS f
      WHERE f.source = l.source AND f.table_name = l.table_name
  )
GROUP BY source, table_name
ON CONFLICT (source, table_name) DO NOTHING
RETURNING id, source, table_name, state, first_load_at, detected_at;

-- name: detect_lock
SELECT pg_advisory_xact_lock(%(key)s);

-- name: feeds
SELECT id, source, table_name, state, first_load_at, detected_at
FROM ledgerflow.feeds ORDER BY detected_at DESC, id DESC LIMIT %(limit)s;
