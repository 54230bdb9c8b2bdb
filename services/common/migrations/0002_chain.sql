-- The simulated chain's durable state: pools and the ledger of executed transactions.
-- It outlives the router: executing is a transaction here, not a call in the
-- router's memory, so a router killed mid-swap finds the fill on restart.
CREATE SCHEMA IF NOT EXISTS chain;

CREATE TABLE chain.pools (
    venue   text   NOT NULL,
    base    text   NOT NULL,
    quote   text   NOT NULL,
    state   jsonb  NOT NULL,          -- the pool's to_dict(): integer reserves, bins, fee state
    reference_mid numeric NOT NULL,   -- quote per base the venue's arbitrageurs pull it back to
    slot    bigint NOT NULL DEFAULT 0, -- slot of the last transaction or arbitrage that changed it
    PRIMARY KEY (venue, base, quote)
);

CREATE SEQUENCE chain.slots;

CREATE TABLE chain.transactions (
    signature   text        PRIMARY KEY,
    order_id    uuid        NOT NULL UNIQUE, -- at most one landed transaction per order
    status      text        NOT NULL CHECK (status IN ('confirmed', 'failed')),
    error_code  text,
    error       text,
    token_in    text        NOT NULL,
    token_out   text        NOT NULL,
    amount_in   numeric     NOT NULL,   -- base units
    amount_out  numeric     NOT NULL,   -- base units, 0 when failed
    fee         numeric     NOT NULL,   -- base units of token_in
    legs        jsonb       NOT NULL,
    slot        bigint      NOT NULL,
    executed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chain.genesis (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id), -- one row
    seed      bigint      NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now()
);
