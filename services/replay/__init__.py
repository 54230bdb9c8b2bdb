"""Replay: rebuild the read models from the log, verify them, and tell one order's story from it."""
