-- Sniper orders and the priority lane (issue 18): the sniper's fields as columns of the read
-- model, so `GET /api/orders/{id}` shows what the order asked for. Every other order keeps the
-- defaults (no max price, no checks, not only at launch, no autoSell, normal priority). A sniper
-- projected before this migration shows the defaults until its next event re-projects its row
-- (the projector folds from the events) or `oee replay rebuild`.
ALTER TABLE read_model.orders
    ADD COLUMN max_price      numeric,
    ADD COLUMN checks         jsonb,
    ADD COLUMN only_at_launch boolean NOT NULL DEFAULT false,
    ADD COLUMN auto_sell      jsonb,
    ADD COLUMN priority       text    NOT NULL DEFAULT 'normal';
