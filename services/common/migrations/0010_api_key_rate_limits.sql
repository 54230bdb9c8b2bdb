-- Per-key submission limits (issue 20): a trading bot needs more than the deployment's
-- default of 20 orders a second. NULL means the deployment's default
-- (OEE_RATE_LIMIT_ORDERS_PER_SECOND, OEE_RATE_LIMIT_BURST); existing keys keep it.
ALTER TABLE auth.api_keys
    ADD COLUMN rate_limit double precision CHECK (rate_limit > 0),  -- orders a second
    ADD COLUMN burst      integer          CHECK (burst >= 1);      -- orders saved up at most
