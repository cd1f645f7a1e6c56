"""``rdio-api up``: the whole system on one machine, no services installed by hand.

Starts, in order, an embedded Redis (unless ``broker_url`` is set), the API (Hypercorn), one Celery
worker on queue ``gpu``, one on queue ``alerts`` (no model) and Flower, each as a child process.
The database is migrated before any of them starts (a worker's registry row needs its table).
The banner comes only once the API answers and a transcription worker has its model loaded
(``/ready`` reports it), so "up" means a call can be transcribed now. At the default log level the
children log warnings only (no Celery banners, alembic steps, Flower's inspect retries or Celery's
running-as-root warning); log_level DEBUG shows everything. Ctrl-C or SIGTERM stops them in reverse
order. Children also get PR_SET_PDEATHSIG so a SIGKILLed supervisor does not leave orphans on Linux.

Only the API and the database are fatal, and only at start. A helper that exits later (Flower, the
alerts worker, the gpu worker, the embedded Redis) is started again after a backoff (1 s doubling
to 60 s, reset once it has run a minute) and reported: a log line, ``data_dir/rdio-api.helpers.json``
(read by /ready and /metrics). Before this a Flower that could not bind its port stopped ingest.
The supervisor holds the API's listening socket (rdio_api.handoff): ``rdio-api restart`` (SIGUSR2)
hands it to a new API, then restarts the helpers with the code now installed.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from rdio_api import handoff
from rdio_api.auth import upload_keys
from rdio_api.helper_status import HELPERS_FILE
from rdio_core.embedded_redis import EmbeddedRedis, free_port
from rdio_core.outbox import Queue
from rdio_core.settings import Settings
from rdio_tasks.celery_app import worker_argv

#: The queues of the worker that loads no model: tone analysis and alert deliveries (both light and
#: latency-bound; rdio_core.outbox.refs.Queue says why they are two).
LIGHT_QUEUES = (Queue.ALERTS, Queue.TONES)

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


BACKOFF_FIRST, BACKOFF_MAX, HEALTHY_AFTER = 1.0, 60.0, 60.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0
    last_exit: int | None = None
    backoff: float = BACKOFF_FIRST
    restart_at: float | None = None  # set while it waits to be started again


class Supervisor:
    def __init__(self, settings: Settings, host: str, port: int, config_path: str | None):
        self.settings = settings
        self.host = host
        self.port = port
        self.config_path = config_path
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self.api: handoff.ServerSlot | None = None
        self._stopping = False
        self._generation = 0
        self._signals: list[int] = []
        self._api_restarts = 0

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
        self.children.append(Child(name, proc, cmd, env))

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
        # Installed before the pid file names us: a restart asked during start waits, not kills.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2, signal.SIGHUP):
            signal.signal(sig, self._queue_signal)
        handoff.write_pid_file(data_dir, "up")
        # The API is fatal at start: bind and wait for it to answer before anything else starts.
        self.api = handoff.ServerSlot(
            handoff.listening_socket(self.host, self.port),
            [py, "-m", "rdio_api", "serve", "--host", self.host, "--port", str(self.port)],
            env,
        )
        self.api.start()
        # celeryconfig's defaults: threads pool, transcription.concurrency calls batched together.
        self._spawn("worker", self._worker_cmd("rdio-embedded@%h", (Queue.GPU,)), env)
        # Tone analysis and alerts on their own worker: a slow webhook never holds a GPU thread,
        # and this one loads no model (rdio_tasks.tasks: only a gpu-queue worker preloads Whisper).
        self._spawn("alerts worker", self._worker_cmd("rdio-alerts@%h", LIGHT_QUEUES), env)
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
            f"  worker           queue '{Queue.GPU}', model {self.settings.transcription.model}, "
            f"{self.settings.transcription.concurrency} calls in flight, batch {self.settings.transcription.batch_size or 'sized by the calls in flight'}\n"
            f"  alerts worker    queues {', '.join(map(repr, map(str, LIGHT_QUEUES)))}, "
            f"{len(self.settings.alerts.rules)} rule(s) in alerts.rules\n"
            f"  Flower           http://{self.settings.flower.host}:{flower_port}   user {user}, password in "
            f"{(self.settings.flower.password and 'the config') or data_dir / 'flower-credentials'}\n"
            f"  data             {data_dir}\n"
            f"  config           {self.config_path or 'defaults + RDIO_* environment'}\n"
            f"  upload keys      {self._key_summary()}\n"
            + "".join(
                f"  watched folder   {wd.path} (then {wd.after})\n" for wd in self.settings.ingest.watched
            )
            + "Press Ctrl-C to stop.\n",
            flush=True,
        )

    def _worker_cmd(self, name: str, queues: tuple[Queue, ...]) -> list[str]:
        argv = worker_argv(name, queues=queues)
        if self.quiet:  # no banner (celery -q), warnings only (the last --loglevel wins)
            argv = [*argv[:2], "-q", *argv[2:], "--loglevel", "WARNING"]
        return [sys.executable, *argv]

    def _console_key(self) -> str:
        readers = [k.name for k in self.settings.api_keys if {"read", "admin"} & set(k.scopes)]
        return ", ".join(readers) or "none: add a key with the read scope"

    def _wait_ready(self, scheme: str) -> bool:
        """Poll /ready until the API answers and a transcription worker is live; False on Ctrl-C or
        SIGTERM meanwhile (wait() then stops everything). A helper that exits while we wait is
        started again as later (a taken Flower port must not hold the banner back for good); a line
        every 15 s says what is still awaited."""
        import httpx

        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        url = f"{scheme}://{host}:{self.port}/ready"
        need_worker = self.settings.transcription.enabled
        started = last_note = time.monotonic()
        waiting = "the API"
        while not any(sig in (signal.SIGINT, signal.SIGTERM) for sig in self._signals):
            self._tend()
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
        """Block until SIGINT/SIGTERM, restarting what exits meanwhile; then stop everything."""
        signals = self._signals
        self._write_helpers()
        while True:
            while signals:
                signum = signals.pop(0)
                if signum == signal.SIGUSR2:
                    self.restart()
                elif signum == signal.SIGHUP and self.api is not None:
                    self.api.signal(signal.SIGHUP)  # the API re-reads its config in place
                elif signum in (signal.SIGINT, signal.SIGTERM):
                    self.stop()
                    return 0
            self._tend()
            time.sleep(0.2)

    def _queue_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _tend(self) -> None:
        """Start again, after its backoff, whatever exited: only a failed start is fatal."""
        now = time.monotonic()
        changed = False
        if self.api is not None and self.api.current is not None and self.api.current.proc.poll() is not None:
            log.error("api exited with %s; starting it again", self.api.current.proc.returncode)
            self._api_restarts += 1
            try:
                self.api.start()
            except RuntimeError as exc:
                log.error("api did not start again (%s); retrying", exc)
            changed = True
        if self.redis and self.redis.proc and self.redis.proc.poll() is not None:
            log.error("embedded redis exited with %s; starting it again", self.redis.proc.returncode)
            try:
                self.redis.start(preexec_fn=_die_with_parent)
            except (RuntimeError, TimeoutError) as exc:
                log.error("embedded redis did not start again: %s", exc)
        for child in self.children:
            code = child.proc.poll()
            if code is not None and child.restart_at is None:
                ran = now - child.started
                child.backoff = BACKOFF_FIRST if ran >= HEALTHY_AFTER else child.backoff
                child.last_exit, child.restart_at = code, now + child.backoff
                log.error(
                    "%s exited with %s after %.0f s; starting it again in %.0f s (restart %d)",
                    child.name,
                    code,
                    ran,
                    child.backoff,
                    child.restarts + 1,
                )
                child.backoff = min(BACKOFF_MAX, child.backoff * 2)
                changed = True
            elif child.restart_at is not None and now >= child.restart_at:
                child.proc = subprocess.Popen(child.cmd, env=child.env, preexec_fn=_die_with_parent)
                child.started, child.restart_at = now, None
                child.restarts += 1
                changed = True
        if changed:
            self._write_helpers()

    def restart(self) -> None:
        """``rdio-api restart``: a new API on the same socket, then each helper with the new code."""
        assert self.api is not None
        self._generation += 1
        data_dir = self.settings.data_dir.resolve()
        why = self.api.restart()
        if why is not None:
            handoff.write_status(data_dir, self._generation, "failed", why)
            return
        for child in self.children:
            if child.name == "flower":  # one port: the old one must let go first
                handoff.stop_process(child.proc, 20)
                child.proc = subprocess.Popen(child.cmd, env=child.env, preexec_fn=_die_with_parent)
            else:  # a worker: the new one takes tasks while the old one finishes its own
                old = child.proc
                child.proc = subprocess.Popen(child.cmd, env=child.env, preexec_fn=_die_with_parent)
                handoff.stop_process(old, 60)
            child.started, child.restart_at = time.monotonic(), None
        assert self.api.current is not None
        handoff.write_status(
            data_dir,
            self._generation,
            "ok",
            f"new API up (pid {self.api.current.proc.pid}); helpers restarted",
        )
        self._write_helpers()

    def _write_helpers(self) -> None:
        """What /ready and /metrics report of the helpers (rdio_api.helper_status)."""
        helpers = {
            c.name: {
                "state": "restarting" if c.restart_at is not None else "running",
                "pid": c.proc.pid,
                "restarts": c.restarts,
                "last_exit": c.last_exit,
            }
            for c in self.children
        }
        if self.api is not None and self.api.current is not None:
            helpers["api"] = {
                "state": "running",
                "pid": self.api.current.proc.pid,
                "restarts": self._api_restarts,
                "last_exit": None,
            }
        path = self.settings.data_dir.resolve() / HELPERS_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"supervisor": os.getpid(), "helpers": helpers}))
        os.replace(tmp, path)

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self.api is not None:
            self.api.stop(20)
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
        data_dir = self.settings.data_dir.resolve()
        handoff.remove_pid_file(data_dir)
        (data_dir / HELPERS_FILE).unlink(missing_ok=True)
