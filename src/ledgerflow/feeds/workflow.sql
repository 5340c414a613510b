-- Named queries of feed onboarding (ledgerflow.feeds.workflow and letters).

-- name: feed
SELECT * FROM ledgerflow.feeds WHERE id = %(id)s;

-- name: feed_for_update
SELECT * FROM ledgerflow.feeds WHERE id = %(id)s FOR UPDATE;

-- name: update_feed
UPDATE ledgerflow.feeds
SET state = %(state)s,
    loader_name = %(loader_name)s,
    frequency = %(frequency)s,
    data_type = %(data_type)s,
    upstream_app_id = %(upstream_app_id)s,
    upstream_app_name = %(upstream_app_name)s,
    persistency_schema = %(persistency_schema)s,
    persistency_table = %(persistency_table)s,
    regulatory = %(regulatory)s,
    used_by_models = %(used_by_models)s,
    review_note = %(review_note)s,
    described_by = %(described_by)s,
    reviewed_by = %(reviewed_by)s,
    updated_at = clock_timestamp()
WHERE id = %(id)s
RETURNING *;

-- name: record_step
INSERT INTO ledgerflow.feed_events (feed_id, actor, from_state, to_state, changes)
VALUES (%(feed_id)s, %(actor)s, %(from_state)s, %(to_state)s, %(changes)s);

-- name: trail
SELECT at, actor, from_state, to_state, changes
FROM ledgerflow.feed_events WHERE feed_id = %(id)s ORDER BY at, id;

-- name: role_addresses
-- The addresses of the users holding a role, where they gave one.
SELECT DISTINCT email FROM ledgerflow.users
WHERE role = %(role)s AND email IS NOT NULL AND btrim(email) <> ''
ORDER BY email;

-- name: feeds_in
-- The feeds in some states, the latest change first.
SELECT * FROM ledgerflow.feeds
WHERE state = ANY(%(states)s)
ORDER BY updated_at DESC, id DESC
LIMIT %(limit)s;

-- name: describers
-- Everyone who described a feed or sent it to review: none of them may review it.
SELECT DISTINCT actor FROM ledgerflow.feed_events
WHERE feed_id = %(id)s AND changes->>'step' IN ('describe', 'submit');
