"""The Solana chain: the node `oee chain` (LiteSVM with the real programs, blocks in PostgreSQL,
JSON-RPC) and the router's client of it."""
