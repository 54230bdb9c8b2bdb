"""Project infrastructure helpers (local services for development and tests)."""
