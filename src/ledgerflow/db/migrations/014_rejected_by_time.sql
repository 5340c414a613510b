-- The console counts the rejected messages of the last hour on every overview: an index
-- on their arrival keeps that quick however many there are.
CREATE INDEX IF NOT EXISTS rejected_messages_received_at_idx
    ON ledgerflow.rejected_messages (received_at);
