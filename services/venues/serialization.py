"""Pools back from their stored JSON form, whichever venue they belong to."""

from __future__ import annotations

from typing import Any

from services.venues.cpmm import CpmmPool
from services.venues.dlmm import DlmmPool
from services.venues.pool import Pool, Venue


def pool_from_dict(data: dict[str, Any]) -> Pool:
    """Rebuild a pool from `to_dict()` output, dispatching on its venue."""
    venue = Venue(data["venue"])
    if venue is Venue.RAYDIUM:
        return CpmmPool.from_dict(data)
    return DlmmPool.from_dict(data)
