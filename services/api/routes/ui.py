"""`/` and `/ui`: the live dashboard, static files that use the public API like any client.

`/ui/vendor/...` serves the vendored chart library and its licence (see ui/vendor/PROVENANCE.md).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from services.api.errors import ApiError

router = APIRouter(tags=["dashboard"])

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
# The only files served: a fixed list, so no request path ever reaches the file system.
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_VENDORED = {
    "lightweight-charts.standalone.production.js": "text/javascript; charset=utf-8",
    "LICENSE": "text/plain; charset=utf-8",
    "PROVENANCE.md": "text/markdown; charset=utf-8",
}
# The page is small and changes with the code; always revalidate rather than serve a stale copy.
_HEADERS = {"Cache-Control": "no-cache"}


@router.get("/", include_in_schema=False)
@router.get("/ui", include_in_schema=False)
async def dashboard() -> FileResponse:
    """The dashboard page."""
    return FileResponse(UI_DIR / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/ui/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """The page's script and style sheet."""
    if name not in _ASSETS:
        raise ApiError.not_found("NOT_FOUND", f"No dashboard file {name}")
    return FileResponse(UI_DIR / name, media_type=_ASSETS[name], headers=_HEADERS)


@router.get("/ui/vendor/{name}", include_in_schema=False)
async def vendored(name: str) -> FileResponse:
    """The vendored chart library, its licence and where it came from."""
    if name not in _VENDORED:
        raise ApiError.not_found("NOT_FOUND", f"No dashboard file vendor/{name}")
    return FileResponse(UI_DIR / "vendor" / name, media_type=_VENDORED[name], headers=_HEADERS)
