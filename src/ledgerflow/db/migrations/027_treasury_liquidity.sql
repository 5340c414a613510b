-- domain: treasury
-- The liquidity coverage ratio beyond the trades (treasury/liquidity.py): the balances
-- that run off without being trades, treasury's temporary overrides of the reference
-- data, and the ratio minute by minute.

-- Balances of run-off categories that are not trades (retail deposits stable and less
-- stable, operational deposits, non-financial corporates, ...): each one's outflow within
-- the stress period is its amount times its category's run-off rate.
CREATE TABLE ledgerflow.treasury_balances (
    category TEXT PRIMARY KEY,     -- an outflow category of treasury/lcr.py
    amount NUMERIC NOT NULL CHECK (amount >= 0),
    currency TEXT NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    updated_by TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Overrides of an instrument's HQLA level (kind 'instrument', target its id) or of one
-- repo's collateral (kind 'trade', target the trade id), in force from valid_from until
-- valid_until unless ended before. Rows are never deleted: they are the adjustments' trail.
CREATE TABLE ledgerflow.treasury_adjustments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('instrument', 'trade')),
    target TEXT NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('1', '2A', '2B', 'none')),
    haircut_category TEXT CHECK ((level = '2B') = (haircut_category IS NOT NULL)),
    valid_from TIMESTAMPTZ NOT NULL,
    valid_until TIMESTAMPTZ NOT NULL CHECK (valid_until > valid_from),
    reason TEXT NOT NULL CHECK (btrim(reason) <> ''),
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    ended_at TIMESTAMPTZ,
    ended_by TEXT,
    -- The LCR figures at creation without and with it: {"as_of", "without", "with"}.
    effect JSONB NOT NULL,
    CHECK ((ended_at IS NULL) = (ended_by IS NULL))
);
CREATE INDEX treasury_adjustments_until_idx ON ledgerflow.treasury_adjustments (valid_until);

-- The LCR each minute, with and without the adjustments: figures as LcrFigures.as_json,
-- amounts as exact decimal strings.
CREATE TABLE ledgerflow.lcr_history (
    minute TIMESTAMPTZ NOT NULL,
    adjusted BOOLEAN NOT NULL,
    figures JSONB NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (minute, adjusted)
);
