"""Error taxonomy shared by the transcription worker.

Celery tasks decide whether to retry based on the exception class: anything
derived from :class:`PermanentError` will fail the same way on every attempt
(bad input, missing model), so retrying only wastes worker time.
"""

from __future__ import annotations

__all__ = ["AudioDecodeError", "AudioTooLongError", "ModelNotFoundError", "PermanentError"]


class PermanentError(Exception):
    """A failure that retrying cannot fix; tasks should not retry it."""


class AudioDecodeError(PermanentError):
    """The uploaded audio is unreadable, has no audio stream or holds no samples."""


class ModelNotFoundError(PermanentError):
    """The requested Whisper model is neither local nor downloadable right now."""


class AudioTooLongError(PermanentError):
    """More audio decoded than the limit allows; decoding stopped there (a skip, not a failure)."""

    def __init__(self, name: str, decoded_seconds: float, limit_seconds: float) -> None:
        self.decoded_seconds = decoded_seconds
        self.limit_seconds = limit_seconds
        super().__init__(
            f"{name}: audio too long: decoding stopped at {decoded_seconds:.1f}s, over the"
            f" {limit_seconds:g}s limit"
        )
