"""Error taxonomy of the transcription worker, and the one place that sorts an exception into it.

A job's failure is one of three kinds, decided by :func:`classify` and nowhere else:

* **transient**: the same call may well succeed in a moment (broker or database hiccup, CUDA out of
  memory while other calls hold the GPU, the model's files unreachable for now). The job goes back
  to ``queued`` and Celery retries it with exponential backoff; the database's attempt counter
  bounds the retries (``transcription.max_attempts``).
* **permanent**: :class:`PermanentError`, input or model problems that fail the same way on every
  attempt (unreadable audio, a model that does not exist). The job ends ``failed`` with the reason.
* **bug**: programming and configuration errors (``TypeError``, ``ValueError``, ``KeyError``,
  ``AttributeError``, ``ConfigError``, an SQL statement the database refuses...). Retrying runs the
  same code on the same data, so the job ends ``failed`` at once with the exception named, instead of
  spending ``max_attempts`` model runs and backoff delays to reach the same end.

Anything else (``RuntimeError``, ``OSError``, ...) counts as transient: that is how CUDA, ctranslate2
and the file system report faults of the moment, and the attempt counter still bounds it.
"""

from __future__ import annotations

import sys
from enum import StrEnum

from sqlalchemy import exc as sa_exc

from rdio_core.settings import ConfigError

__all__ = [
    "AudioDecodeError",
    "AudioTooLongError",
    "ErrorKind",
    "ModelNotFoundError",
    "PermanentError",
    "TransientError",
    "classify",
    "describe",
]


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


class TransientError(Exception):
    """A transient failure, already handed back to the queue: Celery retries the task on it."""


class ErrorKind(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    BUG = "bug"


#: Programming and configuration errors: the same code on the same data fails the same way.
#: (LookupError covers KeyError and IndexError; pydantic's ValidationError is a ValueError.)
_BUGS: tuple[type[BaseException], ...] = (
    TypeError,
    ValueError,
    LookupError,
    AttributeError,
    NameError,
    ImportError,
    AssertionError,
    NotImplementedError,
    ArithmeticError,
    ConfigError,
    # The database refused the statement itself (bad SQL, a constraint, a value of the wrong type).
    sa_exc.ProgrammingError,
    sa_exc.IntegrityError,
    sa_exc.DataError,
    sa_exc.ArgumentError,
)

#: Faults of the moment. The database ones come first: a lost connection is not a bug.
_TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    MemoryError,
    sa_exc.OperationalError,  # connection lost, server restarting, SQLite "database is locked"
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,  # connection pool exhausted
)

#: Transient errors of libraries the slim API install may lack, by module and class name. Looked up
#: in ``sys.modules`` only: an exception of a module that was never imported cannot have been raised.
_TRANSIENT_ELSEWHERE = (
    ("redis.exceptions", "ConnectionError"),  # BusyLoadingError is one too
    ("redis.exceptions", "TimeoutError"),
    ("kombu.exceptions", "OperationalError"),
    ("torch", "OutOfMemoryError"),  # torch.cuda.OutOfMemoryError
    # The hub unreachable while the model loads: faster-whisper's download times out or the files
    # are not in the cache yet. (It subclasses ValueError, hence the check before _BUGS.)
    ("huggingface_hub.errors", "LocalEntryNotFoundError"),
    ("requests.exceptions", "ConnectionError"),
    ("requests.exceptions", "Timeout"),
    ("httpx", "TransportError"),
)

#: How ctranslate2 and CUDA report exhausted device memory: a RuntimeError with these words.
_OUT_OF_MEMORY = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED")


def _loaded(module: str, name: str) -> type[BaseException] | None:
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def classify(exc: BaseException) -> ErrorKind:
    """Sort a job's failure into transient, permanent or bug (see the module docstring)."""
    if isinstance(exc, PermanentError):
        return ErrorKind.PERMANENT
    elsewhere = tuple(t for t in (_loaded(m, n) for m, n in _TRANSIENT_ELSEWHERE) if t is not None)
    if isinstance(exc, _TRANSIENT + elsewhere):
        return ErrorKind.TRANSIENT
    if isinstance(exc, RuntimeError) and any(words in str(exc) for words in _OUT_OF_MEMORY):
        return ErrorKind.TRANSIENT
    if isinstance(exc, _BUGS):
        return ErrorKind.BUG
    return ErrorKind.TRANSIENT


def describe(exc: BaseException) -> str:
    """The reason stored on the job: the exception's class and message, on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
