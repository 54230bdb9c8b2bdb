"""`/health`: is this process able to accept orders (Kafka) and serve them (PostgreSQL)?

It also names the chain the orders execute on (`chain`: its RPC URL and slot). The chain does
not make the API degraded: orders are still accepted while it is down (the router waits for it);
only `/api/quote` answers 503 then.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from schemas.envelope import utc_now
from services.api.deps import Runtime
from services.api.models import Health

router = APIRouter(tags=["health"])


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(runtime: Runtime) -> JSONResponse:
    """200 when Kafka and PostgreSQL answer; 503 "degraded" when either does not."""
    kafka, postgres, chain = await asyncio.gather(
        runtime.kafka_health(), runtime.postgres_health(), runtime.chain_health()
    )
    report = Health(
        status="ok" if kafka.status == postgres.status == "up" else "degraded",
        dependencies={"kafka": kafka, "postgres": postgres, "chain": chain},
        auth="enabled" if runtime.auth.enabled else "disabled",
        uptime=runtime.uptime(),
        timestamp=utc_now(),
    )
    return JSONResponse(
        report.model_dump(mode="json", by_alias=True),
        status_code=200 if report.status == "ok" else 503,
    )
