-- People and machines: users with a role, API tokens with scopes, console sessions, and
-- the audit log of sign-ins and of every change a person or a token makes.
CREATE TABLE ledgerflow.users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    role TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'analyst', 'viewer')),
    email TEXT,
    password_hash TEXT,  -- argon2id; NULL: signs in only through the trusted proxy
    failed_sign_ins INTEGER NOT NULL DEFAULT 0,
    locked_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ledgerflow.api_tokens (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 BYTEA NOT NULL UNIQUE,  -- the token itself is shown once, never stored
    prefix TEXT NOT NULL,                -- its first characters, to tell tokens apart
    scopes TEXT[] NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ
);

CREATE TABLE ledgerflow.sessions (
    id_sha256 BYTEA PRIMARY KEY,  -- the cookie's value is never stored
    user_id BIGINT NOT NULL REFERENCES ledgerflow.users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX sessions_expires_at_idx ON ledgerflow.sessions (expires_at);

CREATE TABLE ledgerflow.audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor TEXT NOT NULL,   -- a user's name, token:<name>, or cli:<operating-system user>
    action TEXT NOT NULL,  -- sign_in, sign_in_failed, sign_out, user.add, token.create, ...
    target TEXT,
    detail JSONB NOT NULL DEFAULT '{}',
    client TEXT            -- the client's address, as the server resolved it
);
CREATE INDEX audit_log_at_idx ON ledgerflow.audit_log (at);
