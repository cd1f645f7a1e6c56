"""Decode uploaded call audio to the 16 kHz mono float32 array WhisperX expects.

WhisperX's own ``load_audio`` shells out to an ``ffmpeg`` binary, which the worker
image does not ship; PyAV bundles the FFmpeg libraries in its wheel, so decoding
works with no system dependency and fails with a Python exception instead of a
subprocess error. Scanner systems upload M4A/AAC, MP3 and WAV (often 8 kHz), so
everything is resampled here once, before any model sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rdio_tasks.errors import AudioDecodeError

if TYPE_CHECKING:
    import av
    import numpy as np

__all__ = ["AudioDecodeError", "decode_audio"]

logger = logging.getLogger(__name__)


def decode_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream of ``path`` to mono float32 in [-1, 1].

    Resampling and downmixing go through ``av.AudioResampler`` (libswresample),
    so 8 kHz and stereo uploads come out at ``sample_rate`` mono.

    Raises:
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

    chunks: list[np.ndarray] = []
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
        for frame in _decoded_frames(container, stream, path.name):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):  # flush samples buffered by the resampler
            chunks.append(out.to_ndarray().reshape(-1))
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError) as exc:
        raise AudioDecodeError(f"cannot decode {path.name}: {exc}") from exc
    finally:
        # No gc.collect() here (faster-whisper does one per decode): with torch loaded a
        # full collection costs ~200 ms per call, and with PyAV 18 RSS stays flat over
        # hundreds of decodes without it.
        container.close()

    if not chunks:
        raise AudioDecodeError(f"{path.name} decoded to zero audio samples")
    audio = np.concatenate(chunks).astype(np.float32, copy=False)
    if audio.size == 0:
        raise AudioDecodeError(f"{path.name} decoded to zero audio samples")
    # Float codecs and resampler ringing on clipped input can still overshoot slightly.
    np.clip(audio, -1.0, 1.0, out=audio)
    return audio


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
