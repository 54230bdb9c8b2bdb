"""The living market: `oee market` moves the pools every slot and publishes ticks and trades.

`walk`, `flow`, `trades` and `commands` are pure (no I/O); `process` and `main` are the process.
"""
