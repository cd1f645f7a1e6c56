"""Error taxonomy shared by the transcription worker.

Celery tasks decide whether to retry based on the exception class: anything
derived from :class:`PermanentError` will fail the same way on every attempt
(bad input, missing model), so retrying only wastes worker time.
"""

from __future__ import annotations

__all__ = ["AudioDecodeError", "ModelNotFoundError", "PermanentError"]


class PermanentError(Exception):
    """A failure that retrying cannot fix; tasks should not retry it."""


class AudioDecodeError(PermanentError):
    """The uploaded audio is unreadable, has no audio stream or holds no samples."""


class ModelNotFoundError(PermanentError):
    """The requested Whisper model is neither local nor downloadable right now."""
