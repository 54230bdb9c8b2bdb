-- The market's read side, projected from `market.trades` and `market.ticks` by the market
-- projector (services/projector/market.py). A schema of its own, so `oee replay rebuild`
-- can build a fresh copy beside it and swap it in with one rename, as for `read_model`.
CREATE SCHEMA IF NOT EXISTS market_data;

-- Every trade that landed, the engine's and the background traders'.
CREATE TABLE market_data.trades (
    pair         text        NOT NULL,
    sequence     bigint      NOT NULL,  -- per pair, on market.trades
    base         text        NOT NULL,
    quote        text        NOT NULL,
    venue        text        NOT NULL,
    side         text        NOT NULL,  -- buy | sell, of the base, from the trader's side
    amount_base  numeric     NOT NULL,
    amount_quote numeric     NOT NULL,
    price        numeric     NOT NULL,
    slot         bigint      NOT NULL,
    at           timestamptz NOT NULL,
    signature    text        NOT NULL,
    source       text        NOT NULL,  -- engine | background
    PRIMARY KEY (pair, sequence)
);

-- OHLCV per pair, interval (1s, 1m, 1h, 1d) and UTC bucket, folded from the trades.
CREATE TABLE market_data.candles (
    pair           text        NOT NULL,
    interval       text        NOT NULL,
    bucket_start   timestamptz NOT NULL,
    open           numeric     NOT NULL,
    high           numeric     NOT NULL,
    low            numeric     NOT NULL,
    close          numeric     NOT NULL,
    volume_base    numeric     NOT NULL,
    volume_quote   numeric     NOT NULL,
    trades         integer     NOT NULL,
    first_sequence bigint      NOT NULL,  -- the trade that set open
    last_sequence  bigint      NOT NULL,  -- the trade that set close
    PRIMARY KEY (pair, interval, bucket_start)
);

-- The newest tick of each pair: what /api/markets shows and a market socket starts with.
CREATE TABLE market_data.latest_ticks (
    pair      text        PRIMARY KEY,
    sequence  bigint      NOT NULL,  -- per pair, on market.ticks
    base      text        NOT NULL,
    quote     text        NOT NULL,
    slot      bigint      NOT NULL,
    at        timestamptz NOT NULL,
    reference numeric     NOT NULL,
    venues    jsonb       NOT NULL   -- [{venue, mid, depth_bid, depth_ask}], as on the wire
);

-- The last sequence applied per topic and pair: a record at or below it is a duplicate.
CREATE TABLE market_data.sequences (
    topic         text   NOT NULL,
    pair          text   NOT NULL,
    last_sequence bigint NOT NULL,
    PRIMARY KEY (topic, pair)
);

-- Where the market projector is in the two topics, written in the same transaction as the
-- rows: each record is applied exactly once.
CREATE TABLE market_data.log_positions (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
