"""/metrics of every process moves when orders flow."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.system import System, eventually, new_port, order_payload


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and wanted <= set(ls))


async def test_counters_move_in_the_api_router_and_projector(start_system: Any) -> None:
    router_port, projector_port = new_port(), new_port()
    system: System = await start_system(
        router_metrics_port=router_port, projector_metrics_port=projector_port
    )
    async with httpx.AsyncClient(timeout=10) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{system.base_url}/api/orders/execute", json=order_payload())
                for _ in range(3)
            )
        )
        assert {r.status_code for r in responses} == {202}

        async def scraped(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            return samples((await client.get(url)).text)

        router_url = f"http://127.0.0.1:{router_port}/metrics"
        projector_url = f"http://127.0.0.1:{projector_port}/metrics"

        async def all_finished() -> bool:
            try:
                values = await scraped(router_url)
            except httpx.HTTPError:
                return False
            return total(values, "oee_orders_finished_total") >= 3

        await eventually(all_finished, timeout=30, what="router counted 3 orders", system=system)
        router = await scraped(router_url)
        assert total(router, "oee_orders_finished_total", status="completed") == 3
        assert total(router, "oee_stage_latency_seconds_count", stage="end_to_end") == 3
        assert total(router, "oee_venue_quotes_total") >= 6  # both venues, each order

        async def projected() -> bool:
            values = await scraped(projector_url)
            return total(values, "oee_stage_latency_seconds_count", stage="project") >= 15

        await eventually(projected, timeout=30, what="projector timed 15 events", system=system)
        api = await scraped(f"{system.base_url}/metrics")
        assert total(api, "oee_stage_latency_seconds_count", stage="accept") >= 3
