"""Test helpers: real server processes on ephemeral ports and SDRTrunk-exact request bytes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
CLIPS = REPO / "tests" / "data" / "clips"
SHARED_SPEECH = REPO.parent / "shared" / "speech"
SDRTRUNK_BOUNDARY = "--sdrtrunk-sdrtrunk-sdrtrunk"


def loaded_after(code: str, modules: Iterable[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter (this checkout first on its path) has loaded once
    ``code`` ran: how the tests keep a process's imports light."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({set(modules)!r} & set(sys.modules))))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None, **kw) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0, **kw).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class ServerProcess:
    """``rdio-api serve`` in a subprocess with its own config file and data dir."""

    def __init__(self, workdir: Path, config: dict, env: dict[str, str] | None = None, scheme: str = "http"):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "config.yaml"
        self.config = config
        self.config_path.write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.scheme = scheme
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rdio_api",
                "serve",
                "--config",
                str(self.config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http(f"{self.url}/health", timeout, self.proc, verify=False)
        return self

    def stop(self) -> int | None:
        """SIGTERM (the graceful path under test), SIGKILL after 15 s; then no process the server
        started is left: a parent killed before its Hypercorn child ended would orphan it."""
        if self.proc is None:
            return None
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _, alive = psutil.wait_procs(children, timeout=5)
        for child in alive:
            child.kill()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def sdrtrunk_body(
    fields: Iterable[tuple[str, str]],
    audio: bytes | None,
    filename: str = "20260103_003124.796.mp3",
    disposition: str | None = None,
    extra_audio_headers: str = "",
) -> bytes:
    """Multipart exactly as SDRTrunk builds it: text parts without Content-Type, audio last with
    ``filename`` before ``name`` and no Content-Type."""
    out = bytearray()
    for name, value in fields:
        out += f'--{SDRTRUNK_BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    if audio is not None:
        disp = disposition or f'form-data; filename="{filename}"; name="audio"'
        out += f"--{SDRTRUNK_BOUNDARY}\r\nContent-Disposition: {disp}\r\n{extra_audio_headers}\r\n".encode()
        out += audio + b"\r\n"
    out += f"--{SDRTRUNK_BOUNDARY}--\r\n".encode()
    return bytes(out)


def raw_request(
    port: int, body: bytes, timeout: float = 10.0, **request: Any
) -> tuple[str, dict[str, str], bytes]:
    """Send one HTTP/1.1 request the way SDRTrunk's JDK client does (``request``: the options of
    :func:`sdrtrunk_request`); return (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(sdrtrunk_request(port, body, **request))
        declared = request.get("content_length")
        if declared is not None and declared > len(body):
            sock.shutdown(socket.SHUT_WR)
        return read_response(sock)


def sdrtrunk_request(
    port: int,
    body: bytes,
    path: str = "/api/call-upload",
    h2c_upgrade: bool = True,
    content_type: str = f"multipart/form-data; boundary={SDRTRUNK_BOUNDARY}",
    content_length: int | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 request as SDRTrunk's JDK client writes it."""
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    if h2c_upgrade:
        head += [
            "Connection: Upgrade, HTTP2-Settings",
            "HTTP2-Settings: AAEAAEAAAAIAAAABAAMAAABkAAQBAAAAAAUAAEAA",
            "Upgrade: h2c",
        ]
    head += [
        f"Content-Length: {len(body) if content_length is None else content_length}",
        "User-Agent: Java-http-client/21.0.5",
        f"Content-Type: {content_type}",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def read_response(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """(status line, headers, body) of one HTTP/1.1 response; an empty status line when the server
    closed the connection without answering."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    header_blob, _, rest = bytes(data).partition(b"\r\n\r\n")
    lines = header_blob.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    body_out = bytearray(rest)
    while len(body_out) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body_out += chunk
    return lines[0], headers, bytes(body_out)


def sweeps_after(base_url: str, key: str, after: datetime, passes: int = 1, timeout: float = 30.0) -> dict:
    """Wait until the transcription sweeper has begun ``passes`` passes after ``after`` (naive UTC, as
    the server stores times) and return the last one: the event that proves the system moved past a
    point, where a fixed sleep only hoped it had (a sweep that began after the uploads' commit saw
    their jobs)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        status = httpx.get(
            f"{base_url}/api/transcription/queue/status", headers={"X-API-Key": key}, timeout=10
        ).json()
        last = status.get("last_sweep") or {}
        if last.get("at") and datetime.fromisoformat(last["at"]) > after:
            seen.add(last["at"])
            if len(seen) >= passes:
                return last
        time.sleep(0.1)
    raise TimeoutError(f"{len(seen)} of {passes} sweeper passes after {after} in {timeout}s: {last}")


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def wait_until(predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> None:
    """:func:`wait_for`, failing with ``what`` when the condition is not reached in time."""
    if not wait_for(predicate, timeout, interval=0.1):
        raise TimeoutError(f"{what} not reached in {timeout}s")


def utc_now() -> datetime:
    """Now in the server's own form: naive UTC (rdio_core.models.utcnow)."""
    return datetime.now(UTC).replace(tzinfo=None)


def clip(name: str) -> bytes:
    return (CLIPS / name).read_bytes()


def bare_call(  # type: ignore[no-untyped-def]
    session,
    system: int,
    talkgroup: int = 1,
    when: datetime | None = None,
    audio_path: str = "x.mp3",
    audio_bytes: int = 1,
):
    """A minimal call row (by default talkgroup 1, now, a fake audio path) in ``session``, flushed
    (it has an id)."""
    from rdio_core.models import Call, utcnow

    call = Call(
        system_id=system,
        talkgroup=talkgroup,
        date_time=when or utcnow(),
        audio_path=audio_path,
        audio_sha256="0" * 64,
        audio_bytes=audio_bytes,
        audio_mime="audio/mpeg",
        client_kind="test",
    )
    session.add(call)
    session.flush()
    return call


def call_with_job(factory, system: int, label: str = "test") -> int:  # type: ignore[no-untyped-def]
    """A minimal call (system, talkgroup 1, a fake audio path) with a pending job; the job's id."""
    from rdio_core import jobs
    from rdio_core.models import System

    with factory() as session:
        session.add(System(id=system, label=label))
        session.flush()
        call = bare_call(session, system)
        job_id = jobs.create_job(session, call.id, priority=3).id
        session.commit()
    return job_id
