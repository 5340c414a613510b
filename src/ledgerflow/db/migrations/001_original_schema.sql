-- The original fixture's tables, exactly as its producer creates them. A database where
-- the producer already ran keeps its tables and rows untouched.
CREATE TABLE IF NOT EXISTS initial_data (
    id SERIAL PRIMARY KEY,
    provider_name VARCHAR(255) NOT NULL,
    initial_value NUMERIC NOT NULL
);

CREATE TABLE IF NOT EXISTS historical_transactions (
    id SERIAL PRIMARY KEY,
    provider_id INTEGER REFERENCES initial_data(id),
    transaction_value NUMERIC NOT NULL
);
