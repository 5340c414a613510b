-- domain: treasury
-- The schema store of the treasury's Avro trades (treasury/registry.py), with the rules of
-- Confluent's schema registry: ids are global, one schema has one id whatever subjects it
-- is registered under, and each subject numbers its versions from 1.

CREATE TABLE ledgerflow.avro_schemas (
    id INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- the id in the wire format
    -- sha256 of schema_text: the same schema is found, and stored once, by it
    fingerprint BYTEA NOT NULL UNIQUE CHECK (length(fingerprint) = 32),
    schema_text TEXT NOT NULL,  -- compact JSON, keys sorted (text: exactly as registered)
    registered_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ledgerflow.avro_subject_versions (
    subject TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    version INTEGER NOT NULL CHECK (version >= 1),
    schema_id INTEGER NOT NULL REFERENCES ledgerflow.avro_schemas (id),
    registered_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (subject, version),
    UNIQUE (subject, schema_id)
);
