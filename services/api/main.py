"""The API process: its FastAPI app and the uvicorn server that runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp
from uvicorn.loops.auto import auto_loop_factory

from services.api.auth.mode import startup_problem, warn_if_disabled
from services.api.errors import install_error_handlers
from services.api.routes import health, launches, markets, metrics, orders, quote, ui
from services.api.routes.intake import OrderIntake
from services.api.routes.ws import OrderSockets
from services.api.runtime import ApiRuntime
from services.common.logging import configure_logging
from services.common.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings, runtime: ApiRuntime | None = None) -> ASGIApp:
    """The app: the submission route (`routes/intake.py`) and the order sockets
    (`routes/ws.py`) in front of FastAPI, which serves the rest; CORS, when configured, in
    front of them all. Its lifespan starts a runtime unless given one (the caller's then)."""

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
    app.include_router(health.router)
    app.include_router(orders.router)
    app.include_router(quote.router)
    app.include_router(markets.router)
    app.include_router(launches.router)
    app.include_router(metrics.router)
    app.include_router(ui.router)
    served: ASGIApp = OrderIntake(OrderSockets(app), app)
    if settings.cors_origins:
        served = CORSMiddleware(
            served,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
            expose_headers=["Retry-After"],
        )
    return served


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind too (SO_REUSEPORT): the kernel
    spreads new connections over every worker listening on the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host.strip("[]"), port))
    listener.listen(2048)  # uvicorn's default backlog
    return listener


async def _serve(settings: Settings, listener: socket.socket | None = None) -> None:
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
            # The API reads no client address (limits are per key, logs name the key), so
            # uvicorn's X-Forwarded-For middleware was a frame kept alive by every socket
            # (400 bytes, tracemalloc) and 2 % of the 202's CPU for nothing.
            proxy_headers=False,
        )
        await uvicorn.Server(config).serve(sockets=[listener] if listener else None)
    finally:
        await runtime.stop()


def _run(settings: Settings, listener: socket.socket | None = None) -> None:
    # The loop uvicorn.run would choose (uvloop where installed, as uvicorn[standard]
    # installs it); a bare asyncio.run kept the API on the slower stdlib loop.
    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        runner.run(_serve(settings, listener))


def _run_workers(settings: Settings) -> None:
    """`api_workers` forked API processes on one port; SIGTERM/SIGINT go to each of them,
    and this parent ends when they all have (with the first failure's exit code)."""
    children: list[int] = []
    for _ in range(settings.api_workers):
        pid = os.fork()
        if pid == 0:  # a worker: binds the shared port itself, runs a whole API
            code = 0
            try:
                _run(settings, reuse_port_socket(settings.api_host, settings.api_port))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("API worker failed")
                code = 1
            os._exit(code)
        children.append(pid)

    asked: set[int] = set()

    def forward(signum: int, _frame: object) -> None:
        asked.add(signum)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed = 0
    for child in children:
        _, status = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(status)
        # uvicorn ends by raising the signal it handled again: dying of a signal we forwarded
        # is a clean stop; of any other, a failure.
        failed = failed or (0 if -code in asked else 1 if code < 0 else code)
    if failed:
        raise SystemExit(failed)


def serve(settings: Settings) -> None:
    """Run the API until SIGTERM/SIGINT; refuse to start on unsafe auth settings, in one line."""
    configure_logging(settings, "api")
    problem = startup_problem(settings)
    if problem is not None:
        raise SystemExit(f"error: {problem}")
    warn_if_disabled(settings)
    if settings.api_workers > 1:
        _run_workers(settings)
    else:
        _run(settings)
