"""Identify uploaded audio from its bytes and read its real duration.

Clients lie about names and types (SDRTrunk sends no Content-Type at all), so the format is
sniffed from magic bytes and confirmed by parsing the container with mutagen (pure Python: the
API install stays free of ffmpeg and torch).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mutagen import MutagenError
from mutagen.aac import AAC
from mutagen.flac import FLAC
from mutagen.mp3 import MPEGInfo
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE


class NotAudioError(ValueError):
    """The bytes are not a supported audio format."""


@dataclass(frozen=True)
class AudioInfo:
    kind: str  # mp3 | m4a | wav | flac | opus | ogg | aac
    mime: str
    extension: str
    duration_seconds: float | None


_MIME = {
    "mp3": ("audio/mpeg", "mp3"),
    "m4a": ("audio/mp4", "m4a"),
    "wav": ("audio/wav", "wav"),
    "flac": ("audio/flac", "flac"),
    "opus": ("audio/ogg", "opus"),
    "ogg": ("audio/ogg", "ogg"),
    "aac": ("audio/aac", "aac"),
}


def _looks_like_mpeg_frame(data: bytes) -> bool:
    # 11-bit frame sync, a valid layer (III for mp3), a bitrate index that is not 'bad'.
    if len(data) < 4 or data[0] != 0xFF or (data[1] & 0xE0) != 0xE0:
        return False
    layer = (data[1] >> 1) & 0x3
    bitrate_index = data[2] >> 4
    sample_rate_index = (data[2] >> 2) & 0x3
    return layer == 0x1 and bitrate_index not in (0x0, 0xF) and sample_rate_index != 0x3


def sniff(data: bytes) -> str | None:
    """Return the container kind from magic bytes, or None when nothing matches."""
    head = data[:64]
    if head.startswith(b"ID3") or _looks_like_mpeg_frame(head):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "m4a"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        if b"OpusHead" in data[:128]:
            return "opus"
        if b"\x01vorbis" in data[:128]:
            return "ogg"
        return None
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xF6) == 0xF0:
        return "aac"  # ADTS
    return None


# Containers whose length is measured here, not taken from a header: WAV, from the data bytes
# present (wav_seconds). FLAC's total_samples may legitimately be 0 ("unknown") and, like MP3/AAC
# estimates and MP4's mvhd, can claim any length: the worker measures those by decoding.
_EXACT_LENGTH = frozenset({"wav"})
#: How much of a WAV's start is searched for its ``fmt `` and ``data`` chunks (LIST/bext chunks
#: before the samples are a few KB).
_WAV_HEAD_BYTES = 1 << 16
_WAV_SIZE_UNKNOWN = (0, 0xFFFFFFFF)  # what streaming writers leave in a size they never came back to


def wav_seconds(head: bytes, total_size: int) -> float | None:
    """Seconds of audio a WAV holds, from the bytes present after its ``data`` chunk header.

    The header's size is a claim: a file holding 2 s of speech whose data chunk said 10 hours was
    stored as 36,000 s and skipped as too long. FFmpeg (the worker's decoder) reads to the end of
    the file when the size is 0 or runs past it, and stops at the size when it is shorter; so does
    this. ``head`` is the file's first bytes (``_WAV_HEAD_BYTES``), ``total_size`` its length. None
    when the chunks are not within the head (the caller keeps the parser's figure)."""
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk_id, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if chunk_id == b"fmt " and pos + 20 <= len(head):
            byte_rate = int.from_bytes(head[pos + 16 : pos + 20], "little")
        elif chunk_id == b"data":
            present = max(total_size - (pos + 8), 0)
            used = present if size in _WAV_SIZE_UNKNOWN else min(size, present)
            return used / byte_rate if byte_rate else None
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


class _MpegFrames:
    """MP3 as its MPEG frames alone: the ID3 tags are not parsed (nothing reads them). Same
    durations on every test clip; 0.19 -> 0.08 ms per call, ~6% of an upload's server CPU."""

    def __init__(self, source: Path | IO[bytes]) -> None:
        if isinstance(source, Path):
            with source.open("rb") as fh:
                self.info = MPEGInfo(fh)
        else:
            self.info = MPEGInfo(source)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "mp3": _MpegFrames,
    "m4a": MP4,
    "wav": WAVE,
    "flac": FLAC,
    "opus": OggOpus,
    "ogg": OggVorbis,
    "aac": AAC,
}


def probe(source: bytes | Path) -> AudioInfo:
    """Identify the audio in ``source`` (bytes or a file) and read its duration.

    Raises NotAudioError for anything else, and for a container that says it holds no samples
    (a 44-byte WAV header with an empty data chunk used to be accepted as a call)."""
    if isinstance(source, Path):
        with source.open("rb") as fh:
            head = fh.read(_WAV_HEAD_BYTES)
        total_size = source.stat().st_size
    else:
        head, total_size = source[:_WAV_HEAD_BYTES], len(source)
    if not head:
        raise NotAudioError("empty audio")
    kind = sniff(head[:128])
    if kind is None:
        raise NotAudioError("unrecognised audio format (expected MP3, M4A/AAC, WAV, FLAC, OGG/Opus)")
    try:
        parsed = _PARSERS[kind](source if isinstance(source, Path) else io.BytesIO(source))
    except (
        MutagenError,
        ValueError,
        EOFError,
        IndexError,
        KeyError,
        ZeroDivisionError,
        OverflowError,
    ) as exc:
        raise NotAudioError(f"corrupt {kind} audio: {exc}") from None
    length = getattr(parsed.info, "length", None)
    if kind == "wav":
        measured = wav_seconds(head, total_size)
        length = measured if measured is not None else length
    if kind in _EXACT_LENGTH and not length:
        raise NotAudioError(f"{kind} audio with no samples")
    duration = round(float(length), 3) if length and length > 0 else None
    mime, ext = _MIME[kind]
    return AudioInfo(kind=kind, mime=mime, extension=ext, duration_seconds=duration)
