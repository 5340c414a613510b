-- domain: treasury
-- How far each stream's normalised trades were written on to trades.normalised: the
-- worker writes a batch's after its commit and moves this after the send, so that after
-- a crash in between it reads the stream again from here and writes them again (at least
-- once, as docs/treasury.md says).
ALTER TABLE ledgerflow.stream_offsets ADD COLUMN normalised_to BIGINT;
UPDATE ledgerflow.stream_offsets SET normalised_to = next_offset;
ALTER TABLE ledgerflow.stream_offsets ALTER COLUMN normalised_to SET NOT NULL;
