"""The API process: its FastAPI app and the uvicorn server that runs it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from uvicorn.loops.auto import auto_loop_factory

from services.api.auth.mode import startup_problem, warn_if_disabled
from services.api.errors import install_error_handlers
from services.api.routes import health, launches, markets, metrics, orders, quote, ui, ws
from services.api.runtime import ApiRuntime
from services.common.logging import configure_logging
from services.common.settings import Settings


def create_app(settings: Settings, runtime: ApiRuntime | None = None) -> FastAPI:
    """The app; its lifespan starts a runtime unless given one (which the caller then owns)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = runtime is None
        app.state.runtime = await ApiRuntime.start(settings) if owned else runtime
        try:
            yield
        finally:
            if owned:
                await app.state.runtime.stop()

    app = FastAPI(
        title="Order Execution Engine",
        summary="Market orders on Solana DEXs, accepted onto an event log, executed by a router.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            expose_headers=["Retry-After"],
        )
    app.include_router(health.router)
    app.include_router(orders.router)
    app.include_router(quote.router)
    app.include_router(markets.router)
    app.include_router(launches.router)
    app.include_router(ws.router)
    app.include_router(metrics.router)
    app.include_router(ui.router)
    return app


async def _serve(settings: Settings) -> None:
    # Start Kafka and the rest before uvicorn, so an unreachable broker ends the
    # process with DependencyUnavailable's one line (see services.cli) rather than a trace.
    runtime = await ApiRuntime.start(settings)
    try:
        config = uvicorn.Config(
            create_app(settings, runtime),
            host=settings.api_host,
            port=settings.api_port,
            log_config=None,  # keep the structured logging configured below
            ws="websockets-sansio",  # the legacy websockets protocol is deprecated
            ws_max_size=settings.max_body_bytes,
            # Order updates are a few hundred bytes: compressing each cost more CPU than it
            # saved (bench/sockets.py, 5,000 subscribers: 15,800 -> 18,300 messages/s).
            ws_per_message_deflate=False,
        )
        await uvicorn.Server(config).serve()
    finally:
        await runtime.stop()


def serve(settings: Settings) -> None:
    """Run the API until SIGTERM/SIGINT; refuse to start on unsafe auth settings, in one line."""
    configure_logging(settings, "api")
    problem = startup_problem(settings)
    if problem is not None:
        raise SystemExit(f"error: {problem}")
    warn_if_disabled(settings)
    # The loop uvicorn.run would choose (uvloop where installed, as uvicorn[standard]
    # installs it); a bare asyncio.run kept the API on the slower stdlib loop.
    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        runner.run(_serve(settings))
