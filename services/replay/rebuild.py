"""`oee replay rebuild`: fold the whole log into a fresh schema and switch it in.

The folding itself is `rebuilder.Rebuilder`; `parallel` shares it over processes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from services.common.db import LIVE_SCHEMA
from services.common.settings import Settings
from services.replay.parallel import run_to_in_parallel
from services.replay.rebuilder import (
    Progress,
    Rebuilder,
    RebuildReport,
    Until,
    stamp,
    switch_in,
)


@dataclass(frozen=True)
class RebuildResult:
    report: RebuildReport
    schema: str  # where the rebuilt read models are now
    replaced: str | None  # the former live schema's new name, after a switch


async def rebuild(
    settings: Settings,
    *,
    into: str | None = None,
    until: Until | None = None,
    live: str = LIVE_SCHEMA,
    batch_size: int = 10_000,
    cache_size: int = 20_000,
    on_progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    workers: int = 1,
) -> RebuildResult:
    """Rebuild the read models of `settings.orders_topic` from the start of the log.

    Without `into` and `until` the result replaces `live` (see `switch_in`). With
    `into` it is left beside the live schema under that name; with `until` (the
    state at a past moment) it is always left beside, never switched in. An
    interrupted rebuild drops its partial schema and leaves the live one untouched.
    With `workers` > 1 the log up to the stops is folded by that many processes.
    """
    switch = into is None and until is None
    schema = into or f"{live}_{'at' if until else 'rebuild'}_{stamp()}"
    async with Rebuilder(
        settings,
        schema,
        batch_size=batch_size,
        cache_size=cache_size,
        on_progress=on_progress,
        stop=stop,
    ) as rebuilder:
        await rebuilder.create_schema(template=live)
        try:
            await run_to_in_parallel(rebuilder, await rebuilder.stops_for(until), workers)
            replaced = await switch_in(rebuilder, live) if switch else None
        except BaseException:
            await rebuilder.drop_schema()
            raise
        return RebuildResult(rebuilder.report, live if switch else schema, replaced)
