"""Cross-call batching gives the same transcripts as decoding each call on its own (real tiny.en)."""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.worker
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")


def corpus_calls(subsets=("radio_mp3", "radio_m4a")) -> list:
    from rdio_tasks.audio_decode import decode_audio

    rows = [line.split("\t") for line in (REPO / "tests/corpus/manifest.tsv").read_text().splitlines()[1:]]
    return [decode_audio(REPO / "tests/corpus" / r[0]) for r in rows if r[1] in subsets]


def test_batched_transcripts_equal_per_call():
    from rdio_core.text_normalize import wer
    from rdio_tasks.asr import EngineConfig, get_engine

    calls = corpus_calls()
    assert len(calls) == 12
    per_call_cfg = EngineConfig(model="tiny.en", batch_size=8, cross_call_batching=False)
    engine = get_engine(per_call_cfg)
    per_call = [engine.transcribe(audio).text for audio in calls]
    assert engine.batch_stats == {}  # the per-call path never touched the batcher

    engine.reconfigure(dataclasses.replace(per_call_cfg, cross_call_batching=True, max_batch_wait_ms=50))
    with ThreadPoolExecutor(6) as pool:
        batched = [r.text for r in pool.map(engine.transcribe, calls)]
    stats = engine.batch_stats
    assert stats["items"] >= len(calls) and stats["mean_batch"] > 1.2, stats  # chunks really shared passes

    assert any(per_call)  # the corpus is speech: an all-empty comparison would prove nothing
    for solo, shared in zip(per_call, batched, strict=True):
        assert solo == shared or wer(solo, shared) < 0.01, (solo, shared)


def test_batch_size_one_turns_batching_off():
    from rdio_tasks.asr import EngineConfig, get_engine

    calls = corpus_calls(("radio_mp3",))[:3]
    engine = get_engine(EngineConfig(model="tiny.en", batch_size=1, cross_call_batching=True))
    with ThreadPoolExecutor(3) as pool:
        texts = [r.text for r in pool.map(engine.transcribe, calls)]
    assert engine.batch_stats == {} and all(texts)


def test_every_call_gives_up_its_place_in_the_batcher() -> None:
    """A call is expected by the batcher from its first step; one without speech never submits and
    must still withdraw, or every later batch would wait the whole ``max_prepare_wait_ms``."""
    import numpy as np

    from rdio_tasks.asr import EngineConfig, clear_engines, get_engine

    engine = get_engine(EngineConfig(model="tiny.en", batch_size=8, max_prepare_wait_ms=60_000))
    try:
        batcher = engine._batches.get(engine.config)
        assert batcher is not None and batcher.max_expect == 60.0
        assert engine.transcribe(np.zeros(3 * 16000, dtype=np.float32)).no_speech
        assert sum(batcher._expected.values()) == 0
        assert engine.transcribe(corpus_calls(("radio_mp3",))[0]).text
        assert sum(batcher._expected.values()) == 0 and engine.batch_stats["items"] >= 1
    finally:
        clear_engines()  # the next module gets an engine without the long wait
