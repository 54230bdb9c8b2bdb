"""A small client of the public API: JSON in and out, every failure as one readable line."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 10.0


class ApiError(Exception):
    """A request that did not give an answer to show; `str()` is the one line for the user."""

    def __init__(self, message: str, *, status: int | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.status = status
        # 1: the API said no (fix the request or the key); 2: the API is not there or broke.
        self.exit_code = exit_code


def failure(status: int, body: Any, url: str) -> ApiError:
    """The one line for an HTTP error answer of the API."""
    fields = body if isinstance(body, dict) else {}
    error = fields.get("error")
    message = fields.get("message") or fields.get("detail")
    said = ": ".join(str(part) for part in (error, message) if part)
    if status in (401, 403):
        hint = (
            "pass --api-key or set OEE_API_KEY"
            if status == 401
            else "the key lacks the scope this needs"
        )
        return ApiError(
            f"the API refused the credentials ({status}{': ' + said if said else ''}); {hint}",
            status=status,
        )
    if status >= 500:
        return ApiError(
            f"the API failed at {url} ({status}{': ' + said if said else ''}); try again later",
            status=status,
            exit_code=2,
        )
    return ApiError(f"rejected ({status}): {said or 'no reason given'}", status=status)


def unreachable(base_url: str, exc: Exception) -> ApiError:
    """The one line for an API that cannot be reached at all."""
    if isinstance(exc, httpx.TimeoutException):
        why = "timed out"
    elif isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        why = "connection refused"
    else:
        why = str(exc) or type(exc).__name__
    return ApiError(
        f"cannot reach the API at {base_url} ({why}); is it running? (`oee up`, or set --api-url)",
        exit_code=2,
    )


def websocket_url(base_url: str, path: str) -> str:
    """http(s)://host/x + /ws/y -> ws(s)://host/x/ws/y."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, "", ""))


class ApiClient:
    """The public API's routes as methods returning decoded JSON."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key or None
        self._http = httpx.Client(
            base_url=self.base_url, headers=self.headers, timeout=timeout, transport=transport
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200, 202), **kwargs: Any
    ) -> Any:
        """Send one request; an answer outside `ok` becomes an ApiError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(self.base_url, exc) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code not in ok:
            raise failure(response.status_code, body, f"{self.base_url}{path}")
        return body

    def submit(self, order: dict[str, Any]) -> dict[str, Any]:
        """POST /api/orders/execute: 202 with the order id once it is on the log."""
        accepted: dict[str, Any] = self.request("POST", "/api/orders/execute", json=order)
        return accepted

    def order(self, order_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", f"/api/orders/{order_id}")
        return found

    def events(self, order_id: str) -> list[dict[str, Any]]:
        body = self.request("GET", f"/api/orders/{order_id}/events")
        events: list[dict[str, Any]] = body["events"]
        return events

    def orders(self, **filters: str | int | None) -> dict[str, Any]:
        """GET /api/orders with the filters that are set (camelCase names)."""
        params = {k: str(v) for k, v in filters.items() if v is not None}
        page: dict[str, Any] = self.request("GET", "/api/orders", params=params)
        return page

    def markets(self) -> dict[str, Any]:
        """GET /api/markets: every pair with its mids, best venue, 24 h change and volume."""
        found: dict[str, Any] = self.request("GET", "/api/markets")
        return found

    def market(self, pair: str) -> dict[str, Any]:
        """GET /api/markets/{pair}: the summary and the depth ladder."""
        found: dict[str, Any] = self.request("GET", f"/api/markets/{pair}")
        return found

    def candles(self, pair: str, **params: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", f"/api/markets/{pair}/candles", params=params)
        return found

    def cancel(self, order_id: str) -> dict[str, Any]:
        """DELETE /api/orders/{id}: the cancelled order, or 409 with why not."""
        found: dict[str, Any] = self.request("DELETE", f"/api/orders/{order_id}")
        return found

    def amend(self, order_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH /api/orders/{id}: the amended order, or 409 with why not."""
        found: dict[str, Any] = self.request("PATCH", f"/api/orders/{order_id}", json=changes)
        return found

    def health(self) -> dict[str, Any]:
        """GET /health; a degraded API answers 503 with the same report."""
        report: dict[str, Any] = self.request("GET", "/health", ok=(200, 503))
        return report
