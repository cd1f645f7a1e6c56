"""``rdio-api up`` keeps ingesting when a helper fails, and restarts with no refused upload.

Flower's port is taken before start (seen in the field: the API accepted uploads, then Flower's exit
shut everything down). Now Flower is started again with backoff and reported, the API goes on, and
``rdio-api restart`` hands the API's socket over while uploads keep arriving.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

from tests.conftest import READ_KEY, UPLOAD_KEY, base_config
from tests.helpers import free_port, wait_http, wait_until
from tests.test_spool import assert_every_call_stored
from tests.upload_stream import UploadStream

pytestmark = pytest.mark.worker


def test_up_survives_a_failing_flower_and_restarts_with_no_refused_upload(tmp_path: Path) -> None:
    port = free_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    url = f"sqlite:///{tmp_path / 'rdio.db'}"
    config = base_config(tmp_path / "data", url, flower={"port": taken.getsockname()[1]})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDIO_")}
    env["HF_HUB_OFFLINE"] = "1"
    log = tmp_path / "up.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdio_api", "up", "--config", str(path), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    stream = UploadStream(lambda: base, UPLOAD_KEY, system=821, rate=20)
    family: list[psutil.Process] = []
    try:
        wait_http(f"{base}/health", 120, proc)
        family = psutil.Process(proc.pid).children(recursive=True)
        stream.start()

        def flower_restarted() -> bool:
            checks = httpx.get(f"{base}/ready", timeout=5).json()["checks"]
            return "flower" in checks.get("helpers", "") and "restarts)" in checks["helpers"]

        wait_until(flower_restarted, 60, "flower restarted and reported in /ready")
        assert proc.poll() is None  # a dashboard never stops ingest
        scraped = httpx.get(f"{base}/metrics", headers={"X-API-Key": READ_KEY}, timeout=10).text
        assert 'rdio_helper_restarts{helper="flower"}' in scraped
        assert "starting it again" in log.read_text()

        done = subprocess.run(
            [sys.executable, "-m", "rdio_api", "restart", "--config", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr + log.read_text()[-3000:]
        wait_until(lambda: stream.accepted >= 80, 60, "uploads after the restart")
    finally:
        stream.stop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
        taken.close()
    assert proc.returncode == 0
    family += [p for p in family if p.is_running()]
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert_every_call_stored(stream, url, tmp_path / "data")
