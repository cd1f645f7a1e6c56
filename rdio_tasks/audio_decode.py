"""Decode uploaded call audio to the 16 kHz mono float32 array WhisperX expects.

WhisperX's own ``load_audio`` shells out to an ``ffmpeg`` binary, which the worker
image does not ship; PyAV bundles the FFmpeg libraries in its wheel, so decoding
works with no system dependency and fails with a Python exception instead of a
subprocess error. Scanner systems upload M4A/AAC, MP3 and WAV (often 8 kHz), so
everything is resampled here once, before any model sees it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rdio_tasks.errors import AudioDecodeError, AudioTooLongError

if TYPE_CHECKING:
    import av
    import numpy as np

__all__ = ["LENGTH_TOLERANCE_SECONDS", "AudioDecodeError", "AudioTooLongError", "decode_audio"]

logger = logging.getLogger(__name__)

#: How far decoded audio may run past ``max_seconds`` before it counts as too long. Encoder priming
#: and padding (MP3 ~1,100 samples, AAC 2,112, i.e. ~0.3 s at 8 kHz) make a file decode a little
#: longer than its header says; a call the API accepted on its header must not be skipped for that.
LENGTH_TOLERANCE_SECONDS = 0.5
#: First allocation of the sample buffer; it doubles from there (radio calls are mostly < 30 s).
_FIRST_SECONDS = 30


def decode_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono float32 in [-1, 1].

    Resampling and downmixing go through ``av.AudioResampler`` (libswresample),
    so 8 kHz and stereo uploads come out at ``sample_rate`` mono.

    ``max_seconds`` bounds the decode itself: it stops as soon as the output passes
    ``max_seconds + LENGTH_TOLERANCE_SECONDS``, so memory never exceeds the limit whatever the
    header claims. A FLAC whose header says ``total_samples=0`` carries no duration for the API to
    check; its 656 KB of 1 h silence used to decode in full (peak RSS 532 MB). With a 900 s limit
    the same file stops at 900.5 s.

    Raises:
        AudioTooLongError: more than ``max_seconds`` (+ tolerance) decoded; a permanent error.
        AudioDecodeError: the file is missing, not a media file, has no audio
            stream, or decodes to zero samples. It derives from
            ``PermanentError`` because a retry would fail the same way.
    """
    import av  # lazy: the API process imports rdio_tasks without av or numpy installed
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"audio file not found: {path}")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"audio file is empty (0 bytes): {path}")

    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioDecodeError(f"cannot open {path.name} as audio: {exc}") from exc

    limit = None if max_seconds is None else int((max_seconds + LENGTH_TOLERANCE_SECONDS) * sample_rate)
    samples = _SampleBuffer(sample_rate * _FIRST_SECONDS, limit)
    try:
        if not container.streams.audio:
            raise AudioDecodeError(f"no audio stream in {path.name}")
        stream = container.streams.audio[0]
        # libswresample does not normalise the downmix matrix for float output, so a
        # stereo file would come out as 0.707*(L+R) and clip; rematrix_maxval=1
        # gives the plain channel average that Whisper's ffmpeg "-ac 1" produces.
        resampler = av.AudioResampler(
            format="flt", layout="mono", rate=sample_rate, options={"rematrix_maxval": "1.0"}
        )
        # The final None flushes the samples the resampler still buffers.
        for frame in itertools.chain(_decoded_frames(container, stream, path.name), [None]):
            for out in resampler.resample(frame):
                if not samples.append(out.to_ndarray().reshape(-1)):
                    raise AudioTooLongError(path.name, samples.overflow / sample_rate, max_seconds or 0.0)
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError) as exc:
        raise AudioDecodeError(f"cannot decode {path.name}: {exc}") from exc
    finally:
        # No gc.collect() here (faster-whisper does one per decode): with torch loaded a
        # full collection costs ~200 ms per call, and with PyAV 18 RSS stays flat over
        # hundreds of decodes without it.
        container.close()

    if samples.size == 0:
        raise AudioDecodeError(f"{path.name} decoded to zero audio samples")
    audio = samples.array()
    # Float codecs and resampler ringing on clipped input can still overshoot slightly.
    np.clip(audio, -1.0, 1.0, out=audio)
    return audio


class _SampleBuffer:
    """Decoded samples in one float32 array that grows by doubling, up to ``limit`` samples.

    Collecting per-frame chunks and concatenating them at the end held the audio twice: that is
    how 1 h of audio (57.6 M samples, 230 MB at 16 kHz) peaked at 532 MB RSS (310 MB now, with no
    limit). ``ndarray.resize`` is a ``realloc``, which glibc serves with ``mremap`` for blocks this
    large, so growing does not copy and the peak stays near one copy of the audio, never above the
    limit.
    """

    def __init__(self, first: int, limit: int | None) -> None:
        import numpy as np

        self.limit = limit
        self.data = np.empty(first if limit is None else min(first, limit), dtype=np.float32)
        self.size = 0
        self.overflow = 0  # samples decoded when the limit was passed (0 while within it)

    def append(self, chunk: np.ndarray) -> bool:
        """Add ``chunk``; False (nothing added) when it would pass the limit."""
        end = self.size + chunk.size
        if self.limit is not None and end > self.limit:
            self.overflow = end
            return False
        if end > self.data.size:
            grown = max(end, 2 * self.data.size)
            self.data.resize(grown if self.limit is None else min(grown, self.limit), refcheck=False)
        self.data[self.size : end] = chunk
        self.size = end
        return True

    def array(self) -> np.ndarray:
        """The samples, trimmed to size in place (no copy)."""
        self.data.resize(self.size, refcheck=False)
        return self.data


def _decoded_frames(
    container: av.container.InputContainer, stream: av.AudioStream, name: str
) -> Iterator[av.AudioFrame]:
    """Yield decoded frames, tolerating corrupt packets.

    Radio recorders sometimes upload files truncated or damaged mid-stream; the
    intact audio is still worth transcribing, so bad packets are skipped with a
    warning. The file is rejected only when nothing at all decodes.
    """
    import av

    got_any = False
    first_error: Exception | None = None
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except av.FFmpegError as exc:  # container-level damage: nothing after it is reachable
            first_error = first_error or exc
            logger.warning("audio %s: demux error, stopping: %s", name, exc)
            break
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            first_error = first_error or exc
            logger.warning("audio %s: skipping undecodable packet: %s", name, exc)
            continue
        for frame in frames:
            got_any = True
            yield frame
    if not got_any and first_error is not None:
        raise AudioDecodeError(f"cannot decode {name}: {first_error}") from first_error
