"""Every error the API answers with is JSON `{error, message, ...}`, never HTML or a bare 500."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.publisher import LogUnavailable
from services.api.quotes import ChainUnavailableError
from services.api.read_model import ReadModelUnavailable
from services.api.validation import Rejection

RETRY_AFTER_SECONDS = "5"


class ApiError(Exception):
    """An answer other than success, with its status, body and headers."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(body.get("error"))
        self.status = status
        self.body = body
        self.headers = headers

    @classmethod
    def rejected(cls, rejection: Rejection) -> ApiError:
        return cls(rejection.http_status, rejection.body())

    @classmethod
    def bad_request(cls, error: str, code: str, message: str, field: str | None = None) -> ApiError:
        return cls(400, {"error": error, "message": message, "code": code, "field": field})

    @classmethod
    def not_found(cls, error: str, message: str) -> ApiError:
        return cls(404, {"error": error, "message": message})


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


# A dependency that did not answer: 503, what was not done, and when to try again.
_UNAVAILABLE: dict[type[Exception], tuple[str, str]] = {
    LogUnavailable: ("LOG_UNAVAILABLE", "The order was not accepted"),
    ReadModelUnavailable: ("READ_MODEL_UNAVAILABLE", "Order data is unavailable"),
    ChainUnavailableError: ("CHAIN_UNAVAILABLE", "No quote"),
}


def error_response(exc: Exception) -> JSONResponse | None:
    """The answer for an error the API knows (None for any other): the exception handlers'
    and the submission route's (which runs in front of FastAPI, `routes/intake.py`) one map."""
    if isinstance(exc, ApiError):
        return _json(exc.status, exc.body, exc.headers)
    for unavailable, (error, what) in _UNAVAILABLE.items():
        if isinstance(exc, unavailable):
            return _json(
                503,
                {"error": error, "message": f"{what}: {exc}; retry later"},
                {"Retry-After": RETRY_AFTER_SECONDS},
            )
    return None


async def _known_error(request: Request, exc: Exception) -> JSONResponse:
    response = error_response(exc)
    assert response is not None  # installed only for the classes error_response maps
    return response


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        body = {
            "error": "ROUTE_NOT_FOUND",
            "message": f"No route {request.method} {request.url.path}",
        }
    elif exc.status_code == 405:
        body = {
            "error": "METHOD_NOT_ALLOWED",
            "message": f"{request.method} is not allowed on {request.url.path}",
        }
    else:
        body = {"error": "HTTP_ERROR", "message": str(exc.detail)}
    return _json(exc.status_code, body, dict(exc.headers) if exc.headers else None)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    return _json(
        400,
        {
            "error": "INVALID_REQUEST",
            "message": str(first.get("msg", "invalid request")),
            "code": "ERR_030",
            "field": field,
        },
    )


def install_error_handlers(app: FastAPI) -> None:
    known: list[type[Exception]] = [ApiError, *_UNAVAILABLE]
    for error in known:
        app.add_exception_handler(error, _known_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
