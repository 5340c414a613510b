-- Named queries of the treasury's liquidity (liquidity.py, instruments.py, adjustments.py),
-- loaded by ledgerflow.db.queries. %(day)s is the as-of date (UTC), %(last_day)s the last
-- day of the stress period.

-- name: begin_snapshot
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: currency_prices
-- The currencies of the reference data: each one's price, in its quote currency.
SELECT instrument, currency, price
FROM ledgerflow.instruments WHERE asset_class = 'currency' ORDER BY instrument;

-- name: settled_cash
-- Cash per currency over every book as the ledger holds it (trade date), and the part of
-- it FX trades settling after the as-of date leave unsettled: that part is a flow, not
-- cash, until then.
SELECT currency, coalesce(sum(held), 0) AS held, coalesce(sum(unsettled), 0) AS unsettled
FROM (
    SELECT currency, amount AS held, NULL::numeric AS unsettled FROM ledgerflow.cash_positions
    UNION ALL
    SELECT currency, NULL, settlement_amount FROM ledgerflow.trades
    WHERE asset_class = 'fx' AND settlement_date > %(day)s
) AS cash
GROUP BY currency ORDER BY currency;

-- name: held_cash
-- Some currencies' cash over every book (trade date).
SELECT currency, sum(amount) AS held FROM ledgerflow.cash_positions
WHERE currency = ANY(%(currencies)s::text[])
GROUP BY currency;

-- name: positions
-- Every position with its reference data (null when there is none), whether it holds FX
-- (a currency bought or sold) or interbank claims, and the part of it unsettled on the
-- as-of date (FX only, as above). The FX and interbank trades are read once, grouped by
-- book and instrument, not once a position.
WITH kinds AS (
    SELECT book, instrument,
           bool_or(asset_class = 'fx') AS fx,
           bool_or(asset_class = 'interbank') AS interbank,
           sum(CASE WHEN asset_class = 'fx' AND settlement_date > %(day)s
                    THEN CASE side WHEN 'buy' THEN quantity ELSE -quantity END END) AS unsettled
    FROM ledgerflow.trades
    WHERE asset_class IN ('fx', 'interbank')
    GROUP BY book, instrument
)
SELECT p.book, p.instrument, p.quantity,
       i.asset_class, i.hqla_level, i.haircut_category, i.currency, i.price,
       coalesce(k.fx, false) AS fx,
       coalesce(k.interbank, false) AS interbank,
       coalesce(k.unsettled, 0) AS unsettled
FROM ledgerflow.positions p
LEFT JOIN ledgerflow.instruments i ON i.instrument = p.instrument
LEFT JOIN kinds k ON k.book = p.book AND k.instrument = p.instrument
ORDER BY p.instrument, p.book;

-- name: held_positions
-- Some instruments' positions in every book, with their reference data.
SELECT p.book, p.instrument, p.quantity,
       i.asset_class, i.hqla_level, i.haircut_category, i.currency, i.price
FROM ledgerflow.positions p
LEFT JOIN ledgerflow.instruments i ON i.instrument = p.instrument
WHERE p.instrument = ANY(%(instruments)s::text[])
ORDER BY p.instrument, p.book;

-- name: horizon_trades
-- The trades whose cash moves within the stress period: repos and interbank deals
-- maturing from the as-of date on, FX trades settling after it; with the reference data
-- of a repo's collateral.
SELECT t.trade_id, t.book, t.instrument, t.asset_class, t.side, t.quantity, t.currency,
       t.settlement_amount, t.settlement_date, t.maturity_date, t.counterparty_type,
       t.collateral_instrument,
       i.hqla_level, i.haircut_category, i.currency AS collateral_currency, i.price
FROM ledgerflow.trades t
LEFT JOIN ledgerflow.instruments i ON i.instrument = t.collateral_instrument
WHERE (t.asset_class IN ('repo', 'interbank')
       AND t.maturity_date BETWEEN %(day)s AND %(last_day)s)
   OR (t.asset_class = 'fx' AND t.settlement_date > %(day)s
       AND t.settlement_date <= %(last_day)s)
ORDER BY t.trade_id;

-- name: stream_offsets
-- Where each stream's reading stands: the trades below its next offset are stored.
SELECT stream, next_offset FROM ledgerflow.stream_offsets;

-- name: trades_since
-- The trades stored from one stream at or after an offset (what the batches since then
-- touched), as horizon_trades reads a trade. One stream at a time, its name and offset
-- given as values: the planner takes the (stream, stream_offset) index even when its
-- statistics predate the day's trades.
SELECT t.trade_id, t.book, t.instrument, t.asset_class, t.side, t.quantity, t.currency,
       t.settlement_amount, t.settlement_date, t.maturity_date, t.counterparty_type,
       t.collateral_instrument,
       i.hqla_level, i.haircut_category, i.currency AS collateral_currency, i.price
FROM ledgerflow.trades t
LEFT JOIN ledgerflow.instruments i ON i.instrument = t.collateral_instrument
WHERE t.stream = %(stream)s AND t.stream_offset >= %(next_offset)s
ORDER BY t.stream_offset;

-- name: reference_version
SELECT version FROM ledgerflow.treasury_versions WHERE name = 'instruments';

-- name: balances
SELECT category, amount, currency FROM ledgerflow.treasury_balances ORDER BY category;

-- name: set_balance
INSERT INTO ledgerflow.treasury_balances (category, amount, currency, updated_by)
VALUES (%(category)s, %(amount)s, %(currency)s, %(by)s)
ON CONFLICT (category) DO UPDATE
SET amount = excluded.amount, currency = excluded.currency,
    updated_by = excluded.updated_by, updated_at = clock_timestamp();

-- name: adjustments_in_force
-- The overrides in force at %(at)s, oldest first: a later one on the same target wins.
SELECT kind, target, level, haircut_category
FROM ledgerflow.treasury_adjustments
WHERE valid_from <= %(at)s AND %(at)s < valid_until
  AND (ended_at IS NULL OR ended_at > %(at)s)
ORDER BY created_at, id;

-- name: record_lcr
INSERT INTO ledgerflow.lcr_history (minute, adjusted, figures)
SELECT %(minute)s, * FROM unnest(%(adjusted)s::boolean[], %(figures)s::jsonb[])
ON CONFLICT (minute, adjusted) DO UPDATE
SET figures = excluded.figures, recorded_at = clock_timestamp();

-- name: lcr_at
SELECT minute, figures FROM ledgerflow.lcr_history
WHERE adjusted = %(adjusted)s AND minute <= %(at)s
ORDER BY minute DESC LIMIT 1;

-- name: lcr_history
SELECT minute, figures FROM ledgerflow.lcr_history
WHERE adjusted = %(adjusted)s AND minute >= %(since)s AND minute < %(until)s
ORDER BY minute;

-- name: load_instruments
INSERT INTO ledgerflow.instruments AS i
    (instrument, asset_class, issuer_type, hqla_level, haircut_category, currency, price)
SELECT * FROM unnest(
    %(instruments)s::text[], %(asset_classes)s::text[], %(issuer_types)s::text[],
    %(levels)s::text[], %(categories)s::text[], %(currencies)s::text[],
    %(prices)s::numeric[])
ON CONFLICT (instrument) DO UPDATE
SET asset_class = excluded.asset_class, issuer_type = excluded.issuer_type,
    hqla_level = excluded.hqla_level, haircut_category = excluded.haircut_category,
    currency = excluded.currency, price = excluded.price, updated_at = now();

-- name: instrument_class
SELECT asset_class FROM ledgerflow.instruments WHERE instrument = %(target)s;

-- name: trade_class
SELECT asset_class FROM ledgerflow.trades WHERE trade_id = %(target)s;

-- name: add_adjustment
INSERT INTO ledgerflow.treasury_adjustments
    (kind, target, level, haircut_category, valid_from, valid_until, reason, created_by,
     effect)
VALUES (%(kind)s, %(target)s, %(level)s, %(haircut_category)s, %(valid_from)s,
        %(valid_until)s, %(reason)s, %(by)s, %(effect)s)
RETURNING id, kind, target, level, haircut_category, valid_from, valid_until, reason,
          created_by, created_at, ended_at, ended_by, effect;

-- name: end_adjustment
UPDATE ledgerflow.treasury_adjustments SET ended_at = %(at)s, ended_by = %(by)s
WHERE id = %(id)s AND ended_at IS NULL
RETURNING id, kind, target, level, haircut_category, valid_from, valid_until, reason,
          created_by, created_at, ended_at, ended_by, effect;

-- name: adjustment_exists
SELECT ended_at FROM ledgerflow.treasury_adjustments WHERE id = %(id)s;

-- name: adjustments
-- Those not over at %(at)s (in force or to come), or every one: newest first.
SELECT id, kind, target, level, haircut_category, valid_from, valid_until, reason,
       created_by, created_at, ended_at, ended_by, effect
FROM ledgerflow.treasury_adjustments
WHERE %(include_ended)s
   OR (valid_until > %(at)s AND (ended_at IS NULL OR ended_at > %(at)s))
ORDER BY created_at DESC, id DESC;
