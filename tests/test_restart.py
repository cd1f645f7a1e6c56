"""Restart and upgrade with no refused upload: ``rdio-api restart`` hands the listening socket to a
server running the code now installed while a steady stream of SDRTrunk uploads keeps arriving."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import yaml
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

from rdio_api.cli import build_parser
from rdio_core import db
from tests.conftest import UPLOAD_KEY, base_config
from tests.helpers import (
    REPO,
    ServerProcess,
    clip,
    loaded_after,
    read_response,
    sdrtrunk_body,
    sdrtrunk_request,
    wait_http,
    wait_until,
)
from tests.test_spool import QUEUED, assert_every_call_stored
from tests.test_upload import sdrtrunk_fields
from tests.upload_stream import UploadStream


def restart(server: ServerProcess, pythonpath: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(server.env)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, "-m", "rdio_api", "restart", "--config", str(server.config_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=200,
    )


def server_child(server: ServerProcess) -> int:
    """The pid of the Hypercorn server the parent runs now."""
    assert server.proc is not None
    children = psutil.Process(server.proc.pid).children()
    assert len(children) == 1, children
    return children[0].pid


def test_five_restarts_refuse_no_upload(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rdio.db'}"
    server = ServerProcess(tmp_path, base_config(tmp_path / "data", url, transcription=QUEUED)).start()
    stream = UploadStream(lambda: server.url, UPLOAD_KEY, system=811, rate=20).start()
    pids = [server_child(server)]
    try:
        for n in range(5):
            wait_until(lambda n=n: stream.accepted >= 10 * (n + 1), what="uploads between restarts")
            done = restart(server)
            assert done.returncode == 0, done.stderr + server.log()[-3000:]
            assert "new server up" in done.stdout
            pids.append(server_child(server))
        wait_until(lambda: stream.accepted >= 60, what="uploads after the last restart")
    finally:
        stream.stop()
    try:
        assert len(set(pids)) == 6  # six servers in turn, one parent, one socket
        assert_every_call_stored(stream, url, tmp_path / "data", queued=True)
    finally:
        server.stop()


def test_the_socket_holding_parent_leaves_the_database_and_web_layers_out() -> None:
    """The ``serve`` parent only holds the socket and starts servers, and it is re-executed on every
    restart: what ``rdio-api serve`` imports before it forks must not include SQLAlchemy, FastAPI or
    Hypercorn (the settings once pulled in the alerts outbox, and the parser the importers).
    Measured: 0.78 -> 0.27 s of CPU to a parent up and serving."""
    code = "import rdio_api.cli, rdio_api.handoff; rdio_api.cli.build_parser()"
    assert loaded_after(code, {"sqlalchemy", "fastapi", "hypercorn", "alembic"}) == []


def test_restart_without_a_running_server_says_why(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "rdio_api", "restart", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "no running rdio-api" in done.stderr


def _next_release(tmp_path: Path) -> Path:
    """This release's code plus an expand migration (a nullable column): the next release."""
    tree = tmp_path / "next"
    shutil.copytree(REPO / "rdio_core", tree / "rdio_core", ignore=shutil.ignore_patterns("__pycache__"))
    for package in ("rdio_api", "rdio_tasks"):
        shutil.copytree(REPO / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "celeryconfig.py", tree / "celeryconfig.py")
    with (tree / "rdio_api" / "handoff.py").open("a") as handoff_module:  # tells which code a pid runs
        handoff_module.write('\nsys.stderr.write(f"next-release handoff in pid {os.getpid()}\\n")\n')
    versions = tree / "rdio_core" / "migrations" / "versions"
    head = ScriptDirectory(str(db.MIGRATIONS_DIR)).get_current_head()
    (versions / "9999_test_expand.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f"revision = '9999_test'\ndown_revision = {head!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade():\n    op.add_column('calls', sa.Column('next_release_note', sa.String(50)))\n\n\n"
        "def downgrade():\n    op.drop_column('calls', 'next_release_note')\n"
    )
    return tree


def test_upgrade_across_a_migration_refuses_no_upload(tmp_path: Path) -> None:
    """The installed code changes under the running parent (the symlink an install swaps), and
    ``rdio-api restart`` starts the new code, which migrates while the old server still serves."""
    url = f"sqlite:///{tmp_path / 'rdio.db'}"
    installed = tmp_path / "installed"
    installed.symlink_to(REPO)
    env = {"PYTHONPATH": str(installed)}
    server = ServerProcess(
        tmp_path / "run", base_config(tmp_path / "data", url, transcription=QUEUED), env=env
    ).start()
    stream = UploadStream(lambda: server.url, UPLOAD_KEY, system=812, rate=20).start()
    try:
        wait_until(lambda: stream.accepted >= 20, what="uploads on the old release")
        nxt = _next_release(tmp_path)
        installed.unlink()
        installed.symlink_to(nxt)  # what an upgrade of the installed package does
        done = restart(server, pythonpath=str(installed))
        assert done.returncode == 0, done.stderr + server.log()[-3000:]
        wait_until(lambda: stream.accepted >= 60, what="uploads on the new release")
    finally:
        stream.stop()
    try:
        engine = db.make_engine(url)
        columns = {c["name"] for c in inspect(engine).get_columns("calls")}
        engine.dispose()
        assert "next_release_note" in columns  # the new code migrated
        assert "to 9999_test" in server.log()  # migrated by the new server, the old one still serving
        assert server.proc is not None and server.proc.poll() is None
        # The parent itself re-executed with the new release (same pid, so the pid file holds).
        assert f"next-release handoff in pid {server.proc.pid}\n" in server.log()
        assert_every_call_stored(stream, url, tmp_path / "data", queued=True)
    finally:
        server.stop()


def _activated(sock: socket.socket, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``rdio-api serve`` started the way systemd starts a socket-activated service: the socket
    as fd 3, LISTEN_FDS=1 and LISTEN_PID set to the service's own pid."""
    fd = sock.fileno()
    script = 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -m rdio_api serve --config "$1"'
    return subprocess.Popen(
        ["sh", "-c", script, sys.executable, str(config)],
        preexec_fn=lambda: os.dup2(fd, 3),  # runs before the child closes all but pass_fds
        pass_fds=(3,),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_socket_activation_full_restart_refuses_no_upload(tmp_path: Path) -> None:
    """systemd holds the socket (deploy/systemd/rdio-api.socket): even a full stop and start, as
    ``systemctl restart`` does, refuses nothing; uploads wait in the backlog meanwhile."""
    url = f"sqlite:///{tmp_path / 'rdio.db'}"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(base_config(tmp_path / "data", url, transcription=QUEUED)))
    log = tmp_path / "server.log"
    base = f"http://127.0.0.1:{port}"
    proc = _activated(sock, config, log)
    stream = UploadStream(lambda: base, UPLOAD_KEY, system=813, rate=20)
    try:
        wait_http(f"{base}/health", 60, proc)
        stream.start()
        wait_until(lambda: stream.accepted >= 20, what="uploads before the restart")
        proc.terminate()  # systemctl restart: stop...
        proc.wait(60)
        proc = _activated(sock, config, log)  # ...and start, on the socket systemd kept
        wait_until(lambda: stream.accepted >= 60, what="uploads after the restart")
    finally:
        stream.stop()
    try:
        assert_every_call_stored(stream, url, tmp_path / "data", queued=True)
    finally:
        proc.terminate()
        proc.wait(60)
        sock.close()


def test_a_connection_accepted_as_the_server_stops_gets_its_answer(tmp_path: Path) -> None:
    """A client that connected just before a stop writes its upload after the stop began. Hypercorn
    counted such a connection as idle and closed it unanswered, a refused call; it is served."""
    url = f"sqlite:///{tmp_path / 'rdio.db'}"
    config = base_config(tmp_path / "data", url, transcription=QUEUED)
    config["server"] = {"handoff_drain_seconds": 0}
    server = ServerProcess(tmp_path, config).start()
    child = psutil.Process(server_child(server))
    body = sdrtrunk_body(sdrtrunk_fields(812), clip("speech_sdrtrunk.mp3"))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            me = sock.getsockname()
            wait_until(
                lambda: any(c.raddr and tuple(c.raddr) == me for c in child.net_connections("tcp")),
                10,
                "the server accepted the connection",
            )
            child.terminate()  # the server stops...
            wait_until(  # ...and has closed its listener: Hypercorn ended its idle connections then
                lambda: not [c for c in child.net_connections("tcp") if c.status == psutil.CONN_LISTEN],
                30,
                "the stopping server's listener closed",
            )
            sock.sendall(sdrtrunk_request(server.port, body))
            status, _, answer = read_response(sock)
        assert status.startswith("HTTP/1.1 200"), (status, server.log()[-2000:])
        assert answer.startswith(b"Call imported successfully."), answer
    finally:
        server.stop()


def test_systemd_unit_commands_parse() -> None:
    """ExecStart and ExecReload of deploy/systemd/rdio-api.service are commands this CLI takes."""
    unit = (REPO / "deploy" / "systemd" / "rdio-api.service").read_text()
    lines = dict(
        line.split("=", 1) for line in unit.splitlines() if line.startswith(("ExecStart=", "ExecReload="))
    )
    assert set(lines) == {"ExecStart", "ExecReload"}
    for command in lines.values():
        argv = shlex.split(command)
        assert argv[0].endswith("/rdio-api")
        build_parser().parse_args(argv[1:])
    assert shlex.split(lines["ExecReload"])[1] == "restart"
