"""A call's audio for a worker that cannot see the audio directory: fetched from the API over HTTP.

A GPU box then needs no NFS, only the API's URL and a key with the ``worker`` scope (which may
fetch audio and nothing else). The file is streamed into the worker's own spool directory
(``<audio_dir>/.incoming``, the name the orphan sweep knows) while its SHA-256 is computed, and is
used only if the digest equals the one stored at upload:

- digest mismatch, a connection error, a 5xx: :class:`AudioFetchError`, transient (a proxy that cut
  the body, an API restarting); the job is retried and its attempt counter bounds the retries.
- 404 (no such call) or 410 (the audio was deleted by retention or is missing on the API's disk):
  :class:`AudioGoneError`, permanent: retrying cannot bring it back.
- 401/403 (a wrong key or a key without the ``worker`` scope): a configuration error, permanent,
  reported with the API's own words.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from rdio_core.models import Call
from rdio_core.settings import WorkerSettings
from rdio_core.storage import AudioStore
from rdio_tasks.errors import PermanentError

log = logging.getLogger(__name__)

CHUNK = 256 * 1024


class AudioFetchError(RuntimeError):
    """The audio could not be fetched intact this time (transient: retried)."""


class AudioGoneError(PermanentError):
    """The API has no audio for the call (404/410), or refuses the worker's key."""


def can_fetch(settings: WorkerSettings) -> bool:
    return settings.api_url is not None and settings.api_key is not None


@contextlib.contextmanager
def local_audio(store: AudioStore, call: Call, settings: WorkerSettings) -> Iterator[Path]:
    """The call's audio as a local path: the shared file when this worker sees it, else a fetched
    and verified copy that is deleted when the block ends."""
    path = store.absolute(call.audio_path)
    if path.is_file() or not can_fetch(settings):
        yield path  # a missing file with no API to ask is reported by the caller
        return
    fetched = fetch(store, call, settings)
    try:
        yield fetched
    finally:
        fetched.unlink(missing_ok=True)


def fetch(store: AudioStore, call: Call, settings: WorkerSettings) -> Path:
    """Download the call's audio into the spool directory, verified against ``call.audio_sha256``."""
    assert settings.api_url is not None and settings.api_key is not None
    url = f"{settings.api_url.rstrip('/')}/api/calls/{call.id}/audio"
    spooled = store.spool()
    started = time.perf_counter()
    try:
        with httpx.stream(
            "GET", url, headers={"X-API-Key": settings.api_key}, timeout=settings.fetch_timeout_seconds
        ) as response:
            _check_status(call.id, response)
            for chunk in response.iter_bytes(CHUNK):
                spooled.write(chunk)
        spooled.close()
    except httpx.HTTPError as exc:
        spooled.discard()
        raise AudioFetchError(f"call {call.id}: fetching audio from {url} failed: {exc}") from exc
    except BaseException:
        spooled.discard()
        raise
    if spooled.sha256 != call.audio_sha256:
        spooled.discard()
        raise AudioFetchError(
            f"call {call.id}: fetched audio does not match its stored sha256 "
            f"(got {spooled.sha256[:12]}..., expected {call.audio_sha256[:12]}...; {spooled.size} bytes)"
        )
    log.info(
        "call %s: fetched %d bytes of audio from the API in %.0f ms (sha256 verified)",
        call.id,
        spooled.size,
        (time.perf_counter() - started) * 1000,
    )
    return spooled.path


def _check_status(call_id: int, response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    response.read()
    detail = _detail(response)
    if response.status_code in (404, 410):
        raise AudioGoneError(
            f"call {call_id}: the API has no audio for it ({response.status_code}: {detail})"
        )
    if response.status_code in (401, 403):
        raise AudioGoneError(
            f"call {call_id}: the API refused worker.api_key ({response.status_code}: {detail}); "
            "it needs the `worker` scope"
        )
    raise AudioFetchError(f"call {call_id}: the API answered {response.status_code} for its audio: {detail}")


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body))[:200] if isinstance(body, dict) else str(body)[:200]
