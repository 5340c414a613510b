-- domain: rates
-- The rates tables, exactly as in the original dump, created only where they are absent
-- (a database loaded from the dump with psql keeps its tables and rows).
CREATE TABLE IF NOT EXISTS regions (
    slug TEXT NOT NULL,
    name TEXT NOT NULL,
    parent_slug TEXT,
    CONSTRAINT regions_pkey PRIMARY KEY (slug),
    CONSTRAINT regions_parent_slug_fkey FOREIGN KEY (parent_slug) REFERENCES regions(slug)
);

CREATE TABLE IF NOT EXISTS ports (
    code TEXT NOT NULL,
    name TEXT NOT NULL,
    parent_slug TEXT NOT NULL,
    CONSTRAINT ports_pkey PRIMARY KEY (code),
    CONSTRAINT ports_parent_slug_fkey FOREIGN KEY (parent_slug) REFERENCES regions(slug)
);

CREATE TABLE IF NOT EXISTS prices (
    orig_code TEXT NOT NULL,
    dest_code TEXT NOT NULL,
    day DATE NOT NULL,
    price INTEGER NOT NULL,
    CONSTRAINT prices_orig_code_fkey FOREIGN KEY (orig_code) REFERENCES ports(code),
    CONSTRAINT prices_dest_code_fkey FOREIGN KEY (dest_code) REFERENCES ports(code)
);

-- /rates reads one lane over a range of days: this index answers it from the index alone.
CREATE INDEX IF NOT EXISTS prices_lane_day_idx ON prices (orig_code, dest_code, day) INCLUDE (price);
-- Region slugs resolve through the region tree and its ports.
CREATE INDEX IF NOT EXISTS regions_parent_slug_idx ON regions (parent_slug);
CREATE INDEX IF NOT EXISTS ports_parent_slug_idx ON ports (parent_slug);

-- Committed price batches, so that a batch sent again is recognised and answered the same.
CREATE TABLE ledgerflow_price_batches (
    batch_id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
