-- Named queries of reconciliation (ledgerflow.feeds.reconcile): the tables production
-- models read against the tables onboarded feeds persist into.

-- name: reconcile_lock
SELECT pg_advisory_xact_lock(%(key)s);

-- name: reconcile_settings
-- The statement below is planned at a cost (its per-feed look-ups) that switches JIT
-- compilation on; compiling then takes longer than the run itself (a second of JIT for a
-- third of a second of work at 8,000 onboarded feeds). For this run's transaction only.
SET LOCAL jit = off;

-- name: reconcile
-- One statement: what is found now, upserted by (kind, table, feed), and what was open
-- and is found no more, closed. The CTEs all read the same snapshot, so ``prior`` is the
-- findings as they were before this run (what tells new and reopened ones apart), and
-- the upsert and the closing touch disjoint rows. Each onboarded feed is judged in one
-- pass over the feeds (its last load and its readers looked up by index), not by joining
-- CTEs to CTEs, whose sizes the planner cannot estimate. A template: ``mapped`` is
-- filled by psycopg.sql with the pairs another loader's mapped load log records a
-- successful load of (ledgerflow.feeds.load_logs: no rows without one), each with its
-- last; that log may have no index to look a feed up by, so it is grouped once and
-- joined, and a feed's last load is the later of the two logs'. (Hence no braces in
-- the text but the template's: an empty array is written ARRAY[].)
WITH clock AS (
    SELECT coalesce(%(now)s::timestamptz, now()) AS now
),
mapped AS (
    {mapped}
),
judged AS (
    SELECT f.id, f.source, f.table_name, f.frequency, p.target,
           greatest((SELECT max(l.finished_at) FROM ledgerflow.load_log AS l
                     WHERE l.source = f.source AND l.table_name = f.table_name
                       AND l.status = 'succeeded'),
                    x.last_load_at) AS last_load,
           (SELECT coalesce(array_agg(m.name ORDER BY m.name), ARRAY[]::text[])
            FROM ledgerflow.model_tables AS t
            JOIN ledgerflow.models AS m ON m.id = t.model_id
            WHERE t.table_name = p.target) AS models,
           to_regclass(format('%%I.%%I', f.persistency_schema, f.persistency_table)) IS NULL
               AS missing
    FROM ledgerflow.feeds AS f
    CROSS JOIN LATERAL (SELECT f.persistency_schema || '.' || f.persistency_table AS target) AS p
    LEFT JOIN mapped AS x ON x.source = f.source AND x.table_name = f.table_name
    WHERE f.state = 'onboarded'
      AND p.target IS NOT NULL  -- onboarding sets both; without them there is nothing to judge
),
found AS (
    SELECT 'gap' AS kind, t.table_name, NULL::bigint AS feed_id,
           array_agg(m.name ORDER BY m.name) AS models,
           format('read by %%s model%%s, no onboarded feed loads it', count(*),
                  CASE WHEN count(*) = 1 THEN '' ELSE 's' END) AS detail
    FROM ledgerflow.model_tables AS t
    JOIN ledgerflow.models AS m ON m.id = t.model_id
    WHERE NOT EXISTS (
        SELECT 1 FROM ledgerflow.feeds AS f
        WHERE f.state = 'onboarded'
          AND f.persistency_schema || '.' || f.persistency_table = t.table_name
    )
    GROUP BY t.table_name
    UNION ALL
    SELECT 'unused', j.target, j.id, ARRAY[]::text[],
           format('onboarded feed %%s (%%s) loads it, no model reads it', j.source, j.table_name)
    FROM judged AS j
    WHERE cardinality(j.models) = 0
    UNION ALL
    SELECT 'stale', j.target, j.id, j.models,
           CASE WHEN j.last_load IS NULL
                THEN format('no successful load on record, expected %%s', j.frequency)
                ELSE format('last successful load %%s, expected %%s',
                            to_char(j.last_load AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
                            j.frequency)
           END
    FROM judged AS j
    CROSS JOIN clock AS c
    WHERE j.frequency IS NOT NULL
      AND (j.last_load IS NULL
           OR j.last_load < c.now - 2 * CASE j.frequency
                                            WHEN '15 minutes' THEN interval '15 minutes'
                                            WHEN 'hourly' THEN interval '1 hour'
                                            WHEN 'daily' THEN interval '1 day'
                                            WHEN 'weekly' THEN interval '7 days'
                                            WHEN 'monthly' THEN interval '1 month'
                                        END)
    UNION ALL
    SELECT 'missing_table', j.target, j.id, j.models,
           format('onboarded feed %%s persists into it, no such table in the database',
                  j.source)
    FROM judged AS j
    WHERE j.missing
),
prior AS (
    SELECT n.kind, n.table_name, n.feed_id, p.id IS NULL OR p.closed_at IS NOT NULL AS new
    FROM found AS n
    LEFT JOIN ledgerflow.feed_findings AS p
      ON p.kind = n.kind AND p.table_name = n.table_name
     AND coalesce(p.feed_id, 0) = coalesce(n.feed_id, 0)
),
upserted AS (
    INSERT INTO ledgerflow.feed_findings AS x
        (kind, table_name, feed_id, models, detail, first_seen_at, last_seen_at)
    SELECT n.kind, n.table_name, n.feed_id, n.models, n.detail, c.now, c.now
    FROM found AS n CROSS JOIN clock AS c
    ON CONFLICT (kind, table_name, coalesce(feed_id, 0)) DO UPDATE
    SET models = excluded.models,
        detail = excluded.detail,
        last_seen_at = excluded.last_seen_at,
        closed_at = NULL,
        status = CASE WHEN x.closed_at IS NULL THEN x.status ELSE 'open' END,
        updated_by = CASE WHEN x.closed_at IS NULL THEN x.updated_by ELSE 'reconciliation' END,
        updated_at = CASE WHEN x.closed_at IS NULL THEN x.updated_at ELSE excluded.last_seen_at END
    RETURNING x.id, x.kind, x.table_name, x.feed_id
),
closed AS (
    UPDATE ledgerflow.feed_findings AS x
    SET closed_at = c.now,
        status = CASE WHEN x.status IN ('open', 'investigating') THEN 'resolved' ELSE x.status END,
        updated_by = CASE WHEN x.status IN ('open', 'investigating') THEN 'reconciliation'
                          ELSE x.updated_by END,
        updated_at = CASE WHEN x.status IN ('open', 'investigating') THEN c.now
                          ELSE x.updated_at END
    FROM clock AS c
    WHERE x.closed_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM found AS n
          WHERE n.kind = x.kind AND n.table_name = x.table_name
            AND coalesce(n.feed_id, 0) = coalesce(x.feed_id, 0)
      )
    RETURNING x.id
)
SELECT (SELECT now FROM clock) AS started_at,
       (SELECT count(DISTINCT table_name) FROM ledgerflow.model_tables) AS tables_read,
       (SELECT count(*) FROM judged) AS onboarded,
       (SELECT count(*) FROM upserted) AS found,
       (SELECT coalesce(array_agg(u.id ORDER BY u.id), ARRAY[]::bigint[])
        FROM upserted AS u
        JOIN prior AS p
          ON p.kind = u.kind AND p.table_name = u.table_name
         AND coalesce(p.feed_id, 0) = coalesce(u.feed_id, 0)
        WHERE p.new) AS new,
       (SELECT count(*) FROM closed) AS closed;

-- name: record_run
INSERT INTO ledgerflow.reconciliations
    (started_at, seconds, ran_by, tables_read, onboarded, found, new, closed)
VALUES (%(started_at)s, %(seconds)s, %(ran_by)s, %(tables_read)s, %(onboarded)s, %(found)s,
        %(new)s, %(closed)s)
RETURNING id;

-- name: last_run
SELECT id, started_at, seconds, ran_by, tables_read, onboarded, found, new AS new_count, closed
FROM ledgerflow.reconciliations
ORDER BY id DESC
LIMIT 1;

-- name: findings
-- Active ones (open, investigating) first, then by kind in the order given, then table
-- (byte order: the same on every server).
SELECT x.id, x.kind, x.table_name, x.feed_id, f.source AS feed_source, x.models, x.detail,
       x.status, x.owner, x.first_seen_at, x.last_seen_at, x.closed_at, x.updated_by,
       x.updated_at
FROM ledgerflow.feed_findings AS x
LEFT JOIN ledgerflow.feeds AS f ON f.id = x.feed_id
WHERE (%(statuses)s::text[] IS NULL OR x.status = ANY (%(statuses)s::text[]))
  AND (%(kind)s::text IS NULL OR x.kind = %(kind)s::text)
  AND (%(ids)s::bigint[] IS NULL OR x.id = ANY (%(ids)s::bigint[]))
ORDER BY x.status NOT IN ('open', 'investigating'), array_position(%(kinds)s::text[], x.kind),
         x.table_name COLLATE "C", x.feed_id NULLS FIRST, x.id
LIMIT %(limit)s;

-- name: update_finding
-- NULL leaves a field as it is; an empty owner clears it.
UPDATE ledgerflow.feed_findings
SET status = coalesce(%(status)s::text, status),
    owner = CASE WHEN %(owner)s::text IS NULL THEN owner ELSE nullif(%(owner)s::text, '') END,
    updated_by = %(actor)s,
    updated_at = now()
WHERE id = %(id)s
RETURNING id;
