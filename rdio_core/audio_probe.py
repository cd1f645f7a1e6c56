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


# Containers whose header states the sample count exactly (WAV: the data chunk's size). FLAC's
# total_samples may legitimately be 0 ("unknown"), so its length is checked by the worker after
# decoding instead; MP3/AAC lengths are estimates.
_EXACT_LENGTH = frozenset({"wav"})


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
            head = fh.read(128)
    else:
        head = source[:128]
    if not head:
        raise NotAudioError("empty audio")
    kind = sniff(head)
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
    if kind in _EXACT_LENGTH and not length:
        raise NotAudioError(f"{kind} audio with no samples")
    duration = round(float(length), 3) if length and length > 0 else None
    mime, ext = _MIME[kind]
    return AudioInfo(kind=kind, mime=mime, extension=ext, duration_seconds=duration)
