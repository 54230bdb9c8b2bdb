-- The Solana VM chain's durable state (services/chain/node.py). A block's rows are written in
-- one transaction before the node reports any of its transactions confirmed; on start the node
-- rebuilds genesis from the seed and lays the accounts below over it, in slot order.
CREATE SCHEMA IF NOT EXISTS svm;

CREATE TABLE svm.genesis (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id), -- one row
    seed      bigint      NOT NULL,
    wallets   integer     NOT NULL,
    origin_ms bigint      NOT NULL,  -- wall-clock milliseconds of slot 0
    opened_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE svm.blocks (
    slot       bigint PRIMARY KEY,
    blockhash  text        NOT NULL,
    unix_time  bigint      NOT NULL,  -- the VM clock the block's transactions ran under
    landed_at  timestamptz NOT NULL DEFAULT now()
);

-- Every landed transaction, successful or failed (a failed one still paid its fee), with the
-- signed bytes as sent: replaying them in (slot, position) order from genesis gives the accounts.
CREATE TABLE svm.transactions (
    signature     text     PRIMARY KEY,  -- a signature lands at most once
    slot          bigint   NOT NULL REFERENCES svm.blocks (slot),
    position      integer  NOT NULL,     -- order within the block
    err           jsonb,                 -- Solana's TransactionError JSON, null when it succeeded
    logs          text[]   NOT NULL,
    compute_units bigint   NOT NULL,
    fee           bigint   NOT NULL,
    pre_balances  bigint[] NOT NULL,     -- lamports of each account key, before and after
    post_balances bigint[] NOT NULL,
    raw           bytea    NOT NULL,
    UNIQUE (slot, position)
);

-- Each block's post-state of every account its transactions could write.
CREATE TABLE svm.account_states (
    slot       bigint  NOT NULL REFERENCES svm.blocks (slot),
    address    text    NOT NULL,
    lamports   bigint  NOT NULL,       -- 0 with empty data: the account was closed
    owner      text    NOT NULL,
    data       bytea   NOT NULL,
    executable boolean NOT NULL,
    rent_epoch numeric NOT NULL,       -- u64
    PRIMARY KEY (address, slot)
);
CREATE INDEX account_states_slot ON svm.account_states (slot);
