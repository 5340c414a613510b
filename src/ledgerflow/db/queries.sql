-- Named queries of the shared database layer, loaded by ledgerflow.db.queries.
-- Each starts with "-- name: <name>".

-- name: ping
SELECT 1;

-- name: search_path_without_ledgerflow
-- The session's search path, in order, without ledgerflow's schema (named, or as "$user"
-- for a role called ledgerflow).
SELECT set_config(
    'search_path',
    coalesce(
        (SELECT string_agg(entry, ', ' ORDER BY position)
         FROM unnest(string_to_array(current_setting('search_path'), ','))
             WITH ORDINALITY AS path(raw, position),
             LATERAL (SELECT trim(raw) AS entry) AS trimmed
         WHERE entry NOT IN ('ledgerflow', '"ledgerflow"')
           AND NOT (entry = '"$user"' AND current_user = 'ledgerflow')),
        ''),
    false);

-- name: lock_migrations
SELECT pg_advisory_xact_lock(%(key)s);

-- name: create_schema
CREATE SCHEMA IF NOT EXISTS ledgerflow;

-- name: old_migrations_table
-- ledgerflow 0.1 kept its record of migrations in public.ledgerflow_migrations.
SELECT to_regclass('public.ledgerflow_migrations') IS NOT NULL
   AND to_regclass('ledgerflow.migrations') IS NULL;

-- name: move_old_migrations_table
ALTER TABLE public.ledgerflow_migrations SET SCHEMA ledgerflow;
ALTER TABLE ledgerflow.ledgerflow_migrations RENAME TO migrations;

-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS ledgerflow.migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM ledgerflow.migrations;

-- name: applied_migrations_before_010
SELECT version FROM public.ledgerflow_migrations;

-- name: record_migration
INSERT INTO ledgerflow.migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: insert_rejected
-- A domain's messages that cannot be used, with everything needed to understand and
-- replay them; returns their ids in input order (serial ids are drawn in input order).
INSERT INTO ledgerflow.rejected_messages
    (queue, message_id, reason, detail, body, properties, received_at)
SELECT %(queue)s, message_id, reason, detail, body, properties, received_at
FROM unnest(%(message_ids)s::text[], %(reasons)s::text[], %(details)s::text[],
            %(bodies)s::bytea[], %(properties)s::jsonb[], %(received_at)s::timestamptz[])
    AS r(message_id, reason, detail, body, properties, received_at)
RETURNING id;

-- name: rejected_summary
-- The total is kept by triggers (migration 015); the last hour is an index range.
SELECT (SELECT total FROM ledgerflow.rejected_total) AS total,
       (SELECT count(*) FROM ledgerflow.rejected_messages
        WHERE received_at > now() - interval '1 hour') AS last_hour;

-- name: rejected_page
-- The newest rejected messages first, filtered, one page after the id ``before``.
SELECT id, queue, message_id, reason, detail, body, received_at
FROM ledgerflow.rejected_messages
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(reason)s::text IS NULL OR reason = %(reason)s::text)
  AND (%(before)s::bigint IS NULL OR id < %(before)s::bigint)
ORDER BY id DESC
LIMIT %(limit)s;
