"""Read an upload form the way SDRTrunk, trunk-recorder and other Rdio Scanner clients send it.

The body state machine is python-multipart's; the part headers are parsed here, leniently,
because real clients send ``filename ="x.mp3"`` (a space before ``=``), ``filename`` before
``name``, no part Content-Type, or a duplicated one. Audio is held in memory (capped by
``max_upload_bytes``) so a rejected upload never touches the disk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser

# Text parts are small (trunk-recorder's meta JSON is the largest, a few KB).
MAX_TEXT_BYTES = 1_000_000
AUDIO_FIELD = "audio"


class FormError(Exception):
    """The request body cannot be read as an upload form."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    audio: bytes | None = None
    audio_filename: str | None = None
    audio_content_type: str | None = None
    boundary: str | None = None


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


def _split_params(value: str) -> list[str]:
    """Split on ';' outside double quotes."""
    out: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


class _PartCollector:
    """python-multipart callbacks that gather text fields and the audio part."""

    def __init__(self, form: UploadForm, max_audio_bytes: int) -> None:
        self.form = form
        self.max_audio_bytes = max_audio_bytes
        self.text_bytes = 0
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: list[tuple[str, str]] = []
        self.name: str | None = None
        self.filename: str | None = None
        self.content_type: str | None = None
        self.buf = bytearray()
        self.finished = False

    def callbacks(self) -> dict:
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

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self.buf.extend(data[start:end])
        if self.name == AUDIO_FIELD:
            if len(self.buf) > self.max_audio_bytes:
                raise FormError(413, f"Audio too large: the limit is {self.max_audio_bytes} bytes.")
        else:
            self.text_bytes += end - start
            if self.text_bytes > MAX_TEXT_BYTES:
                raise FormError(413, "Form fields too large.")

    def on_part_end(self) -> None:
        assert self.name is not None
        if self.name == AUDIO_FIELD:
            self.form.audio = bytes(self.buf)
            self.form.audio_filename = self.filename
            self.form.audio_content_type = self.content_type
        else:
            self.form.fields[self.name] = self.buf.decode("utf-8", "replace")

    def on_end(self) -> None:
        self.finished = True


async def read_form(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    max_audio_bytes: int,
) -> UploadForm:
    """Read the whole form from ``body`` or raise FormError with the status to answer."""
    media, params = parse_header_params(content_type or "")
    limit = max_audio_bytes + MAX_TEXT_BYTES
    if content_length:
        try:
            declared = int(content_length)
        except ValueError:
            raise FormError(400, "Invalid Content-Length.") from None
        if declared > limit:
            raise FormError(413, f"Upload too large: the audio limit is {max_audio_bytes} bytes.")

    if media == "application/x-www-form-urlencoded":
        raw = bytearray()
        async for chunk in body:
            raw.extend(chunk)
            if len(raw) > MAX_TEXT_BYTES:
                raise FormError(413, "Form too large.")
        return UploadForm(fields=dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)))

    if media != "multipart/form-data":
        raise FormError(400, "Invalid content type: expected multipart/form-data.")
    boundary = params.get("boundary")
    if not boundary:
        raise FormError(400, "Invalid content type: multipart boundary missing.")

    form = UploadForm(boundary=boundary)
    collector = _PartCollector(form, max_audio_bytes)
    parser = MultipartParser(boundary, collector.callbacks(), max_header_count=16)
    try:
        async for chunk in body:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise FormError(400, f"Invalid multipart body: {exc}") from None
    if not collector.finished:
        raise FormError(400, "Invalid multipart body: truncated (no closing boundary).")
    return form
