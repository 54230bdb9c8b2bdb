"""The market read side against the real broker and PostgreSQL: candles, trades and latest
ticks projected exactly once, and `oee replay rebuild`/`verify` agreeing with the live tables."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.common.settings import Settings
from services.replay.market import rebuild_market, verify_market
from tests.fixtures.market import (
    empty_market_tables,
    market_caught_up,
    market_overrides,
    market_projector_running,
    market_writer,
)
from tests.fixtures.settings import MakeSettings
from tests.market_builders import T0, tick, trade

D = Decimal


@pytest.fixture
def settings(make_settings: MakeSettings, database_url: str) -> Settings:
    empty_market_tables(database_url)
    return make_settings(**market_overrides())


def rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


async def dead_letters(settings: Settings) -> list[dict[str, str]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(settings.dead_letter_topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        found = []
        while await consumer.position(tp) < end:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found += [{k: v.decode() for k, v in m.headers} for m in batch]
        return found
    finally:
        await consumer.stop()


async def write_market(settings: Settings) -> None:
    """Background and engine trades on SOL-USDC over two minutes, one JUP trade, ticks, a
    redelivered trade and an unreadable record."""
    minute = timedelta(minutes=1)
    async with market_writer(settings) as market:
        await market.send(trade(10, "150", "2", at=T0))
        await market.send(trade(11, "152", "1", at=T0 + timedelta(seconds=20), side="buy"))
        await market.send(trade(12, "149", "1", at=T0 + timedelta(seconds=40)))
        await market.send(trade(12, "149", "1", at=T0 + timedelta(seconds=40)), sequence=3)
        await market.send(trade(13, "151", "10", at=T0 + minute, source="engine", venue="METEORA"))
        await market.send(trade(13, "0.9", "100", pair="JUP-USDC", at=T0 + minute))
        await market.send_raw(settings.market_trades_topic, b'{"type": "MarketTrade"}')
        for slot in (10, 11, 12):
            await market.send(tick(slot, at=T0 + timedelta(seconds=slot), raydium=f"15{slot - 10}"))


async def test_candles_trades_and_ticks_are_projected_once_and_resume(settings: Settings) -> None:
    url = str(settings.database_url)
    await write_market(settings)
    async with market_projector_running(settings):
        await market_caught_up(settings)
    candles = rows(
        url,
        "SELECT bucket_start, open, high, low, close, volume_base, volume_quote, trades"
        " FROM market_data.candles WHERE pair = 'SOL-USDC' AND interval = '1m'"
        " ORDER BY bucket_start",
    )
    assert candles == [
        (T0, D(150), D(152), D(149), D(149), D(4), D(601), 3),  # the redelivery counted once
        (T0 + timedelta(minutes=1), D(151), D(151), D(151), D(151), D(10), D(1510), 1),
    ]
    (day,) = rows(
        url,
        "SELECT open, close, trades FROM market_data.candles"
        " WHERE pair = 'SOL-USDC' AND interval = '1d'",
    )
    assert day == (D(150), D(151), 4)
    assert len(rows(url, "SELECT 1 FROM market_data.candles WHERE interval = '1s'")) == 5
    # The engine's fill and the background's trades both appear.
    sources = rows(
        url, "SELECT sequence, source FROM market_data.trades WHERE pair = 'SOL-USDC' ORDER BY 1"
    )
    assert sources == [(1, "background"), (2, "background"), (3, "background"), (4, "engine")]
    (latest,) = rows(url, "SELECT sequence, slot, venues FROM market_data.latest_ticks")
    assert latest[:2] == (3, 12)
    raydium = {"venue": "RAYDIUM", "mid": "152", "depth_bid": "900", "depth_ask": "910"}
    assert latest[2][0] == raydium
    (letter,) = await dead_letters(settings)
    assert letter["dlq.consumer"] == settings.market_projector_group
    assert letter["dlq.source"].startswith(settings.market_trades_topic)

    # A restarted projector resumes from its stored positions: nothing is applied twice.
    async with market_writer(settings) as market:
        market.sequences[(settings.market_trades_topic, "SOL-USDC")] = 4
        await market.send(trade(14, "153", "1", at=T0 + timedelta(seconds=70)))
    async with market_projector_running(settings):
        await market_caught_up(settings)
    (minute_two,) = rows(
        url,
        "SELECT open, high, close, trades FROM market_data.candles"
        " WHERE pair = 'SOL-USDC' AND interval = '1m' AND bucket_start = %s",
        T0 + timedelta(minutes=1),
    )
    assert minute_two == (D(151), D(153), D(153), 2)


async def test_rebuild_equals_live_and_verify_finds_a_tampered_candle(settings: Settings) -> None:
    url = str(settings.database_url)
    await write_market(settings)
    async with market_projector_running(settings):
        await market_caught_up(settings)

    verified = await verify_market(settings)
    assert verified.ok, [d.describe() for d in verified.differences]
    assert verified.report.trades == 5
    assert sum(verified.differing.values()) == 0

    tables = ("trades", "candles", "latest_ticks", "sequences")
    live = {t: sorted(rows(url, f"SELECT * FROM market_data.{t}")) for t in tables}
    # Rebuilt beside the live tables, in batches of 2 records (the live projector's differ).
    beside = await rebuild_market(settings, into="market_data_beside", batch_size=2)
    try:
        assert beside.replaced is None
        for table in tables:
            assert sorted(rows(url, f"SELECT * FROM market_data_beside.{table}")) == live[table]
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA market_data_beside CASCADE")

    # Rebuilt and switched in: the same rows, and the former tables kept aside.
    switched = await rebuild_market(settings)
    assert switched.replaced is not None
    try:
        for table in tables:
            assert sorted(rows(url, f"SELECT * FROM market_data.{table}")) == live[table]
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {switched.replaced} CASCADE")

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE market_data.candles SET high = high + 1"
            " WHERE pair = 'SOL-USDC' AND interval = '1h'"
        )
    tampered = await verify_market(settings)
    assert not tampered.ok
    assert tampered.differing["candles"] == 1
    (difference,) = tampered.differences
    assert difference.columns == ["high"]
