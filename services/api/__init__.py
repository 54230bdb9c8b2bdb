"""The public HTTP and WebSocket API: orders onto the log, read models and live updates out."""
