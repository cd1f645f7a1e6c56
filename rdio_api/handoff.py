"""Restart and upgrade the API with no upload refused: one listening socket, handed from server to server.

SDRTrunk never retries: a restart the ordinary way (SIGTERM, start again, as ``systemctl restart``
does) answered 20 of 400 uploads at 20/s with "connection refused" (~1 s without a listener).
Three ways to keep a listener, measured with bench/faults.py on this 2-core machine (20 uploads/s):

- **A parent holding the socket** (chosen; what gunicorn's HUP/USR2 do): ``rdio-api serve`` is a
  small parent that binds once and runs the Hypercorn server as a child on that socket (``fd://``).
  On ``rdio-api restart`` (SIGUSR2) it starts a child with the code now installed, waits until that
  child's app is up (a pipe), then stops the old one gracefully. The kernel's accept queue belongs
  to the one socket both hold, so no connection is ever refused or dropped: 0 of ~1 000 uploads
  across five restarts.
- **systemd socket activation** (``LISTEN_FDS``; deploy/rdio-api.socket): systemd holds the socket,
  so even a plain ``systemctl restart`` refuses nothing: connections wait in the backlog for the
  ~1.5 s the new process takes to start (p99 latency rises to that; none refused). The parent uses
  such a socket when given one, and ``systemctl reload`` (ExecReload) still hands over without the wait.
- **SO_REUSEPORT** (a new server binds the same port beside the old): rejected. Linux gives each
  reuseport listener its own accept queue and resets what is queued on one that closes unless
  ``net.ipv4.tcp_migrate_req=1`` (0 by default, and on this machine), so the old server's close
  drops connections; it also needs both servers to agree on options at bind time.

The parent's own code is replaced too: once the new child is up, the parent re-executes itself
(``os.execv`` keeps its pid, its children and the inheritable socket) with ``--resume`` naming the
socket, the new child and the old one, and the re-executed parent drains the old child. An upgrade
that changes this module therefore takes effect on ``rdio-api restart``, not only at the next full
stop (tested by tests/test_restart.py with a release whose handoff module differs).

SIGHUP still reloads the configuration in place (forwarded to the running child: nothing restarts).
The pid file ``data_dir/rdio-api.pid`` names the parent; ``rdio-api restart`` signals it and waits
for ``data_dir/rdio-api.restart.json`` to report the new generation.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

PID_FILE = "rdio-api.pid"
STATUS_FILE = "rdio-api.restart.json"
SYSTEMD_FIRST_FD = 3
READY = b"ready\n"
DRAIN_TIMEOUT = 60.0


def systemd_socket() -> socket.socket | None:
    """The listening socket systemd passed (``LISTEN_FDS``/``LISTEN_PID``), if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for the children
    return socket.socket(fileno=SYSTEMD_FIRST_FD)


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """systemd's socket when activated, else one bound here; inheritable, for every child."""
    sock = systemd_socket()
    if sock is None:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def die_with_parent() -> None:
    """PR_SET_PDEATHSIG: a child gets SIGTERM when its parent dies (Linux), so none is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)
    except OSError:
        pass


def signal_ready(fd: int | None) -> None:
    """Called by a child once its app is up: the parent may now stop the previous one."""
    if fd is None:
        return
    try:
        os.write(fd, READY)
        os.close(fd)
    except OSError:
        pass


class Child(Protocol):
    """What the parent needs of a child process: a ``subprocess.Popen`` or an :class:`AdoptedChild`."""

    pid: int
    returncode: int | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


class AdoptedChild:
    """A child started before this process re-executed itself: still its child (``execv`` keeps the
    pid), but with no ``Popen`` object, so it is reaped with ``waitpid`` by pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere or never ours: gone either way
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0.0)
            time.sleep(0.05)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class Generation:
    number: int
    proc: Child


@dataclass(frozen=True)
class Resume:
    """What a parent hands its re-executed self (``--resume``): the listening socket's fd, the
    restart count so far, the child now serving and the one still to drain (0: none)."""

    fd: int
    generation: int
    serving: int
    draining: int

    def encode(self) -> str:
        return f"{self.fd}:{self.generation}:{self.serving}:{self.draining}"

    @classmethod
    def decode(cls, text: str) -> Resume:
        fd, generation, serving, draining = (int(part) for part in text.split(":"))
        return cls(fd, generation, serving, draining)


class ServerSlot:
    """One listening socket and the server child currently behind it (plus, during a handoff,
    the next one). Used by ``rdio-api serve`` and by ``rdio-api up`` for its API."""

    def __init__(
        self,
        sock: socket.socket,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.sock = sock
        self.argv = list(argv)
        self.env = env
        self.start_timeout = start_timeout
        self.current: Generation | None = None
        self._number = 0

    def _spawn(self) -> tuple[Generation, int]:
        read_fd, write_fd = os.pipe()
        self._number += 1
        argv = [*self.argv, "--fd", str(self.sock.fileno()), "--ready-fd", str(write_fd)]
        proc = subprocess.Popen(
            argv, env=self.env, pass_fds=(self.sock.fileno(), write_fd), preexec_fn=die_with_parent
        )
        os.close(write_fd)
        return Generation(self._number, proc), read_fd

    def _await_ready(self, gen: Generation, read_fd: int) -> str | None:
        """None once the child said ready, else why not (it exited, or timed out)."""
        deadline = time.monotonic() + self.start_timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([read_fd], [], [], 0.2)
                if ready:
                    data = os.read(read_fd, 64)
                    if data.startswith(READY):
                        return None
                    if not data:  # closed without a word: it exited (or is exiting)
                        gen.proc.wait(10)
                        return f"the new server exited with {gen.proc.returncode} before it was up"
                if gen.proc.poll() is not None:
                    return f"the new server exited with {gen.proc.returncode} before it was up"
            return f"the new server was not up within {self.start_timeout:g} s"
        finally:
            os.close(read_fd)

    def adopt(self, number: int, pid: int) -> None:
        """The child a previous image of this process started (see :class:`Resume`)."""
        self._number = number
        self.current = Generation(number, AdoptedChild(pid))

    def start(self) -> None:
        gen, read_fd = self._spawn()
        why = self._await_ready(gen, read_fd)
        if why is not None:
            stop_process(gen.proc, 5)
            raise RuntimeError(why)
        self.current = gen

    def start_next(self) -> tuple[Generation | None, str | None]:
        """Start the next generation and make it current once it is up: (the previous generation,
        still running, to drain; None) on success, else (None, the reason: the old one keeps serving)."""
        gen, read_fd = self._spawn()
        why = self._await_ready(gen, read_fd)
        if why is not None:
            stop_process(gen.proc, 5)
            log.error("restart failed, the running server keeps serving: %s", why)
            return None, why
        old, self.current = self.current, gen
        log.info(
            "server generation %d (pid %d) is up; draining pid %s",
            gen.number,
            gen.proc.pid,
            old.proc.pid if old else None,
        )
        return old, None

    def restart(self, drain_timeout: float = DRAIN_TIMEOUT) -> str | None:
        """Start the next generation; once it is up, stop the old one gracefully. None on success,
        else the reason (the old server then keeps serving)."""
        old, why = self.start_next()
        if old is not None:
            stop_process(old.proc, drain_timeout)
        return why

    def signal(self, signum: int) -> None:
        if self.current is not None and self.current.proc.poll() is None:
            self.current.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> None:
        if self.current is not None:
            stop_process(self.current.proc, timeout)


def stop_process(proc: Child, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds (the API's servers and up's helpers alike)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("pid %d did not stop in %.0f s; killing it", proc.pid, timeout)
        proc.kill()
        proc.wait(10)


# -- the pid file and the restart handle ---------------------------------------------------------


def write_pid_file(data_dir: Path, kind: str) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / PID_FILE
    running = read_pid_file(data_dir)
    if running is not None and running.get("pid") != os.getpid() and _alive(int(running["pid"])):
        raise RuntimeError(
            f"rdio-api {running.get('kind')} already runs for this data_dir (pid {running['pid']})"
        )
    path.write_text(json.dumps({"pid": os.getpid(), "kind": kind}))
    write_status(data_dir, 0, "ok", "started")
    return path


def read_pid_file(data_dir: Path) -> dict | None:
    try:
        return json.loads((data_dir / PID_FILE).read_text())
    except (OSError, ValueError):
        return None


def remove_pid_file(data_dir: Path) -> None:
    running = read_pid_file(data_dir)
    if running is not None and running.get("pid") == os.getpid():
        (data_dir / PID_FILE).unlink(missing_ok=True)


def write_status(data_dir: Path, generation: int, state: str, detail: str) -> None:
    tmp = data_dir / (STATUS_FILE + ".tmp")
    tmp.write_text(
        json.dumps({"generation": generation, "state": state, "detail": detail, "at": time.time()})
    )
    os.replace(tmp, data_dir / STATUS_FILE)


def read_status(data_dir: Path) -> dict:
    try:
        return json.loads((data_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {"generation": -1, "state": "unknown", "detail": ""}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def request_restart(data_dir: Path, timeout: float = 180.0) -> tuple[int, str]:
    """Signal the running parent and wait for it to report: (exit code, message)."""
    running = read_pid_file(data_dir)
    if running is None:
        return 1, f"no running rdio-api for this config (no {data_dir / PID_FILE})"
    pid = int(running["pid"])
    if not _alive(pid):
        return 1, f"rdio-api (pid {pid}) is not running (stale {data_dir / PID_FILE})"
    before = read_status(data_dir).get("generation", -1)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = read_status(data_dir)
        if status.get("generation", -1) > before and status.get("state") in ("ok", "failed"):
            if status["state"] == "ok":
                return 0, f"rdio-api {running.get('kind')} (pid {pid}): {status.get('detail')}"
            return 1, f"restart failed, the running server keeps serving: {status.get('detail')}"
        if not _alive(pid):
            return 1, f"rdio-api (pid {pid}) exited during the restart"
        time.sleep(0.1)
    return 1, f"no answer from rdio-api (pid {pid}) within {timeout:g} s"


def serve_parent(
    argv: Sequence[str],
    host: str,
    port: int,
    data_dir: Path,
    parent_argv: Sequence[str] | None = None,
    resume: Resume | None = None,
) -> int:
    """``rdio-api serve``: hold the socket, run the server child, hand over on SIGUSR2.

    ``parent_argv`` is how to start this parent again (without ``--resume``): given, a restart
    re-executes the parent with the code now installed once the new child is up. ``resume`` is what
    the previous image of this process handed over."""
    pending: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        pending.append(signum)

    for sig in (signal.SIGUSR2, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    if resume is None:
        sock = listening_socket(host, port)
        slot = ServerSlot(sock, argv)
        write_pid_file(data_dir, "serve")  # after the handlers: a restart asked during start waits
        generation = 0
    else:
        sock = socket.socket(fileno=resume.fd)
        slot = ServerSlot(sock, argv)
        slot.adopt(resume.generation, resume.serving)
        generation = resume.generation
    try:
        if resume is None:
            slot.start()
        else:
            if resume.draining:
                stop_process(AdoptedChild(resume.draining), DRAIN_TIMEOUT)
            write_status(
                data_dir, generation, "ok", f"new server up (pid {resume.serving}); parent re-executed"
            )
            log.info("parent re-executed with the code now installed; serving pid %d", resume.serving)
        while True:
            while pending:
                signum = pending.pop(0)
                if signum == signal.SIGHUP:
                    slot.signal(signal.SIGHUP)  # config reload in place
                elif signum == signal.SIGUSR2:
                    generation += 1
                    old, why = slot.start_next()
                    assert slot.current is not None
                    if why is None and parent_argv is not None:
                        _reexec(
                            parent_argv,
                            Resume(
                                sock.fileno(), generation, slot.current.proc.pid, old.proc.pid if old else 0
                            ),
                        )
                    if old is not None:  # no re-exec (or it failed): drain here
                        stop_process(old.proc, DRAIN_TIMEOUT)
                    write_status(
                        data_dir,
                        generation,
                        "ok" if why is None else "failed",
                        why or f"new server up (pid {slot.current.proc.pid})",
                    )
                else:
                    slot.stop()
                    return 0
            assert slot.current is not None
            code = slot.current.proc.poll()
            if code is not None:
                log.error("the server exited with %s", code)
                return code or 1
            time.sleep(0.1)
    finally:
        slot.stop()
        remove_pid_file(data_dir)
        sock.close()
        sys.stdout.flush()


def _reexec(parent_argv: Sequence[str], resume: Resume) -> None:
    """Replace this parent's image with the code now installed; returns only if exec failed."""
    sys.stdout.flush()
    sys.stderr.flush()
    for handler in logging.getLogger().handlers:
        handler.flush()
    try:
        os.execv(parent_argv[0], [*parent_argv, "--resume", resume.encode()])
    except OSError as exc:
        log.error("could not re-execute the parent (%s); it keeps its code, the server is new", exc)
