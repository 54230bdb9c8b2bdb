"""Fixtures of the API integration tests (defined in support.py, next to their helpers)."""

from tests.integration.api.support import api

__all__ = ["api"]
