-- The simulated PostgreSQL chain (0002: chain.pools, chain.transactions, chain.genesis) is gone:
-- orders execute on the Solana VM chain node, whose state is schema svm (0005). Its tables held
-- only simulated fills, which the order log records too.
DROP SCHEMA IF EXISTS chain CASCADE;
