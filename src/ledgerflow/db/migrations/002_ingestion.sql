-- What ledgerflow records about every message it consumes.

-- One row per committed batch: what one consumer transaction took from the queue.
CREATE TABLE ledgerflow_batches (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL,
    leader_term BIGINT NOT NULL,
    instance TEXT NOT NULL,
    message_count INTEGER NOT NULL,
    stored_count INTEGER NOT NULL,
    rejected_count INTEGER NOT NULL,
    duplicate_count INTEGER NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Messages that could not be stored, with everything needed to understand and replay them.
CREATE TABLE rejected_messages (
    id BIGSERIAL PRIMARY KEY,
    queue TEXT NOT NULL,
    message_id TEXT,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    body BYTEA NOT NULL,
    properties JSONB NOT NULL,
    received_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX rejected_messages_reason_idx ON rejected_messages (reason);

-- One row per consumed message, in queue order within its batch: the lineage from the
-- queue to historical_transactions or rejected_messages, and the memory that recognises
-- a redelivered message.
CREATE TABLE ledgerflow_messages (
    id BIGSERIAL PRIMARY KEY,
    batch_id BIGINT NOT NULL REFERENCES ledgerflow_batches(id),
    position INTEGER NOT NULL,
    message_id TEXT,
    redelivered BOOLEAN NOT NULL,
    body_sha256 BYTEA NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('stored', 'rejected', 'duplicate')),
    transaction_id INTEGER,
    rejected_id BIGINT REFERENCES rejected_messages(id),
    UNIQUE (batch_id, position)
);
CREATE UNIQUE INDEX ledgerflow_messages_message_id_key
    ON ledgerflow_messages (message_id)
    WHERE message_id IS NOT NULL AND outcome <> 'duplicate';
CREATE INDEX ledgerflow_messages_transaction_id_idx
    ON ledgerflow_messages (transaction_id) WHERE transaction_id IS NOT NULL;
