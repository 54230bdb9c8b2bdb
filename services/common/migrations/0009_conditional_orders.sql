-- Conditional orders (issue 17): what the fold knows of an order's type, prices, expiry and
-- trigger, as columns of the read model; `status` gains open, triggered, partiallyFilled,
-- cancelled and expired. Market orders keep the defaults.
ALTER TABLE read_model.orders
    ADD COLUMN order_type        text    NOT NULL DEFAULT 'market',
    ADD COLUMN limit_price       numeric,
    ADD COLUMN trigger_price     numeric,
    ADD COLUMN take_profit_price numeric,
    ADD COLUMN stop_loss_price   numeric,
    ADD COLUMN trailing_bps      integer,
    ADD COLUMN expires_at        timestamptz,
    ADD COLUMN allow_partial     boolean NOT NULL DEFAULT true,
    ADD COLUMN triggered_leg     text,
    ADD COLUMN triggered_slot    bigint,
    ADD COLUMN triggered_price   numeric,
    ADD COLUMN filled_amount     numeric NOT NULL DEFAULT 0;

-- The trigger engine recovers the resting orders from here (with the log positions the same
-- transactions wrote), instead of reading the whole log.
CREATE INDEX orders_unfinished_conditional_idx ON read_model.orders (id)
    WHERE order_type <> 'market'
      AND status NOT IN ('completed', 'failed', 'cancelled', 'expired');
