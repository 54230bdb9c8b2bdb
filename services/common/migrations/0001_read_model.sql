-- Read models built by the projector from the order event log.
-- They live in their own schema so that `oee replay rebuild` can build a fresh
-- copy beside them and swap it in with one rename.
CREATE SCHEMA IF NOT EXISTS read_model;

-- Current state of each order: what GET /api/orders/{id} and the lists serve.
CREATE TABLE read_model.orders (
    id              uuid PRIMARY KEY,
    client_order_id text,
    owner           text,
    token_in        text        NOT NULL,
    token_out       text        NOT NULL,
    amount          numeric     NOT NULL,
    slippage        numeric     NOT NULL,
    status          text        NOT NULL,
    selected_dex    text,
    route           jsonb,
    quotes          jsonb,
    amount_out      numeric,
    executed_price  numeric,
    fee             numeric,
    tx_hash         text,
    error_code      text,
    error           text,
    attempts        integer     NOT NULL DEFAULT 0,
    last_sequence   integer     NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
-- Newest-first keyset pagination, alone and under each filter.
CREATE INDEX orders_created_idx ON read_model.orders (created_at DESC, id DESC);
CREATE INDEX orders_status_created_idx ON read_model.orders (status, created_at DESC, id DESC);
CREATE INDEX orders_pair_created_idx ON read_model.orders (token_in, token_out, created_at DESC, id DESC);
CREATE INDEX orders_owner_created_idx ON read_model.orders (owner, created_at DESC, id DESC);

-- Every event of every order, in sequence: the audit view and the socket history.
CREATE TABLE read_model.order_events (
    order_id      uuid        NOT NULL,
    sequence      integer     NOT NULL,
    event_id      uuid        NOT NULL,
    type          text        NOT NULL,
    version       integer     NOT NULL,
    status        text        NOT NULL,
    occurred_at   timestamptz NOT NULL,
    producer      text        NOT NULL,
    prev_hash     text        NOT NULL,
    hash          text        NOT NULL, -- sha256 of the record as written to the log
    payload       jsonb       NOT NULL,
    log_partition integer     NOT NULL,
    log_offset    bigint      NOT NULL,
    PRIMARY KEY (order_id, sequence)
);

-- Where the projector is in the log. Written in the same transaction as the
-- rows it produced, so each event is applied exactly once.
CREATE TABLE read_model.log_positions (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
