"""API-key checks for the read and job routes (upload routes check the form's ``key``)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request

from rdio_api.state import AppState, get_state
from rdio_core.settings import ApiKey, Scope


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def has_scope(key: ApiKey, scope: Scope) -> bool:
    return scope in key.scopes or "admin" in key.scopes


def require(*scopes: Scope, public_ok: bool = False) -> Callable[..., ApiKey | None]:
    """A dependency that returns the caller's key (None when public read is allowed)."""

    def dependency(request: Request, state: AppState = Depends(get_state)) -> ApiKey | None:
        settings = state.settings
        token = presented_key(request)
        if token is None and public_ok and settings.auth.public_read:
            return None
        key = settings.find_key(token)
        if key is None or key.disabled:
            raise HTTPException(401, "Invalid API key", headers={"WWW-Authenticate": "Bearer"})
        client = request.client.host if request.client else None
        if not key.allows_ip(client):
            raise HTTPException(403, f"API key not allowed from {client}")
        if not any(has_scope(key, s) for s in scopes):
            raise HTTPException(403, f"API key lacks scope: {' or '.join(scopes)}")
        return key

    return dependency


read_access = require("read", public_ok=True)
