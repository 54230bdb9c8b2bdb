-- What a Solana node's getTransaction reports as meta.preTokenBalances / postTokenBalances: each
-- SPL token account among the transaction's keys, before and after it ran, as a JSON list of
-- {"accountIndex", "mint", "owner", "programId", "amount" (string), "decimals"}. Null for
-- transactions landed before this column existed.
ALTER TABLE svm.transactions ADD COLUMN pre_token_balances jsonb;
ALTER TABLE svm.transactions ADD COLUMN post_token_balances jsonb;
