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
