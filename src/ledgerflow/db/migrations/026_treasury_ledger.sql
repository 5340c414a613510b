-- domain: treasury
-- The treasury's ledger: trades normalised from the desks' streams, the positions and
-- cash they add up to, the offset each stream was read to (in the same transaction as
-- what it produced, so a restart resumes exactly there), which stream each source reads
-- now (hot swap), and the instruments' reference data.

-- Which stream each source reads, since when, and the control message that said so.
CREATE TABLE ledgerflow.treasury_sources (
    source TEXT PRIMARY KEY CHECK (source ~ '^[a-z][a-z0-9_]{0,31}$'),  -- fx, repos, ...
    stream TEXT NOT NULL CHECK (length(stream) BETWEEN 1 AND 255),
    since TIMESTAMPTZ NOT NULL DEFAULT now(),
    control JSONB                  -- the control message applied last, if any
);

-- The next offset to read of each stream: written in the transaction of the batch read.
CREATE TABLE ledgerflow.stream_offsets (
    stream TEXT PRIMARY KEY,
    next_offset BIGINT NOT NULL CHECK (next_offset >= 0),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every trade, once (its id is the desk's), in the canonical schema's terms.
CREATE TABLE ledgerflow.trades (
    trade_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    stream TEXT NOT NULL,
    stream_offset BIGINT NOT NULL,
    book TEXT NOT NULL,
    instrument TEXT NOT NULL,
    asset_class TEXT NOT NULL,
    side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity NUMERIC NOT NULL CHECK (quantity >= 0),
    price NUMERIC,
    currency TEXT NOT NULL,
    settlement_amount NUMERIC NOT NULL,  -- signed: negative when cash is paid
    trade_time TIMESTAMPTZ NOT NULL,
    settlement_date DATE NOT NULL,
    maturity_date DATE,
    counterparty_type TEXT,
    collateral_instrument TEXT,
    rate NUMERIC,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX trades_stream_offset_idx ON ledgerflow.trades (stream, stream_offset);
CREATE INDEX trades_maturity_idx ON ledgerflow.trades (maturity_date) WHERE maturity_date IS NOT NULL;

-- Buys minus sells, per book and instrument (negative when short).
CREATE TABLE ledgerflow.positions (
    book TEXT NOT NULL,
    instrument TEXT NOT NULL,
    quantity NUMERIC NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (book, instrument)
);

-- The settlement amounts, per book and currency.
CREATE TABLE ledgerflow.cash_positions (
    book TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount NUMERIC NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (book, currency)
);

-- Reference data: what an instrument is, for the LCR.
CREATE TABLE ledgerflow.instruments (
    instrument TEXT PRIMARY KEY,
    asset_class TEXT NOT NULL,
    issuer_type TEXT,
    hqla_level TEXT NOT NULL CHECK (hqla_level IN ('1', '2A', '2B', 'none')),
    haircut_category TEXT,
    currency TEXT NOT NULL,
    price NUMERIC,               -- the market price the HQLA stock is valued at
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
