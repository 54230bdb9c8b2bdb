"""Fixtures of the API integration tests (defined in support.py, next to their helpers)."""

from typing import Any

import pytest

from services.common.settings import Settings
from tests.fixtures.settings import MakeSettings
from tests.integration.api.support import api

__all__ = ["api", "make_settings"]


@pytest.fixture
def make_settings(make_settings: MakeSettings) -> MakeSettings:
    """These tests speak the original API, without credentials; test_auth.py enables auth."""

    def build(**overrides: Any) -> Settings:
        return make_settings(**{"auth": "disabled", **overrides})

    return build
