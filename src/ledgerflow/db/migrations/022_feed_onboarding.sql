-- Feeds, part three: onboarding (the administrators' description, the analysts' review,
-- every step in an audit trail), mail that is retried until it is taken, and the findings
-- of reconciling the tables production models read against the onboarded feeds.

-- What the administrators record (described), and what the analysts decide (reviewed).
ALTER TABLE ledgerflow.feeds
    ADD COLUMN loader_name TEXT,
    ADD COLUMN frequency TEXT
        CHECK (frequency IN ('15 minutes', 'hourly', 'daily', 'weekly', 'monthly')),
    ADD COLUMN data_type TEXT,
    ADD COLUMN upstream_app_id TEXT,
    ADD COLUMN upstream_app_name TEXT,
    ADD COLUMN persistency_schema TEXT,
    ADD COLUMN persistency_table TEXT,
    ADD COLUMN regulatory TEXT CHECK (regulatory IN ('trade', 'pre_trade', 'market_data', 'none')),
    ADD COLUMN described_by TEXT,
    ADD COLUMN used_by_models BOOLEAN,
    ADD COLUMN review_note TEXT,
    ADD COLUMN reviewed_by TEXT,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
CREATE INDEX feeds_state_idx ON ledgerflow.feeds (state);
CREATE INDEX feeds_persistency_idx
    ON ledgerflow.feeds ((persistency_schema || '.' || persistency_table))
    WHERE state = 'onboarded';

-- The audit trail of each feed: one row per step, with who took it and what it changed.
CREATE TABLE ledgerflow.feed_events (
    id BIGSERIAL PRIMARY KEY,
    feed_id BIGINT NOT NULL REFERENCES ledgerflow.feeds(id) ON DELETE CASCADE,
    at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    actor TEXT NOT NULL,          -- a user's name, token:<name>, or ledgerflow (detection)
    from_state TEXT,              -- NULL for the detection itself
    to_state TEXT NOT NULL,
    changes JSONB NOT NULL DEFAULT '{}'  -- field: [before, after]
);
CREATE INDEX feed_events_feed_idx ON ledgerflow.feed_events (feed_id, at, id);

-- Mail waiting to be taken by the SMTP server: written in the transaction of the change
-- it tells of, sent after the commit, retried with growing delays until taken or until
-- its attempts run out. Each attempt is a row of ledgerflow.notifications.
CREATE TABLE ledgerflow.outbox (
    id BIGSERIAL PRIMARY KEY,
    event TEXT NOT NULL,
    recipients TEXT[] NOT NULL CHECK (cardinality(recipients) > 0),
    subject TEXT NOT NULL,
    text_body TEXT NOT NULL,
    html_body TEXT,
    detail JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'abandoned')),
    sent_at TIMESTAMPTZ,
    last_error TEXT
);
CREATE INDEX outbox_due_idx ON ledgerflow.outbox (next_attempt_at) WHERE status = 'pending';

-- What reconciliation found: one row per (kind, subject), kept across runs. A finding that
-- is no longer found is closed by the next run; one found again is opened again.
CREATE TABLE ledgerflow.feed_findings (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('gap', 'unused', 'stale', 'missing_table')),
    table_name TEXT NOT NULL,      -- schema.table the finding is about
    feed_id BIGINT REFERENCES ledgerflow.feeds(id) ON DELETE CASCADE,
    models TEXT[] NOT NULL DEFAULT '{}',  -- the models reading the table (gaps)
    detail TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'investigating', 'resolved', 'dismissed')),
    owner TEXT,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    closed_at TIMESTAMPTZ,          -- set when a run no longer finds it
    updated_by TEXT,
    updated_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX feed_findings_subject_idx
    ON ledgerflow.feed_findings (kind, table_name, coalesce(feed_id, 0));

-- One row: when reconciliation last ran, by whom, and how long it took.
CREATE TABLE ledgerflow.reconciliations (
    id BIGSERIAL PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    seconds DOUBLE PRECISION NOT NULL,
    ran_by TEXT NOT NULL,
    tables_read INTEGER NOT NULL,
    onboarded INTEGER NOT NULL,
    found INTEGER NOT NULL,
    new INTEGER NOT NULL,
    closed INTEGER NOT NULL
);
