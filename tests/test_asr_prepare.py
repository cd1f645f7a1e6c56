"""Call preparation in a pool of processes equals preparation in the call's thread (real VAD, tiny.en)."""

from __future__ import annotations

import dataclasses
import os
import signal
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest

from rdio_tasks.priority_lock import PriorityLock
from tests.helpers import wait_for
from tests.test_asr_batching import corpus_calls

pytestmark = [
    pytest.mark.worker,
    pytest.mark.filterwarnings("ignore:.*torchcodec is not installed correctly"),
]
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")


@pytest.fixture(scope="module")
def pool():
    from rdio_tasks.asr.prepare import PreparePool

    pool = PreparePool(1)  # one process: each costs a torch import and a VAD load
    pool.warm()
    yield pool
    pool.close()


def test_pool_prepares_what_the_thread_prepares(pool) -> None:
    """Windows, conditioning report and features are identical, byte for byte, on corpus calls
    (radio MP3/M4A and a clean clip): the pool changes where preparation runs, not its result."""
    import numpy as np
    import torch
    from whisperx.vads import Pyannote

    from rdio_tasks.asr.prepare import VadParams, prepare
    from rdio_tasks.radio import RadioOptions

    vad = Pyannote(torch.device("cpu"), token=None, vad_onset=0.5, vad_offset=0.363)
    options = RadioOptions()
    params = VadParams(onset=0.3, offset=0.2)
    calls = corpus_calls(("radio_mp3", "radio_m4a", "clean"))[::4]
    for samples in calls:
        here = prepare(samples, options, vad, params, 80, PriorityLock())
        there = pool.prepare(samples, options, params, 80)
        assert there is not None
        assert here.chunks and there.chunks == here.chunks
        assert there.info == here.info and there.speech_seconds == here.speech_seconds
        assert np.array_equal(there.audio, here.audio)
        assert len(there.features) == len(here.features)
        for a, b in zip(there.features, here.features, strict=True):
            assert isinstance(a, np.ndarray) and a.shape == (80, 3000) and np.array_equal(a, b)


def test_pool_survives_a_killed_process(pool) -> None:
    """A killed child breaks the pool: that call is handed back (None, prepared in the thread by the
    engine) and the next one runs in a new pool."""
    from rdio_tasks.asr.prepare import VadParams
    from rdio_tasks.radio import RadioOptions

    samples = corpus_calls(("radio_mp3",))[0]
    params = VadParams(onset=0.3, offset=0.2)
    before = pool.pids()
    assert len(before) == 1
    os.kill(before[0], signal.SIGKILL)
    outcomes = [pool.prepare(samples, RadioOptions(), params, 80) for _ in range(2)]
    assert outcomes[0] is None, outcomes  # the broken pool was seen, not hidden
    assert outcomes[1] is not None and outcomes[1].chunks
    assert before[0] not in pool.pids() and len(pool.pids()) == 1


def test_engine_with_preparation_processes_transcribes_the_same():
    """The whole radio path with a preparation process, batched across calls, gives the texts of the
    in-thread path; a killed preparation process costs no call; switched off, the process goes."""
    from rdio_tasks.asr import EngineConfig, get_engine

    calls = corpus_calls()[:4]
    config = EngineConfig(model="tiny.en", batch_size=4, prepare_processes=0, align=False)
    engine = get_engine(config)
    assert engine._prepare_pool is None
    in_thread = [engine.transcribe(audio).text for audio in calls]

    engine.reconfigure(dataclasses.replace(config, prepare_processes=1))
    with ThreadPoolExecutor(4) as threads:
        pooled = [r.text for r in threads.map(engine.transcribe, calls)]
    pool = engine._prepare_pool
    assert pool is not None and len(pool.pids()) == 1
    assert any(in_thread) and pooled == in_thread

    (child,) = pool.pids()
    os.kill(child, signal.SIGKILL)
    with ThreadPoolExecutor(4) as threads:
        after_kill = [r.text for r in threads.map(engine.transcribe, calls)]
    assert after_kill == in_thread
    assert engine.transcribe(calls[1]).text == in_thread[1]  # served by a new process
    (restarted,) = pool.pids()
    assert restarted != child

    engine.reconfigure(dataclasses.replace(config, prepare_processes=0))
    assert engine.transcribe(calls[0]).text == in_thread[0]
    assert engine._prepare_pool is None
    assert wait_for(lambda: not psutil.pid_exists(restarted))  # switched off: its process ended


def test_a_pool_that_cannot_start_gives_up_and_leaves_calls_to_the_thread() -> None:
    """An initializer that fails (here a VAD device that does not exist) breaks each new pool; after
    MAX_BREAKS in a row the pool stays off and answers None at once: calls go on in their threads."""
    from rdio_tasks.asr.prepare import MAX_BREAKS, PreparePool, VadParams
    from rdio_tasks.radio import RadioOptions

    samples = corpus_calls(("radio_mp3",))[0]
    pool = PreparePool(1, device="no-such-device")
    try:
        assert pool.warm() is False and pool.usable()
        for _ in range(MAX_BREAKS - 1):
            assert pool.prepare(samples, RadioOptions(), VadParams(0.3, 0.2), 80) is None
        assert not pool.usable() and pool.pids() == []
        assert pool.prepare(samples, RadioOptions(), VadParams(0.3, 0.2), 80) is None
        assert pool.pids() == []  # given up: no new process per call
    finally:
        pool.close()


def test_prepare_processes_setting() -> None:
    from rdio_core.settings import Settings
    from rdio_tasks.asr import EngineConfig

    assert EngineConfig().prepare_processes == 0  # off until measured on a GPU
    assert EngineConfig(prepare_processes=3).prepare_processes == 3
    with pytest.raises(ValueError, match="prepare_processes"):
        EngineConfig(prepare_processes=-1)
    with pytest.raises(ValueError, match="prepare_processes"):
        EngineConfig(prepare_processes="many")
    tx = Settings.model_validate({"transcription": {"prepare_processes": 4}}).transcription
    assert EngineConfig.from_settings(tx).prepare_processes == 4
    with pytest.raises(ValueError):
        Settings.model_validate({"transcription": {"prepare_processes": -2}})
