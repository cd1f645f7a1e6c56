"""Every JSON route documents a named response schema (rdio_api.schemas), and what it answers is that
schema: the list shape has no meta/sources/frequencies, the detail shape has them."""

from __future__ import annotations

import httpx
import pytest

from rdio_api.schemas import QueueStatus
from rdio_core.models import JobStatus
from tests.conftest import ADMIN_KEY
from tests.helpers import clip
from tests.test_upload import fresh_system, post, sdrtrunk_fields

# Detail-only: they grow with a call (transmissions and attributed segments with its key-ups and speech).
LARGE = {"meta", "sources", "frequencies", "transmissions", "segments"}
# Routes whose success is not a JSON document: audio bytes, an event stream, Prometheus text, and
# the uploads (Rdio Scanner's plain-text answers, which rdio_api.routes.upload documents itself).
NOT_JSON = {
    ("get", "/api/calls/{call_id}/audio"),
    ("get", "/api/events"),
    ("get", "/metrics"),
    ("post", "/api/call-upload"),
    ("post", "/api/trunk-recorder-call-upload"),
}


@pytest.fixture(scope="module")
def spec(server) -> dict:
    r = httpx.get(f"{server.url}/openapi.json", headers={"X-API-Key": ADMIN_KEY}, timeout=10)
    assert r.status_code == 200
    return r.json()


def get(server, path: str, **params) -> httpx.Response:
    r = httpx.get(f"{server.url}{path}", headers={"X-API-Key": ADMIN_KEY}, params=params, timeout=10)
    assert r.status_code == 200, r.text
    return r


def test_every_json_route_answers_a_named_schema(spec):
    components = spec["components"]["schemas"]
    routes = {(method, path): op for path, methods in spec["paths"].items() for method, op in methods.items()}
    assert routes.keys() >= NOT_JSON
    assert len(routes) - len(NOT_JSON) >= 10
    for (method, path), operation in routes.items():
        if (method, path) in NOT_JSON:
            continue
        success = [r for code, r in operation["responses"].items() if code.startswith("2")]
        assert success, f"{method} {path} documents no 2xx"
        for response in success:
            schema = response["content"]["application/json"]["schema"]
            ref = schema.get("$ref", "")
            assert ref.startswith("#/components/schemas/"), f"{method} {path}: {schema}"
            assert components[ref.rsplit("/", 1)[1]].get("properties"), f"{method} {path}: {ref} is bare"


def test_list_item_and_detail_schemas(spec):
    components = spec["components"]["schemas"]
    page = spec["paths"]["/api/calls"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/CallPage"}
    assert components["CallPage"]["properties"]["calls"]["items"] == {"$ref": "#/components/schemas/CallOut"}
    listed = set(components["CallOut"]["properties"])
    detail = set(components["CallDetail"]["properties"])
    assert not listed & LARGE and detail == listed | LARGE
    assert components["CallOut"]["properties"]["date_time"]["format"] == "date-time"
    # The event stream's payloads are named too, though no route answers them as JSON.
    assert {"CallCreated", "TranscriptUpdated", "JobOut", "CallTranscription"} <= components.keys()


def test_queue_status_has_a_count_for_every_job_status():
    assert {s.value for s in JobStatus} <= QueueStatus.model_fields.keys()


def test_answers_match_their_schema(server, spec):
    system = fresh_system()
    r = post(server, sdrtrunk_fields(system, talkgroup=100), clip("speech_sdrtrunk.mp3"))
    call_id = int(r.headers["x-call-id"])
    components = spec["components"]["schemas"]
    (item,) = get(server, "/api/calls", system=system).json()["calls"]
    detail = get(server, f"/api/calls/{call_id}").json()
    assert item.keys() == components["CallOut"]["properties"].keys()
    assert detail.keys() == components["CallDetail"]["properties"].keys()
    assert {k: v for k, v in detail.items() if k not in LARGE} == item
    assert item["date_time"].endswith("+00:00") and item["received_at"].endswith("+00:00")
    assert item["audio_url"] == f"/api/calls/{call_id}/audio"
    queue = get(server, "/api/transcription/queue/status").json()
    assert queue.keys() == components["QueueStatus"]["properties"].keys()
    assert get(server, "/health").json() == {"status": "ok"}
