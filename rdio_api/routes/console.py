"""The web console: one HTML page and its ES modules, served from the package with no build step.

``/`` and the console's deep links (``/calls/{id}``, ``/search``, ``/talkgroups``) all answer the same
``index.html``, so a reload of any of them works; the page's own router reads the path. Assets are
plain files under ``rdio_api/console``, answered from ``/console/<name>``.

Caching: with no build step there are no content-hashed file names, so a ``max-age`` would let a
browser keep an old ``player.js`` next to a new ``app.js`` after an upgrade. Every file is sent with
``Cache-Control: no-cache`` and a strong ETag (a hash of its bytes). Measured in Chromium: a first
load is 15 files, 68.8 KB; a reload gets the 14 assets back as ``304 Not Modified`` with no body.

A browser that navigates to a path nothing answers (``GET``, ``Accept: text/html``, outside ``/api/``)
gets the same page with status 404, and the page's router shows its not-found view with links back;
an API client asking for JSON still gets FastAPI's JSON 404 (``not_found``).

The page's Content-Security-Policy allows nothing but this origin (plus ``blob:`` audio, which is how
the console plays audio fetched with the key in a header): it is also what proves, in the browser
tests, that no asset comes from a CDN.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException as StarletteHTTPException

router = APIRouter(include_in_schema=False)

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")
_MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
}
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
_COMMON_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class _Asset:
    stamp: tuple[int, int]
    body: bytes
    etag: str


_cache: dict[Path, _Asset] = {}


def _load(path: Path) -> _Asset:
    """The file's bytes and ETag, re-read only when its mtime or size changes (an edited file in a
    checkout is picked up without a restart)."""
    try:
        stat = path.stat()
    except OSError:
        raise HTTPException(404, "Not found") from None
    stamp = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached is None or cached.stamp != stamp:
        body = path.read_bytes()
        cached = _Asset(stamp, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
        _cache[path] = cached
    return cached


def _serve(request: Request, path: Path, kind: str) -> Response:
    asset = _load(path)
    headers = {**_COMMON_HEADERS, "ETag": asset.etag}
    if kind == "html":
        headers["Content-Security-Policy"] = CSP
    tags = request.headers.get("if-none-match", "")
    if asset.etag in (tag.strip().removeprefix("W/") for tag in tags.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=_MEDIA_TYPES[kind], headers=headers)


@router.get("/")
@router.get("/search")
@router.get("/talkgroups")
@router.get("/alerts")
@router.get("/calls/{call_id}")
def console_page(request: Request) -> Response:
    return _serve(request, CONSOLE_DIR / "index.html", "html")


@router.get("/console/{name}")
def console_asset(name: str, request: Request) -> Response:
    match = _ASSET_NAME.match(name)
    if match is None:
        raise HTTPException(404, "Not found")
    return _serve(request, CONSOLE_DIR / name, match.group(1))


def _wants_page(request: Request) -> bool:
    """A browser's navigation: it asks for HTML (an API client's ``Accept`` is JSON or ``*/*``)."""
    return (
        request.method in ("GET", "HEAD")
        and not request.url.path.startswith(("/api/", "/console/"))
        and "text/html" in request.headers.get("accept", "")
    )


async def not_found(request: Request, exc: Exception) -> Response:
    """The app's HTTPException handler: a 404 a browser navigated to is the console's page (its
    router shows "page not found"); everything else is FastAPI's own JSON answer."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and _wants_page(request):
        asset = _load(CONSOLE_DIR / "index.html")
        headers = {**_COMMON_HEADERS, "Content-Security-Policy": CSP}
        return Response(asset.body, status_code=404, media_type=_MEDIA_TYPES["html"], headers=headers)
    return await http_exception_handler(request, exc)
