"""Read an upload form the way SDRTrunk, trunk-recorder and other Rdio Scanner clients send it.

The body state machine is python-multipart's; the part headers are parsed here, leniently,
because real clients send ``filename ="x.mp3"`` (a space before ``=``), ``filename`` before
``name``, no part Content-Type, or a duplicated one.

What a client without a valid key can make the server hold is bounded (issue 13: ten stalled
no-key clients once raised RSS from 160 to 599 MB):
- the ``key`` part is checked the moment it ends: SDRTrunk sends it among the first parts, so a bad
  key is refused before any audio is read;
- audio is never held in memory: it streams to a temp file (trunk-recorder sends ``audio`` before
  ``key``), removed the moment the key fails or the request ends without being accepted;
- every byte received before a valid key counts against a per-address and a total budget
  (``PreAuthBudget``), and text received before the key is capped at ``PREAUTH_TEXT_BYTES``;
- the size cap applies to the bytes actually received (a chunked body declares no length), each
  body read must make progress within ``body_timeout_seconds`` and a valid key must come within
  ``unauthenticated_timeout_seconds`` (else 408), and a form has at most ``MAX_PARTS`` parts
  (100,000 tiny fields took ~2 s of event-loop time to parse).

Measured with ``bench/stalled.py``: 200 stalled no-key clients that each sent 1 MB of audio raise
the server's RSS by 14 MB (audio spooled to disk, removed when they go).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

from rdio_core.settings import ApiKey, UploadSettings
from rdio_core.storage import AudioStore, SpooledAudio

if TYPE_CHECKING:  # a typing-only name in python-multipart
    from python_multipart.multipart import MultipartCallbacks

# Text parts are small: trunk-recorder's meta JSON is the largest, a few KB (a long call's srcList
# a few tens of KB). Before the key only a little text is expected (SDRTrunk sends key first;
# trunk-recorder sends audio, audioName, audioType, dateTime, frequencies, frequency, then key).
MAX_TEXT_BYTES = 1_000_000
PREAUTH_TEXT_BYTES = 64 * 1024
MAX_PARTS = 64
# RFC 2046 allows 70 characters; leave room for odd clients, refuse the absurd (python-multipart
# failed with an internal error past 256).
MAX_BOUNDARY = 200
AUDIO_FIELD = "audio"
KEY_FIELD = "key"


class FormError(Exception):
    """The request cannot be read as an upload form: the status and text to answer."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


Authenticate = Callable[[str | None], ApiKey]
"""Checks a presented key (None: none was sent) and returns it, or raises FormError(401)."""


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    audio: SpooledAudio | None = None
    audio_filename: str | None = None
    audio_content_type: str | None = None
    boundary: str | None = None
    key: ApiKey | None = None

    def discard(self) -> None:
        """Remove the spooled audio unless it was committed (then its temp path is gone)."""
        if self.audio is not None:
            self.audio.discard()


class PreAuthBudget:
    """Bytes in flight from clients that have not shown a valid key, per address, per connection
    and in total.

    Used from the event loop only (no lock). An IPv6 client is counted by its /64: one host
    usually owns the whole prefix. The per-connection count matters on HTTP/2, where one
    connection carries many upload streams: past it the answer is 429 with ``Connection: close``,
    which ends the whole HTTP/2 connection with GOAWAY (``hypercorn_compat``)."""

    def __init__(self, per_client: int, total: int, per_connection: int | None = None) -> None:
        self.per_client = per_client
        self.total = total
        self.per_connection = per_connection if per_connection is not None else per_client
        self.in_flight = 0
        self._by_client: defaultdict[str, int] = defaultdict(int)
        self._by_connection: defaultdict[object, int] = defaultdict(int)

    @staticmethod
    def client_id(addr: str | None) -> str:
        if not addr:
            return "?"
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return addr
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)

    def take(self, client: str, n: int, connection: object = None) -> None:
        if connection is not None and self._by_connection[connection] + n > self.per_connection:
            raise FormError(
                429,
                "Too much unauthenticated upload data in flight on this connection; "
                "send the key part first or retry later.",
                {"Retry-After": "5"},
            )
        if self._by_client[client] + n > self.per_client:
            raise FormError(
                429,
                "Too much unauthenticated upload data in flight from this address; "
                "send the key part first or retry later.",
                {"Retry-After": "5"},
            )
        if self.in_flight + n > self.total:
            raise FormError(
                503, "Server busy with unauthenticated uploads; retry later.", {"Retry-After": "5"}
            )
        self._by_client[client] += n
        self.in_flight += n
        if connection is not None:
            self._by_connection[connection] += n

    def give_back(self, client: str, n: int, connection: object = None) -> None:
        if n <= 0:
            return
        self.in_flight -= n
        if connection is not None:
            rest = self._by_connection[connection] - n
            if rest > 0:
                self._by_connection[connection] = rest
            else:
                self._by_connection.pop(connection, None)
        left = self._by_client[client] - n
        if left > 0:
            self._by_client[client] = left
        else:
            self._by_client.pop(client, None)


def parse_header_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``type; k=v; k2 = "v2"`` into the main value and lower-cased params, tolerating spaces."""
    parts = _split_params(value)
    main = parts[0].strip().lower() if parts else ""
    params: dict[str, str] = {}
    for part in parts[1:]:
        if "=" not in part:
            continue
        key, _, raw = part.partition("=")
        raw = raw.strip()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace('\\"', '"')
        params[key.strip().lower()] = raw
    return main, params


# A quoted run (to its closing quote, or the end when unclosed), a run of plain text, or a ';'.
_PARAM_TOKENS = re.compile(r'"[^"]*(?:"|$)|[^;"]+|;')


def _split_params(value: str) -> list[str]:
    """Split on ';' outside double quotes. By tokens, not by character: the per-character loop
    was ~5% of the server's CPU per upload (12 headers parsed per SDRTrunk upload)."""
    if '"' not in value:
        return value.split(";")
    out: list[str] = []
    buf: list[str] = []
    for token in _PARAM_TOKENS.findall(value):
        if token == ";":
            out.append("".join(buf))
            buf = []
        else:
            buf.append(token)
    out.append("".join(buf))
    return out


class _PartCollector:
    """python-multipart callbacks: text fields into memory, the audio part into a spooled file."""

    def __init__(
        self, form: UploadForm, store: AudioStore, max_audio_bytes: int, authenticate: Authenticate
    ) -> None:
        self.form = form
        self.store = store
        self.max_audio_bytes = max_audio_bytes
        self.authenticate = authenticate
        self.parts = 0
        self.text_bytes = 0
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: list[tuple[str, str]] = []
        self.name: str | None = None
        self.filename: str | None = None
        self.content_type: str | None = None
        self.buf = bytearray()
        self.finished = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise FormError(413, f"Too many form parts (the limit is {MAX_PARTS}).")
        self.headers = []
        self.name = self.filename = self.content_type = None
        self.buf = bytearray()

    def on_header_end(self) -> None:
        name = self.header_field.decode("latin-1").strip().lower()
        value = self.header_value.decode("utf-8", "replace").strip()
        self.headers.append((name, value))
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        for name, value in self.headers:
            if name == "content-disposition":
                _, params = parse_header_params(value)
                self.name = params.get("name")
                self.filename = params.get("filename")
            elif name == "content-type" and self.content_type is None:
                self.content_type = value.split(";")[0].strip().lower() or None
        if self.name is None:
            raise FormError(400, "Invalid multipart body: a part has no name.")
        if self.name == AUDIO_FIELD:
            if self.form.audio is not None:
                raise FormError(400, "Invalid multipart body: more than one audio part.")
            self.form.audio = self.store.spool()
            self.form.audio_filename = self.filename
            self.form.audio_content_type = self.content_type
        elif self.name == KEY_FIELD and KEY_FIELD in self.form.fields:
            raise FormError(400, "Invalid multipart body: more than one key part.")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.name == AUDIO_FIELD:
            assert self.form.audio is not None
            if self.form.audio.size + (end - start) > self.max_audio_bytes:
                raise FormError(413, f"Audio too large: the limit is {self.max_audio_bytes} bytes.")
            self.form.audio.write(data[start:end])
            return
        self.text_bytes += end - start
        if self.form.key is None and self.text_bytes > PREAUTH_TEXT_BYTES:
            raise FormError(413, "Form fields too large before the key part.")
        if self.text_bytes > MAX_TEXT_BYTES:
            raise FormError(413, "Form fields too large.")
        self.buf.extend(data[start:end])

    def on_part_end(self) -> None:
        assert self.name is not None
        if self.name == AUDIO_FIELD:
            return
        value = self.buf.decode("utf-8", "replace")
        self.buf = bytearray()
        self.form.fields[self.name] = value
        if self.name == KEY_FIELD:
            self.form.key = self.authenticate(value.strip())

    def on_end(self) -> None:
        self.finished = True


async def _timed(
    body: AsyncIterator[bytes], limits: UploadSettings, authenticated: Callable[[], bool]
) -> AsyncIterator[bytes]:
    """Yield ``body``'s chunks; FormError(408) when one takes longer than body_timeout_seconds to
    arrive, or when no valid key has come unauthenticated_timeout_seconds after the start."""
    loop = asyncio.get_running_loop()
    key_deadline = loop.time() + limits.unauthenticated_timeout_seconds
    it = body.__aiter__()
    while True:
        wait = limits.body_timeout_seconds
        keyless = not authenticated()
        if keyless:
            wait = min(wait, key_deadline - loop.time())
        try:
            # asyncio.timeout, not wait_for: no Task per chunk on the upload hot path.
            async with asyncio.timeout(max(wait, 0.0)):
                chunk = await it.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            if keyless and loop.time() >= key_deadline:
                raise FormError(
                    408,
                    f"Request timed out: no valid key within {limits.unauthenticated_timeout_seconds:g} seconds.",
                ) from None
            raise FormError(
                408, f"Request body timed out: nothing received for {limits.body_timeout_seconds:g} seconds."
            ) from None
        yield chunk


async def read_form(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    limits: UploadSettings,
    store: AudioStore,
    authenticate: Authenticate,
    budget: PreAuthBudget,
    client: str | None,
    connection: object = None,
) -> UploadForm:
    """Read and authenticate the whole form from ``body`` or raise FormError with the answer.

    ``connection`` identifies the connection the request came on (budgets per connection; None
    counts per address and in total only). The returned form carries the checked key (``authenticate`` was called with the ``key`` part,
    or with None when none came). On any error its spooled audio is already removed."""
    media, params = parse_header_params(content_type or "")
    max_audio = limits.max_upload_bytes
    max_body = max_audio + MAX_TEXT_BYTES + 64 * 1024  # audio + text + multipart framing
    if content_length:
        try:
            declared = int(content_length)
        except ValueError:
            raise FormError(400, "Invalid Content-Length.") from None
        if declared > max_body:
            raise FormError(413, f"Upload too large: the audio limit is {max_audio} bytes.")

    urlencoded = media == "application/x-www-form-urlencoded"
    if not urlencoded:
        if media != "multipart/form-data":
            raise FormError(400, "Invalid content type: expected multipart/form-data.")
        boundary = params.get("boundary")
        if not boundary:
            raise FormError(400, "Invalid content type: multipart boundary missing.")
        if len(boundary) > MAX_BOUNDARY:
            raise FormError(400, f"Invalid content type: boundary longer than {MAX_BOUNDARY} characters.")

    who = PreAuthBudget.client_id(client)
    held = 0  # bytes counted against the budget, returned when the key checks out or at the end
    received = 0
    form = UploadForm(boundary=None if urlencoded else params["boundary"])
    try:
        if urlencoded:
            raw = bytearray()
            async for chunk in _timed(body, limits, lambda: False):
                budget.take(who, len(chunk), connection)
                held += len(chunk)
                raw.extend(chunk)
                if len(raw) > PREAUTH_TEXT_BYTES:
                    raise FormError(413, "Form too large.")
            form.fields = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
            form.key = authenticate(form.fields.get(KEY_FIELD, "").strip() or None)
            return form

        collector = _PartCollector(form, store, max_audio, authenticate)
        parser = MultipartParser(params["boundary"], collector.callbacks(), max_header_count=16)
        async for chunk in _timed(body, limits, lambda: form.key is not None):
            if not chunk:
                continue
            received += len(chunk)
            if received > max_body:
                raise FormError(413, f"Upload too large: the audio limit is {max_audio} bytes.")
            if form.key is None:
                budget.take(who, len(chunk), connection)
                held += len(chunk)
            parser.write(chunk)
            if form.key is not None and held:
                budget.give_back(who, held, connection)
                held = 0
        parser.finalize()
        if not collector.finished:
            raise FormError(400, "Invalid multipart body: truncated (no closing boundary).")
        if form.key is None:
            form.key = authenticate(None)
        return form
    except MultipartParseError as exc:
        form.discard()
        raise FormError(400, f"Invalid multipart body: {exc}") from None
    except BaseException:
        form.discard()
        raise
    finally:
        budget.give_back(who, held, connection)
