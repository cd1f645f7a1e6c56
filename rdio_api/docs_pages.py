"""/docs and /redoc served offline, with the key taken in the page, never in the URL.

FastAPI's own pages load Swagger UI and ReDoc from a CDN: offline (most installs here) /docs was a
blank page. The assets now come from the ``fastapi-offline`` package (MIT, a 0.8 MB wheel holding
Swagger UI 5.x, which renders OpenAPI 3.1 as FastAPI writes it; swagger-ui-bundle 1.1.0 ships
Swagger UI 4.15, which rendered nothing) and are served under ``/docs/assets/``.

The schema stays behind a read key (``auth.public_docs`` opens it), but the pages themselves hold no
secret, so they are open: a page asks for the key (or takes the one the console keeps in this
browser), sends it as ``X-API-Key`` on its own schema request and pre-fills Swagger's Authorize
dialog with it, so "Try it out" carries it too and the dialog can change it. The key was put in the
URL before (``/docs?key=K``), where it ended up in history, logs and the page itself.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
# The console keeps its key under this localStorage item (rdio_api/console/api.js): same origin.
CONSOLE_KEY_ITEM = "rdio.apiKey"
# Nothing but this server: ReDoc's footer badge would otherwise fetch its logo from redoc.ly's CDN.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
SCHEME = "APIKeyHeader"  # FastAPI's name for the X-API-Key scheme (rdio_api.deps._header_key)

router = APIRouter(include_in_schema=False)


def _asset_dir() -> Path:
    return Path(str(resources.files("fastapi_offline") / "static"))


@router.get("/docs/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, "no such asset")
    return FileResponse(
        _asset_dir() / name, media_type=ASSETS[name], headers={"Cache-Control": "max-age=86400"}
    )


_KEY_FORM = """
<form id="key-form" hidden style="font:15px sans-serif;margin:2em auto;max-width:32em">
  <p>The API description needs a read key (one of <code>api_keys</code> in the config).
  It is kept in this tab only and sent as the <code>X-API-Key</code> header.</p>
  <p id="key-error" style="color:#b00"></p>
  <input id="key-input" type="password" autocomplete="off" placeholder="API key" style="width:20em">
  <button type="submit">Show the API</button>
</form>
"""

_KEY_SCRIPT = """
const KEY_ITEM = "rdio.docsKey";
function storedKey() {
  return sessionStorage.getItem(KEY_ITEM) || localStorage.getItem(%(console_item)s) || "";
}
async function loadSchema(key) {
  const headers = key ? { "X-API-Key": key } : {};
  const response = await fetch("/openapi.json", { headers });
  if (response.ok) return response.json();
  if (response.status === 401 || response.status === 403) return null;
  throw new Error("the API description did not load: HTTP " + response.status);
}
async function withSchema(show) {
  const form = document.getElementById("key-form");
  let key = storedKey();
  let spec = await loadSchema(key);
  while (spec === null) {
    form.hidden = false;
    if (key) document.getElementById("key-error").textContent = "That key was refused.";
    key = await new Promise((resolve) => {
      form.onsubmit = (event) => {
        event.preventDefault();
        resolve(document.getElementById("key-input").value.trim());
      };
    });
    spec = await loadSchema(key);
  }
  form.hidden = true;
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  show(spec, key);
}
"""


def _page(title: str, head: str, body: str, show: str) -> HTMLResponse:
    script = _KEY_SCRIPT % {"console_item": json.dumps(CONSOLE_KEY_ITEM)}
    return HTMLResponse(
        f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/docs/assets/favicon.png">{head}</head>
<body>{_KEY_FORM}{body}
<script>{script}
withSchema({show}).catch((error) => {{ document.body.append(String(error)); }});
</script></body></html>""",
        headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP},
    )


@router.get("/docs")
async def swagger_page() -> HTMLResponse:
    show = f"""(spec, key) => {{
  const ui = SwaggerUIBundle({{
    spec, dom_id: "#swagger-ui", deepLinking: true, persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
  }});
  if (key) ui.preauthorizeApiKey({json.dumps(SCHEME)}, key);
  window.ui = ui;
}}"""
    return _page(
        "rdio-api - Swagger UI",
        '<link rel="stylesheet" href="/docs/assets/swagger-ui.css">',
        '<div id="swagger-ui"></div><script src="/docs/assets/swagger-ui-bundle.js"></script>',
        show,
    )


@router.get("/redoc")
async def redoc_page() -> HTMLResponse:
    show = """(spec) => { Redoc.init(spec, {}, document.getElementById("redoc")); }"""
    return _page(
        "rdio-api - ReDoc",
        "",
        '<div id="redoc"></div><script src="/docs/assets/redoc.standalone.js"></script>',
        show,
    )
