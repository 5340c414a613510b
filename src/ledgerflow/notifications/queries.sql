-- Named queries of the notification log.
-- Each starts with "-- name: <name>".

-- name: record_attempt
INSERT INTO ledgerflow.notifications
    (event, subject, body, channel, target, status, error, detail)
VALUES (%(event)s, %(subject)s, %(body)s, %(channel)s, %(target)s, %(status)s, %(error)s,
        %(detail)s);

-- name: notification_log
-- Newest first; a page after the first starts below the row whose id it was given.
SELECT id, at, event, channel, target, status, error, subject
FROM ledgerflow.notifications
WHERE %(before)s::bigint IS NULL
   OR (at, id) < (SELECT at, id FROM ledgerflow.notifications WHERE id = %(before)s::bigint)
ORDER BY at DESC, id DESC
LIMIT %(limit)s;

-- name: enqueue_mail
INSERT INTO ledgerflow.outbox (event, recipients, subject, text_body, html_body, detail)
VALUES (%(event)s, %(recipients)s, %(subject)s, %(text_body)s, %(html_body)s, %(detail)s)
RETURNING id;

-- name: due_mail
-- The mails to try now, oldest first; another sender's are skipped, not waited for.
SELECT id, event, recipients, subject, text_body, html_body, detail, attempts
FROM ledgerflow.outbox
WHERE status = 'pending' AND next_attempt_at <= now()
ORDER BY next_attempt_at, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: mail_attempted
UPDATE ledgerflow.outbox
SET attempts = attempts + 1,
    status = %(status)s,
    sent_at = CASE WHEN %(status)s = 'sent' THEN clock_timestamp() END,
    next_attempt_at = coalesce(%(next_at)s::timestamptz, next_attempt_at),
    last_error = %(error)s
WHERE id = %(id)s;

-- name: outbox
SELECT id, event, recipients, subject, status, attempts, created_at, sent_at,
       next_attempt_at, last_error, detail
FROM ledgerflow.outbox
WHERE starts_with(event, %(prefix)s)
  AND (%(detail)s::jsonb IS NULL OR detail @> %(detail)s::jsonb)
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s;
