"""`POST /api/orders/execute` served in front of FastAPI: the 202 path with no framework frames.

Why: under wrk the submission route spent more CPU in Starlette's and FastAPI's layers
(routing, five middlewares, the request object, FastAPI's per-request telemetry check of the
environment) than in its own work: `FastAPI.__call__` was 54 % of the API's samples and the
route's body 18 % (py-spy, `python -m bench.accept --py-spy`). The route is still declared
in `routes/orders.py`, so /docs and the OpenAPI document are unchanged; both run
`accept_order`, and answer the same bytes (tests/integration/api/test_order_intake.py).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.errors import error_response
from services.api.routes.orders import accept_order, read_limited
from services.api.runtime import ApiRuntime

EXECUTE_PATH = "/api/orders/execute"


class OrderIntake:
    """ASGI: `POST /api/orders/execute` here, everything else to `app`; the runtime is the
    one the FastAPI app's lifespan put on its state."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != EXECUTE_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        runtime: ApiRuntime = self.fastapi_app.state.runtime
        headers = Headers(scope=scope)
        try:
            accepted = await accept_order(
                runtime, headers, lambda limit: read_limited(receive, headers, limit)
            )
        except ClientDisconnect:
            return  # nobody to answer, and nothing was written
        except Exception as exc:
            response = error_response(exc)
            if response is None:
                raise  # uvicorn answers 500 and logs it, as Starlette's outermost layer did
            await response(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 202,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(accepted)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": accepted})
