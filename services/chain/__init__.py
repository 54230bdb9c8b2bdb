"""The simulated Solana chain: pools and a ledger with durable state in PostgreSQL."""
