-- Recognising redelivered messages that have no message_id: a message the previous leader
-- committed but whose acknowledgement RabbitMQ never processed comes back with the
-- redelivered flag; it is recorded with the outcome 'redelivered' and stored nothing.
ALTER TABLE ledgerflow_messages DROP CONSTRAINT ledgerflow_messages_outcome_check;
ALTER TABLE ledgerflow_messages ADD CONSTRAINT ledgerflow_messages_outcome_check
    CHECK (outcome IN ('stored', 'rejected', 'duplicate', 'redelivered'));
ALTER TABLE ledgerflow_batches ADD COLUMN redelivered_count INTEGER NOT NULL DEFAULT 0;
CREATE INDEX ledgerflow_batches_queue_idx ON ledgerflow_batches (queue, id);

-- A redelivery repeats the message_id of the message it repeats.
DROP INDEX ledgerflow_messages_message_id_key;
CREATE UNIQUE INDEX ledgerflow_messages_message_id_key
    ON ledgerflow_messages (message_id)
    WHERE message_id IS NOT NULL AND outcome IN ('stored', 'rejected');
