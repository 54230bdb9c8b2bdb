-- API keys of the public API (services/api/auth/). A key is shown once, when it is
-- created; only its SHA-256 is kept. A slow password hash (argon2, bcrypt) protects
-- low-entropy secrets against guessing; a key is 32 random bytes (256 bits), so no
-- guess can succeed and a fast hash loses nothing, while it lets every request find
-- its key with one indexed lookup.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.api_keys (
    id         uuid        PRIMARY KEY,  -- the owner of the orders submitted with the key
    name       text        NOT NULL,
    key_sha256 text        NOT NULL UNIQUE CHECK (key_sha256 ~ '^[0-9a-f]{64}$'),
    scopes     text[]      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz           -- set once; a revoked key is refused from then on
);
