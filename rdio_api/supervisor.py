"""``rdio-api up``: the whole system on one machine, no services installed by hand.

Starts, in order, an embedded Redis (unless ``broker_url`` is set), the API (Hypercorn), one Celery
worker on queue ``gpu``, one on queue ``alerts`` (no model) and Flower, each as a child process.
The database is migrated before any of them starts (a worker's
registry row needs its table). The banner comes only once the API answers and a transcription worker
has its model loaded (``/ready`` reports it), so "up" means a call can be transcribed now. At the
default log level the children log warnings only (no Celery banners, alembic steps, Flower's inspect
retries or Celery's running-as-root warning): one banner says what runs where; log_level DEBUG
shows everything. Ctrl-C or SIGTERM stops them in reverse order; if any child dies, the rest are stopped too, so nothing is left running. Children
also get PR_SET_PDEATHSIG so a SIGKILLed supervisor does not leave orphans on Linux.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rdio_api.auth import upload_keys
from rdio_core.embedded_redis import EmbeddedRedis, free_port
from rdio_core.settings import Settings
from rdio_tasks.celery_app import worker_argv

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def flower_credentials(settings: Settings) -> tuple[str, str]:
    """Configured Flower credentials, or generated ones kept in data_dir (0600) across restarts."""
    if settings.flower.user and settings.flower.password:
        return settings.flower.user, settings.flower.password
    path = settings.data_dir / "flower-credentials"
    if path.is_file():
        user, _, password = path.read_text().strip().partition(":")
        if user and password:
            return user, password
    path.parent.mkdir(parents=True, exist_ok=True)
    user, password = "admin", secrets.token_urlsafe(12)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{user}:{password}\n")
    return user, password


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


class Supervisor:
    def __init__(self, settings: Settings, host: str, port: int, config_path: str | None):
        self.settings = settings
        self.host = host
        self.port = port
        self.config_path = config_path
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self._stopping = False

    @property
    def quiet(self) -> bool:
        return self.settings.log_level.upper() != "DEBUG"

    def _env(self, broker_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env["RDIO_BROKER_URL"] = broker_url
        if self.quiet:
            env["RDIO_LOG_LEVEL"] = "WARNING"
            # Celery's SecurityWarning when run as root (containers, CI): a warning per worker start.
            quiet_root = "ignore:You're running the worker with superuser privileges"
            env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet_root]))
        env["RDIO_DATA_DIR"] = str(self.settings.data_dir.resolve())
        env.setdefault("PYANNOTE_METRICS_ENABLED", "false")
        if self.config_path:
            env["RDIO_CONFIG"] = str(Path(self.config_path).resolve())
        return env

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent)
        self.children.append(Child(name, proc))

    def start(self) -> None:
        data_dir = self.settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        broker_url = self.settings.broker_url
        if not broker_url:
            self.redis = EmbeddedRedis(data_dir / "redis", port=free_port()).start(
                preexec_fn=_die_with_parent
            )
            broker_url = self.redis.url
        # Migrations first: the workers write their registry rows at start.
        from rdio_core import db

        db.upgrade(db.make_engine(self.settings.resolved_database_url))
        env = self._env(broker_url)
        py = sys.executable
        self._spawn(
            "api", [py, "-m", "rdio_api", "serve", "--host", self.host, "--port", str(self.port)], env
        )
        # celeryconfig's defaults: threads pool, transcription.concurrency calls batched together.
        self._spawn("worker", self._worker_cmd("rdio-embedded@%h", ("gpu",)), env)
        # Alerts (and tone analysis) on their own worker: a slow webhook never holds a GPU thread,
        # and this one loads no model (rdio_tasks.tasks: only a gpu-queue worker preloads Whisper).
        self._spawn("alerts worker", self._worker_cmd("rdio-alerts@%h", ("alerts",)), env)
        user, password = flower_credentials(self.settings)
        flower_port = self.settings.flower.port
        # The credentials travel in the environment (rdio-api flower hands them to Flower as
        # FLOWER_BASIC_AUTH), never on a command line that `ps` shows to every user.
        self._spawn(
            "flower",
            [py, "-m", "rdio_api", "flower", "--port", str(flower_port)],
            {**env, "RDIO_FLOWER__USER": user, "RDIO_FLOWER__PASSWORD": password},
        )
        scheme = "https" if self.settings.tls.cert else "http"
        if not self._wait_ready(scheme):
            return
        print(
            "\nrdio-api is up:\n"
            f"  console          {scheme}://{self.host}:{self.port}/   (enter the key '{self._console_key()}' once)\n"
            f"  API + upload     {scheme}://{self.host}:{self.port}/api/call-upload   (docs: /docs, key via Authorize)\n"
            f"  broker (Redis)   {broker_url}{'  (embedded, AOF in ' + str(data_dir / 'redis') + ')' if self.redis else ''}\n"
            f"  worker           queue 'gpu', model {self.settings.transcription.model}, "
            f"{self.settings.transcription.concurrency} calls in flight, batch {self.settings.transcription.batch_size}\n"
            f"  alerts worker    queue 'alerts', {len(self.settings.alerts.rules)} rule(s) in alerts.rules\n"
            f"  Flower           http://{self.settings.flower.host}:{flower_port}   user {user}, password in "
            f"{(self.settings.flower.password and 'the config') or data_dir / 'flower-credentials'}\n"
            f"  data             {data_dir}\n"
            f"  config           {self.config_path or 'defaults + RDIO_* environment'}\n"
            f"  upload keys      {self._key_summary()}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )

    def _worker_cmd(self, name: str, queues: tuple[str, ...]) -> list[str]:
        argv = worker_argv(name, queues=queues)
        if self.quiet:  # no banner (celery -q), warnings only (the last --loglevel wins)
            argv = [*argv[:2], "-q", *argv[2:], "--loglevel", "WARNING"]
        return [sys.executable, *argv]

    def _console_key(self) -> str:
        readers = [k.name for k in self.settings.api_keys if {"read", "admin"} & set(k.scopes)]
        return ", ".join(readers) or "none: add a key with the read scope"

    def _wait_ready(self, scheme: str) -> bool:
        """Poll /ready until the API answers and a transcription worker is live; False when a child
        exits first (wait() then reports it). A line every 15 s says what is still awaited."""
        import httpx

        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        url = f"{scheme}://{host}:{self.port}/ready"
        need_worker = self.settings.transcription.enabled
        started = last_note = time.monotonic()
        waiting = "the API"
        while not any(c.proc.poll() is not None for c in self.children):
            try:
                checks = httpx.get(url, verify=False, timeout=2).json().get("checks", {})
                waiting = (
                    f"a transcription worker to load model {self.settings.transcription.model}"
                    if need_worker and not str(checks.get("workers", "")).startswith("ok")
                    else ""
                )
            except (httpx.HTTPError, ValueError):
                waiting = "the API"
            if not waiting:
                return True
            if time.monotonic() - last_note >= 15:
                print(f"waiting for {waiting} ({time.monotonic() - started:.0f} s)", flush=True)
                last_note = time.monotonic()
            time.sleep(0.3)
        return False

    def _key_summary(self) -> str:
        names = [k.label for k in upload_keys(self.settings)]
        if not names:
            return "NONE: every upload will get 401; add api_keys to the config (see config.example.yaml)"
        weak = [k.label for k in self.settings.api_keys if k.key.startswith("change-me")]
        warning = f"  (WARNING: still 'change-me': {', '.join(weak)})" if weak else ""
        return ", ".join(names) + " (values in the config file)" + warning

    def wait(self) -> int:
        """Block until a signal or a child exits; then stop everything."""
        stop: dict[str, int | None] = {"sig": None}

        def handler(signum: int, _frame: FrameType | None) -> None:
            stop["sig"] = signum

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        code = 0
        while stop["sig"] is None:
            for child in self.children:
                if child.proc.poll() is not None:
                    log.error("%s exited with %s; stopping everything", child.name, child.proc.returncode)
                    code = 1
                    stop["sig"] = -1
                    break
            if self.redis and self.redis.proc and self.redis.proc.poll() is not None:
                log.error("embedded redis exited; stopping everything")
                code, stop["sig"] = 1, -1
            time.sleep(0.2)
        self.stop()
        return code

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        for child in reversed(self.children):
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in reversed(self.children):
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", child.name)
                child.proc.kill()
                child.proc.wait(5)
        if self.redis:
            self.redis.stop()
