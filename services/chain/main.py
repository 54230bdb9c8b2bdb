"""`oee chain`: run the chain node and its JSON-RPC until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal

import structlog

from services.chain.genesis import Genesis
from services.chain.node import ChainNode
from services.chain.rpc import serve as serve_rpc
from services.chain.store import ChainStore
from services.common.db import migrate
from services.common.logging import configure_logging
from services.common.settings import Settings

log = structlog.get_logger("chain")


async def run(settings: Settings) -> None:
    """Migrate, restore, listen, and land a block every slot until told to stop."""
    assert settings.database_url is not None
    await asyncio.to_thread(migrate, settings.database_url)
    store = await ChainStore.open(settings.database_url)
    try:
        node = ChainNode(
            store,
            Genesis(
                seed=settings.chain_seed,
                wallets=settings.chain_wallets,
                maker_wallet=settings.market_maker_wallet,
            ),
            slot_ms=settings.slot_ms,
        )
        await node.start()
        runner = await serve_rpc(node, settings.chain_host, settings.chain_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, node.stop)
        log.info(
            "chain RPC listening",
            url=f"http://{settings.chain_host}:{settings.chain_port}",
            slot_ms=settings.slot_ms,
        )
        try:
            await node.run()
        finally:
            await runner.cleanup()
            stats = node.stats
            log.info(
                "chain node stopped",
                slot=node.slot,
                landed=stats.landed,
                dropped=stats.dropped,
                cpu_ms_per_transaction=round(stats.cpu_per_transaction * 1000, 3),
            )
    finally:
        await store.close()


def serve(settings: Settings) -> None:
    configure_logging(settings, "chain")
    asyncio.run(run(settings))
