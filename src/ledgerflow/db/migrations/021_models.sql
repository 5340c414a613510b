-- Feeds, part two: the production models and the tables they read. A model is registered
-- with its SQL (the tables are extracted by a SQL parser, views resolved to their base
-- tables through the catalog) or with a list of tables.
CREATE TABLE ledgerflow.models (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    sql TEXT,                                -- NULL when registered with a list of tables
    registered_by TEXT NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Each table a model reads, as schema.table; ``via`` names the view it was reached
-- through, if any (a base table of a view the model reads).
CREATE TABLE ledgerflow.model_tables (
    model_id BIGINT NOT NULL REFERENCES ledgerflow.models(id) ON DELETE CASCADE,
    table_name TEXT NOT NULL,
    via TEXT,
    PRIMARY KEY (model_id, table_name)
);
CREATE INDEX model_tables_table_idx ON ledgerflow.model_tables (table_name);
