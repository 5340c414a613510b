-- The role treasury: people who correct the liquidity figures (adjustments, instrument
-- reference data, balances) without the operators' other rights.
ALTER TABLE ledgerflow.users DROP CONSTRAINT users_role_check;
ALTER TABLE ledgerflow.users ADD CONSTRAINT users_role_check
    CHECK (role IN ('admin', 'operator', 'analyst', 'treasury', 'viewer'));
