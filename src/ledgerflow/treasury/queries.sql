-- Named queries of the treasury domain, loaded by ledgerflow.db.queries.

-- name: ensure_offset
INSERT INTO ledgerflow.stream_offsets (stream, next_offset, normalised_to)
VALUES (%(stream)s, 0, 0)
ON CONFLICT (stream) DO NOTHING;

-- name: lock_offset
-- The stream's next offset, locked until the batch's transaction ends: one writer per
-- stream at a time, and the offset moves only with what the batch stored.
SELECT next_offset FROM ledgerflow.stream_offsets WHERE stream = %(stream)s FOR UPDATE;

-- name: next_offset
SELECT next_offset FROM ledgerflow.stream_offsets WHERE stream = %(stream)s;

-- name: store_trades
-- The batch's trades, once each (a trade id seen before is a duplicate), and what they
-- add to positions and cash, in one statement.
WITH new AS (
    INSERT INTO ledgerflow.trades
        (trade_id, source, stream, stream_offset, book, instrument, asset_class, side,
         quantity, price, currency, settlement_amount, trade_time, settlement_date,
         maturity_date, counterparty_type, collateral_instrument, rate)
    SELECT * FROM unnest(
        %(trade_ids)s::text[], %(sources)s::text[], %(streams)s::text[],
        %(offsets)s::bigint[], %(books)s::text[], %(instruments)s::text[],
        %(asset_classes)s::text[], %(sides)s::text[], %(quantities)s::numeric[],
        %(prices)s::numeric[], %(currencies)s::text[], %(settlement_amounts)s::numeric[],
        %(trade_times)s::timestamptz[], %(settlement_dates)s::date[],
        %(maturity_dates)s::date[], %(counterparty_types)s::text[],
        %(collateral_instruments)s::text[], %(rates)s::numeric[])
    ON CONFLICT (trade_id) DO NOTHING
    RETURNING trade_id, stream_offset, book, instrument, side, quantity, currency,
              settlement_amount
), moved AS (
    INSERT INTO ledgerflow.positions AS p (book, instrument, quantity)
    SELECT book, instrument,
           sum(CASE side WHEN 'buy' THEN quantity ELSE -quantity END)
    FROM new GROUP BY book, instrument
    ON CONFLICT (book, instrument) DO UPDATE
    SET quantity = p.quantity + excluded.quantity, updated_at = clock_timestamp()
    RETURNING 1
), paid AS (
    INSERT INTO ledgerflow.cash_positions AS c (book, currency, amount)
    SELECT book, currency, sum(settlement_amount) FROM new GROUP BY book, currency
    ON CONFLICT (book, currency) DO UPDATE
    SET amount = c.amount + excluded.amount, updated_at = clock_timestamp()
    RETURNING 1
)
SELECT (SELECT array_agg(trade_id ORDER BY stream_offset) FROM new) AS stored,
       (SELECT count(*) FROM moved) AS positions,
       (SELECT count(*) FROM paid) AS cash;

-- name: move_offset
UPDATE ledgerflow.stream_offsets
SET next_offset = %(next_offset)s, updated_at = clock_timestamp()
WHERE stream = %(stream)s;

-- name: treasury_sources
SELECT source, stream, since, control FROM ledgerflow.treasury_sources ORDER BY source;

-- name: ensure_sources
INSERT INTO ledgerflow.treasury_sources (source, stream)
SELECT * FROM unnest(%(sources)s::text[], %(streams)s::text[])
ON CONFLICT (source) DO NOTHING;

-- name: swap_source
UPDATE ledgerflow.treasury_sources
SET stream = %(stream)s, since = clock_timestamp(), control = %(control)s
WHERE source = %(source)s;

-- name: start_offset
-- Where a stream never read starts, as a control message says; a stream read before
-- resumes where it stopped.
INSERT INTO ledgerflow.stream_offsets (stream, next_offset, normalised_to)
VALUES (%(stream)s, %(next_offset)s, %(next_offset)s)
ON CONFLICT (stream) DO NOTHING;

-- name: source_status
SELECT s.source, s.stream, s.since, s.control, coalesce(o.next_offset, 0) AS next_offset,
       (SELECT count(*) FROM ledgerflow.rejected_messages AS r
        WHERE r.queue = 'stream:' || s.stream) AS rejected
FROM ledgerflow.treasury_sources AS s
LEFT JOIN ledgerflow.stream_offsets AS o ON o.stream = s.stream
ORDER BY s.source;

-- name: refused_controls
SELECT message_id, reason, detail, received_at
FROM ledgerflow.rejected_messages WHERE queue = %(queue)s
ORDER BY id DESC LIMIT 10;

-- name: unknown_instruments
-- Held, and not in the reference data: counted in no HQLA level until it is loaded. An
-- interbank deal's "instrument" is its counterparty: it counts by its flows, not held.
SELECT p.instrument, sum(p.quantity) AS quantity, array_agg(p.book ORDER BY p.book) AS books
FROM ledgerflow.positions AS p
WHERE NOT EXISTS (SELECT 1 FROM ledgerflow.instruments AS i WHERE i.instrument = p.instrument)
  AND NOT EXISTS (SELECT 1 FROM ledgerflow.trades AS t
                  WHERE t.instrument = p.instrument AND t.asset_class = 'interbank')
  AND p.quantity <> 0
GROUP BY p.instrument ORDER BY p.instrument;

-- name: positions
SELECT p.book, p.instrument, p.quantity, i.hqla_level,
       coalesce(i.asset_class, d.asset_class) AS asset_class,
       i.instrument IS NULL AND d.asset_class IS NULL AS unknown_instrument
FROM ledgerflow.positions AS p
LEFT JOIN ledgerflow.instruments AS i ON i.instrument = p.instrument
LEFT JOIN LATERAL (
    SELECT 'interbank'::text AS asset_class FROM ledgerflow.trades AS t
    WHERE t.instrument = p.instrument AND t.asset_class = 'interbank' LIMIT 1
) AS d ON true
ORDER BY p.book, p.instrument;

-- name: cash_positions
SELECT book, currency, amount FROM ledgerflow.cash_positions ORDER BY book, currency;

-- name: normalised_sent
-- The stream's normalised trades are written on up to this offset.
UPDATE ledgerflow.stream_offsets SET normalised_to = greatest(normalised_to, %(to)s)
WHERE stream = %(stream)s;

-- name: normalised_behind
-- Streams whose stored trades were not all written on (a crash after a batch's commit),
-- with the source that read them.
SELECT o.stream, o.normalised_to, o.next_offset,
       (SELECT t.source FROM ledgerflow.trades t WHERE t.stream = o.stream LIMIT 1) AS source
FROM ledgerflow.stream_offsets o
WHERE o.normalised_to < o.next_offset
ORDER BY o.stream;
