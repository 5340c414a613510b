-- The schema store (treasury/registry.py): Avro schemas by id, and the versions of each
-- subject (migration 025).

-- name: lock_subject
-- Held until the registration commits: one registration per subject at a time.
SELECT pg_advisory_xact_lock(%(key)s, hashtext(%(subject)s));

-- name: schema_by_id
SELECT schema_text FROM ledgerflow.avro_schemas WHERE id = %(id)s;

-- name: subject_schema_id
-- The id of this schema if the subject has it already (at any version).
SELECT s.id
FROM ledgerflow.avro_subject_versions v
JOIN ledgerflow.avro_schemas s ON s.id = v.schema_id
WHERE v.subject = %(subject)s AND s.fingerprint = %(fingerprint)s;

-- name: latest_version
SELECT v.version, s.id, s.schema_text
FROM ledgerflow.avro_subject_versions v
JOIN ledgerflow.avro_schemas s ON s.id = v.schema_id
WHERE v.subject = %(subject)s
ORDER BY v.version DESC
LIMIT 1;

-- name: add_schema
-- The schema's id: the existing one (the schema is registered under another subject), or
-- a new one. DO UPDATE rather than DO NOTHING, so that a row another registration has just
-- committed is returned too.
WITH found AS (
    SELECT id FROM ledgerflow.avro_schemas WHERE fingerprint = %(fingerprint)s
), added AS (
    INSERT INTO ledgerflow.avro_schemas (fingerprint, schema_text)
    SELECT %(fingerprint)s, %(text)s
    WHERE NOT EXISTS (SELECT 1 FROM found)
    ON CONFLICT (fingerprint) DO UPDATE SET fingerprint = EXCLUDED.fingerprint
    RETURNING id
)
SELECT id FROM found UNION ALL SELECT id FROM added;

-- name: add_version
-- The subject's next version (the caller holds the subject's lock).
INSERT INTO ledgerflow.avro_subject_versions (subject, version, schema_id)
SELECT %(subject)s, coalesce(max(version), 0) + 1, %(schema_id)s
FROM ledgerflow.avro_subject_versions
WHERE subject = %(subject)s;
