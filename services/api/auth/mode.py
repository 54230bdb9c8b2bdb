"""The start-up guard: authentication off is for loopback only, and a JWT key needs its checks."""

from __future__ import annotations

import ipaddress
import logging

from services.api.auth.tokens import JwtVerifier
from services.common.settings import Settings

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def startup_problem(settings: Settings) -> str | None:
    """Why the API must not start with these settings, in one line; None when it may."""
    if settings.auth == "disabled" and not is_loopback(settings.api_host):
        return (
            f"OEE_AUTH=disabled refuses to listen on {settings.api_host}: without authentication"
            " the API serves loopback only (set OEE_API_HOST=127.0.0.1, or enable auth)"
        )
    if settings.auth == "enabled":
        try:
            JwtVerifier.from_settings(settings)
        except (ValueError, OSError) as exc:
            return f"JWT configuration: {exc}"
    return None


def warn_if_disabled(settings: Settings) -> None:
    """Say loudly, at start, that anyone who can connect may trade and read every order."""
    if settings.auth == "disabled":
        log.warning(
            "AUTHENTICATION IS DISABLED (OEE_AUTH=disabled): anyone who can reach %s:%s can"
            " submit orders and read every order. For local experiments only.",
            settings.api_host,
            settings.api_port,
        )
