"""`rdio-api up`: the whole embedded system starts, transcribes an upload and stops with no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest
import yaml

from tests.helpers import clip, free_port, raw_request, sdrtrunk_body, wait_http
from tests.test_upload import sdrtrunk_fields

pytestmark = pytest.mark.worker


def test_up_transcribes_and_stops_cleanly(tmp_path):
    port, flower_port = free_port(), free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "api_keys": [{"key": "k", "name": "sdrtrunk", "scopes": ["upload", "read"]}],
                "flower": {"port": flower_port},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDIO_")}
    env["HF_HUB_OFFLINE"] = "1"
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "rdio_api", "up", "--config", str(cfg), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    family: list[psutil.Process] = []
    try:
        # "up" only once a call can be transcribed: the API answers and a worker has its model.
        deadline = time.monotonic() + 180
        while b"rdio-api is up" not in (tmp_path / "up.log").read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.2)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready").json()
        assert ready["checks"]["workers"] == "ok: 1 transcription worker", ready
        banner = (tmp_path / "up.log").read_text()
        assert "enter the key 'sdrtrunk' once" in banner and "key=" not in banner
        # A few calls at once: the worker runs them concurrently and batches their chunks.
        call_ids = []
        for n, name in enumerate(("speech_sdrtrunk.mp3", "speech.wav", "speech.m4a")):
            body = sdrtrunk_body(sdrtrunk_fields(31, talkgroup=100 + n, key="k"), clip(name))
            status, headers, text = raw_request(port, body)
            assert status.startswith("HTTP/1.1 200") and b"Call imported successfully." in text
            call_ids.append(headers["x-call-id"])
        for call_id in call_ids:
            deadline = time.monotonic() + 120
            result = {}
            while time.monotonic() < deadline:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/calls/{call_id}/transcription", headers={"X-API-Key": "k"}
                )
                result = r.json() if r.status_code == 200 else {}
                if result.get("status") in ("completed", "failed"):
                    break
                time.sleep(0.5)
            assert result.get("status") == "completed", (tmp_path / "up.log").read_text()[-3000:]
            words = result["transcript"]["text"].lower()
            assert "greasy" in words and "year" in words, words
        # Flower is up and insists on the generated credentials.
        creds = (tmp_path / "data" / "flower-credentials").read_text().strip().split(":", 1)
        wait_http(f"http://127.0.0.1:{flower_port}/healthcheck", 30, auth=tuple(creds))
        assert httpx.get(f"http://127.0.0.1:{flower_port}/").status_code == 401
        assert (tmp_path / "data" / "redis" / "appendonlydir").exists() or list(
            (tmp_path / "data" / "redis").glob("*.aof*")
        )
        family = [proc_ for proc_ in psutil.Process(proc.pid).children(recursive=True)]
        names = " ".join(" ".join(p.cmdline()) for p in family)
        assert "redis-server" in names and "serve" in names and "worker" in names and "flower" in names
        assert creds[1] not in names  # Flower's password is not in the process list
        log_text = (tmp_path / "up.log").read_text()
        # Quiet by default: no migration steps, no Celery banner or root warning, no table races.
        for noise in ("alembic", "superuser privileges", "no such table", "[tasks]", "Inspect method"):
            assert noise not in log_text, (noise, log_text[-3000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0
    time.sleep(0.5)
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [" ".join(p.cmdline()) for p in alive]
