-- Notifications: one row per delivery attempt per channel (an email to the configured
-- recipients, a POST to one webhook), sent or failed, so that people can see what they
-- were told and when a channel stopped working without searching the logs.
CREATE TABLE ledgerflow.notifications (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    event TEXT NOT NULL,    -- rule_changed, comparison_unexplained, publishing_stopped, test, ...
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    channel TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    -- The recipients, or the webhook's URL without its user, password, query and fragment:
    -- the log is shown in the console, the secrets stay in the configuration.
    target TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('sent', 'failed')),
    error TEXT,             -- why it failed; NULL when sent
    detail JSONB            -- what the event carried; amounts as strings, exact
);
-- The console pages newest first by (at, id); the id breaks ties within a transaction.
CREATE INDEX notifications_at_idx ON ledgerflow.notifications (at, id);
