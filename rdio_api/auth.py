"""Who may do what with an API key: the one place a scope is tested.

The FastAPI side (which headers carry a key, which routes are public) is in rdio_api.deps; the
upload routes check the form's ``key`` with :func:`has_scope` too, and ``rdio-api up`` lists the
upload keys with it.
"""

from __future__ import annotations

from fastapi import HTTPException

from rdio_core.settings import ApiKey, Scope, Settings

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def has_scope(key: ApiKey, scope: Scope) -> bool:
    """``admin`` holds every scope."""
    return scope in key.scopes or "admin" in key.scopes


def check_key(settings: Settings, token: str, client: str | None, scopes: tuple[Scope, ...]) -> ApiKey:
    """The enabled key ``token`` names, allowed from ``client`` and holding one of ``scopes``;
    else 401 (no or unknown key) or 403 (wrong address or scope)."""
    if not token:
        raise HTTPException(401, "API key required (X-API-Key or Authorization: Bearer)", headers=_CHALLENGE)
    key = settings.find_key(token)
    if key is None or key.disabled:
        raise HTTPException(401, "Invalid API key", headers=_CHALLENGE)
    if not key.allows_ip(client):
        raise HTTPException(403, f"API key not allowed from {client}")
    if not any(has_scope(key, s) for s in scopes):
        raise HTTPException(403, f"API key lacks scope: {' or '.join(scopes)}")
    return key


def upload_keys(settings: Settings) -> list[ApiKey]:
    """The enabled keys that may upload."""
    return [k for k in settings.api_keys if not k.disabled and has_scope(k, "upload")]
