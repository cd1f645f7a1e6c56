"""Dispatch tones through the whole system: an SDRTrunk upload, the API's analysis publisher, the
``analyze_call`` task on a real ``alerts``-queue worker, the tone rule's signed webhook to a local
receiver, and the transcription worker (tiny.en) skipping a tone-only call and cutting the page out
of a mixed one."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import yaml

from rdio_tasks.celery_app import worker_argv
from tests import tone_signals as ts
from tests.helpers import raw_request, sdrtrunk_body
from tests.stack import ADMIN, Stack
from tests.test_upload import fresh_system, sdrtrunk_fields

pytestmark = pytest.mark.worker

STATION_7 = (1002.3, 1270.7)


class Receiver:
    """A local webhook receiver: the JSON documents POSTed to it, in order."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        posts = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, call_id: int, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for post in self.posts:
                if post["call"]["id"] == call_id:
                    return post
            time.sleep(0.1)
        raise TimeoutError(f"no alert for call {call_id}: {self.posts}")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_url, receiver) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("tones"), database_url)
    s.config["tones"] = {"sets": [{"name": "Station 7", "tones": list(STATION_7)}]}
    s.config["alerts"] = {
        "rules": [
            {
                "name": "station 7",
                "tones": ["Station 7"],
                "actions": [{"webhook": {"url": f"{receiver.url}/page", "secret": "tone-secret"}}],
            }
        ]
    }
    s.server.config_path.write_text(yaml.safe_dump(s.config))
    s.start()
    log = open(s.work / "alerts-worker.log", "ab")  # noqa: SIM115 - owned by the child
    alerts = subprocess.Popen(
        [sys.executable, *worker_argv(f"tones-{os.getpid()}@%h", queues=("alerts", "tones"))],
        cwd=s.work,
        env=s.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield s
    alerts.terminate()
    alerts.wait(20)
    s.stop()


def upload(stack: Stack, signal: np.ndarray) -> int:
    body = sdrtrunk_body(sdrtrunk_fields(fresh_system(), talkgroup=700, key=ADMIN), ts.mp3(signal))
    status, headers, text = raw_request(stack.server.port, body)
    assert status.startswith("HTTP/1.1 200"), (status, text)
    return int(headers["x-call-id"])


def wait_tones(stack: Stack, call_id: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tones = stack.get(f"/api/calls/{call_id}").json().get("tones")
        if tones is not None:
            return tones
        time.sleep(0.2)
    raise TimeoutError(f"call {call_id} not analysed\n{stack.logs()}")


def page() -> np.ndarray:
    return np.concatenate([ts.silence(0.3), ts.two_tone(*STATION_7), ts.silence(0.2)])


def test_tone_only_call_is_analysed_alerted_and_skipped(stack, receiver):
    call_id = upload(stack, ts.with_noise(page(), 25))
    (tone,) = wait_tones(stack, call_id)
    assert tone["kind"] == "two_tone" and tone["name"] == "Station 7"
    assert (
        abs(tone["frequencies"][0] - STATION_7[0]) < 0.5 and abs(tone["frequencies"][1] - STATION_7[1]) < 0.5
    )
    alert = receiver.wait(call_id)
    assert alert["rule"] == "station 7"
    body = stack.wait_call(call_id)
    job = body["latest_job"]
    assert job["status"] == "skipped"
    assert job["error"].startswith("only dispatch tones, no speech: two-tone 1002.3/1270.7 Hz (Station 7)")


def test_mixed_call_is_transcribed_without_its_page(stack):
    speech = ts.speech()
    call_id = upload(stack, ts.with_noise(np.concatenate([page(), speech]), 25))
    assert [t["name"] for t in wait_tones(stack, call_id)] == ["Station 7"]
    body = stack.wait_call(call_id)
    job = body["latest_job"]
    assert job["status"] == "completed", body
    assert "what your country can do for you" in job["text"].lower()
    segments = stack.get(f"/api/calls/{call_id}/transcription").json()["latest_job"]["segments"]
    assert segments and segments[0]["start"] >= 4.3  # on the stored audio's clock, after the page
