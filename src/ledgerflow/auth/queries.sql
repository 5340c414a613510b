-- Named queries of users, tokens, sessions and the audit log.
-- Each starts with "-- name: <name>".

-- name: add_user
INSERT INTO ledgerflow.users (name, role, email, password_hash)
VALUES (%(name)s, %(role)s, %(email)s, %(password_hash)s)
RETURNING id;

-- name: user_by_name
SELECT id, name, role, email, password_hash, failed_sign_ins,
       locked_until > now() AS locked,
       ceil(extract(epoch FROM locked_until - now()))::integer AS locked_for
FROM ledgerflow.users WHERE name = %(name)s;

-- name: users
SELECT name, role, email, password_hash IS NOT NULL AS has_password, created_at,
       locked_until > now() AS locked
FROM ledgerflow.users ORDER BY name;

-- name: set_password
UPDATE ledgerflow.users
SET password_hash = %(password_hash)s, failed_sign_ins = 0, locked_until = NULL
WHERE name = %(name)s;

-- name: sign_in_failed
-- Every attempt past the allowance locks the user for twice as long as the last one.
UPDATE ledgerflow.users
SET failed_sign_ins = failed_sign_ins + 1,
    locked_until = CASE WHEN failed_sign_ins + 1 >= %(attempts)s
        THEN now() + make_interval(secs => least(
            %(lockout)s * power(2, failed_sign_ins + 1 - %(attempts)s), 86400))
        END
WHERE id = %(id)s
RETURNING failed_sign_ins, locked_until > now() AS locked;

-- name: sign_in_succeeded
UPDATE ledgerflow.users SET failed_sign_ins = 0, locked_until = NULL WHERE id = %(id)s;

-- name: add_token
INSERT INTO ledgerflow.api_tokens (name, token_sha256, prefix, scopes, created_by)
VALUES (%(name)s, %(token_sha256)s, %(prefix)s, %(scopes)s, %(created_by)s);

-- name: token_by_hash
SELECT name, scopes FROM ledgerflow.api_tokens
WHERE token_sha256 = %(token_sha256)s AND revoked_at IS NULL;

-- name: token_used
UPDATE ledgerflow.api_tokens SET last_used_at = now()
WHERE token_sha256 = %(token_sha256)s
  AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');

-- name: tokens
SELECT name, prefix, scopes, created_by, created_at, last_used_at, revoked_at
FROM ledgerflow.api_tokens ORDER BY created_at, name;

-- name: revoke_token
UPDATE ledgerflow.api_tokens SET revoked_at = now()
WHERE name = %(name)s AND revoked_at IS NULL
RETURNING name;

-- name: add_session
INSERT INTO ledgerflow.sessions (id_sha256, user_id, csrf_token, expires_at)
VALUES (%(id_sha256)s, %(user_id)s, %(csrf_token)s,
        now() + make_interval(secs => %(seconds)s));

-- name: session_user
SELECT u.name, u.role, s.csrf_token
FROM ledgerflow.sessions AS s JOIN ledgerflow.users AS u ON u.id = s.user_id
WHERE s.id_sha256 = %(id_sha256)s AND s.expires_at > now();

-- name: end_session
DELETE FROM ledgerflow.sessions WHERE id_sha256 = %(id_sha256)s;

-- name: end_expired_sessions
DELETE FROM ledgerflow.sessions WHERE expires_at <= now();

-- name: audit
INSERT INTO ledgerflow.audit_log (actor, action, target, detail, client)
VALUES (%(actor)s, %(action)s, %(target)s, %(detail)s, %(client)s);

-- name: audit_log
SELECT at, actor, action, target, detail, client
FROM ledgerflow.audit_log ORDER BY id DESC LIMIT %(limit)s;
