"""A job's failure is sorted once: transient ones are retried by Celery with capped backoff,
permanent ones and bugs end the job ``failed`` at once with the reason (real exceptions, real
database, the real task in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import redis
import yaml
from kombu import Connection
from sqlalchemy import create_engine

from rdio_core import jobs
from rdio_core.db import make_session_factory, upgrade
from rdio_core.embedded_redis import EmbeddedRedis, free_port
from rdio_core.models import JobStatus, TranscriptionJob
from rdio_core.settings import ConfigError, Settings, load_settings
from rdio_core.storage import AudioStore
from rdio_tasks import broker_compat
from rdio_tasks.context import WorkerContext
from rdio_tasks.errors import (
    AudioDecodeError,
    ErrorKind,
    ModelNotFoundError,
    TransientError,
    classify,
    describe,
)
from rdio_tasks.radio import RadioOptions
from rdio_tasks.tasks import settle_failure
from tests.helpers import REPO, call_with_job


def raised(fn) -> BaseException:  # type: ignore[no-untyped-def]
    """The exception ``fn`` really raises."""
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError(f"{fn} raised nothing")


def test_faults_of_the_moment_are_transient(tmp_path):
    closed = free_port()
    cases = {
        "database unreachable": lambda: create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db").connect(),
        "redis down": lambda: redis.Redis(port=closed, socket_connect_timeout=1).ping(),
        "broker down": lambda: Connection(f"redis://127.0.0.1:{closed}/0").ensure_connection(
            max_retries=1, interval_start=0
        ),
        "ctranslate2 out of memory": lambda: (_ for _ in ()).throw(
            RuntimeError("CUDA failed with error out of memory")
        ),
        "socket timeout": lambda: (_ for _ in ()).throw(TimeoutError("timed out")),
    }
    for name, fn in cases.items():
        exc = raised(fn)
        assert classify(exc) is ErrorKind.TRANSIENT, (name, type(exc), exc)


def test_model_files_unreachable_and_cuda_oom_are_transient(tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    offline = raised(
        lambda: hub.hf_hub_download(
            "Systran/faster-whisper-tiny.en", "model.bin", cache_dir=tmp_path, local_files_only=True
        )
    )
    # LocalEntryNotFoundError is also a ValueError: it must not be taken for a bug.
    assert isinstance(offline, ValueError) and classify(offline) is ErrorKind.TRANSIENT
    torch = pytest.importorskip("torch")
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert classify(oom) is ErrorKind.TRANSIENT


def test_bad_input_is_permanent(tmp_path):
    from rdio_tasks.asr.models import resolve_model
    from rdio_tasks.audio_decode import decode_audio

    garbage = tmp_path / "call.mp3"
    garbage.write_bytes(b"\xff\xfb\x90\x00" + b"\x00garbage" * 200)
    bad_audio = raised(lambda: decode_audio(garbage))
    assert isinstance(bad_audio, AudioDecodeError) and classify(bad_audio) is ErrorKind.PERMANENT
    missing = raised(lambda: resolve_model(str(tmp_path / "models" / "nope")))
    assert isinstance(missing, ModelNotFoundError) and classify(missing) is ErrorKind.PERMANENT


def test_programming_and_config_errors_are_bugs(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("transcription:\n  radio: {beam_size: 0}\n")
    cases = [
        raised(lambda: len(5)),  # type: ignore[arg-type]
        raised(lambda: {}["model"]),
        raised(lambda: None.text),  # type: ignore[union-attr]
        raised(lambda: int("five")),
        raised(lambda: RadioOptions(beam_size=0)),
        raised(lambda: load_settings(bad_yaml)),
    ]
    assert [type(e) for e in cases][-1] is ConfigError
    assert [classify(e) for e in cases] == [ErrorKind.BUG] * len(cases)
    assert describe(cases[1]) == "KeyError: 'model'"


# --------------------------------------------------------------------------- what happens to the job


@pytest.fixture
def ctx(tmp_path, database_url, db_engine) -> WorkerContext:
    upgrade(db_engine)
    settings = Settings(data_dir=tmp_path, database_url=database_url)
    return WorkerContext(
        settings, db_engine, make_session_factory(db_engine), AudioStore(tmp_path / "audio"), os.getpid()
    )


@pytest.fixture
def claimed(ctx) -> int:
    """A job claimed by worker "w1" (attempt 1)."""
    job_id = call_with_job(ctx.factory, int(time.time() * 1000) % 2_000_000_000, "errors")
    assert jobs.claim(ctx.factory, job_id, "w1", 60, 3).outcome is jobs.ClaimOutcome.CLAIMED
    return job_id


def row(ctx: WorkerContext, job_id: int) -> TranscriptionJob:
    with ctx.factory() as session:
        job = session.get(TranscriptionJob, job_id)
        assert job is not None
        return job


def test_a_bug_fails_the_job_at_once_with_the_reason(ctx, claimed):
    outcome = settle_failure(ctx, claimed, "w1", raised(lambda: {}["beam_size"]))
    job = row(ctx, claimed)
    assert outcome.status == JobStatus.FAILED and job.status == JobStatus.FAILED
    assert job.attempts == 1 and job.error == "KeyError: 'beam_size'" and job.lease_expires_at is None
    # A redelivered message finds it final: no second run of the same bug.
    assert jobs.claim(ctx.factory, claimed, "w2", 60, 3).outcome is jobs.ClaimOutcome.FINAL


def test_a_permanent_error_fails_the_job_with_its_message(ctx, claimed):
    settle_failure(ctx, claimed, "w1", AudioDecodeError("x.mp3: cannot open as audio"))
    job = row(ctx, claimed)
    assert job.status == JobStatus.FAILED and job.error == "x.mp3: cannot open as audio"


def test_a_transient_error_hands_the_job_back_for_a_retry(ctx, claimed, tmp_path):
    fault = raised(lambda: create_engine(f"sqlite:///{tmp_path}/no/such/dir/x.db").connect())
    with pytest.raises(TransientError, match="OperationalError"):
        settle_failure(ctx, claimed, "w1", fault)
    job = row(ctx, claimed)
    assert job.status == JobStatus.QUEUED and "unable to open database file" in job.error
    retry = jobs.claim(ctx.factory, claimed, "w1", 60, 3)
    assert retry.outcome is jobs.ClaimOutcome.CLAIMED and retry.job is not None and retry.job.attempts == 2


def test_celery_retries_a_transient_fault_with_the_configured_backoff_cap(tmp_path):
    """The real task run as a worker runs it (in its own process, a real broker) while the database
    is down: Celery's autoretry publishes a retry, and at the 11th retry the delay (2 * 2**10 s
    uncapped) stays within ``retry_backoff_max_seconds`` from the settings."""
    broker = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    try:
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "data_dir": str(tmp_path / "data"),
                    "database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/down",
                    "broker_url": broker.url,
                    "transcription": {"retry_backoff_max_seconds": 3},
                }
            )
        )
        code = (
            "import json\n"
            "from celery.exceptions import Retry\n"
            "from rdio_tasks.tasks import transcribe_call\n"
            "out = []\n"
            "for n in range(12):\n"
            "    transcribe_call.push_request(id=f't{n}', args=[1], kwargs={}, retries=10,\n"
            "                                 called_directly=False, delivery_info={})\n"
            "    try:\n"
            "        transcribe_call.run(1)\n"
            "    except Retry as retry:\n"
            "        out.append([retry.when, str(retry.exc)])\n"
            "    finally:\n"
            "        transcribe_call.pop_request()\n"
            "print(json.dumps(out))\n"
        )
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RDIO_", "CELERY_"))},
            "RDIO_CONFIG": str(config),
            "RDIO_WORKER_PRELOAD": "0",
        }
        proc = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        retries = json.loads(proc.stdout.strip().splitlines()[-1])
        assert len(retries) == 12, proc.stderr[-3000:]
        assert all(0 <= when <= 3 for when, _ in retries), retries
        assert all(reason.startswith("OperationalError") for _, reason in retries), retries
        # Each retry is a message in the gpu queue, waiting for its countdown.
        with Connection(broker.url) as conn:
            assert broker_compat.queue_depth(conn.default_channel, "gpu") == 12
    finally:
        broker.stop()
