"""Full-text search against a real server: words, phrases, prefixes, numbers written every way,
filters, order, cursors, snippets, key grants, and the index kept in step with transcripts."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import update

from rdio_core import db, jobs
from rdio_core.models import Call, utcnow
from tests.conftest import ADMIN_KEY, READ_KEY, SCOPED_KEY
from tests.helpers import clip
from tests.test_upload import fresh_system, post, sdrtrunk_fields


def upload(server, system: int, talkgroup: int = 100, source: int = 1234, **extra: str) -> int:
    r = post(
        server,
        sdrtrunk_fields(system, talkgroup=talkgroup, source=source, **extra),
        clip("speech_sdrtrunk.mp3"),
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    return r.json()["id"]


def transcribe(db_engine, call_id: int, text: str) -> int:
    """Give a call a completed transcript through the job state machine the worker uses."""
    factory = db.make_session_factory(db_engine)
    with factory() as session:
        job = jobs.create_job(session, call_id, 3, None, None)
        session.commit()
        job_id = job.id
    assert jobs.claim(factory, job_id, "test-worker", 60, 3).outcome == "claimed"
    assert jobs.complete(factory, job_id, "test-worker", {"text": text, "segments": []})
    return job_id


def find(server, q: str, key: str = READ_KEY, **params) -> dict:
    r = httpx.get(f"{server.url}/api/search", params={"q": q, **params}, headers={"X-API-Key": key})
    assert r.status_code == 200, r.text
    return r.json()


def ids(body: dict) -> list[int]:
    return [r["call"]["id"] for r in body["results"]]


@pytest.fixture(scope="module")
def corpus(server, db_engine) -> dict[str, int]:
    system = fresh_system()
    texts = {
        "fire": "Engine 7 respond to a structure fire at 1437 Main Street",
        "code": "Medic 12 is 10-50 at the intersection, ten four",
        "spelled": "unit two is ten fifty with minor injuries",
        "split": "caller at fourteen thirty seven Oak reports smoke",
        "angle": "suspect said <script>alert(1)</script> and fled",
    }
    out = {}
    for i, (name, text) in enumerate(texts.items()):
        call_id = upload(server, system, talkgroup=100 + i, source=5000 + i)
        transcribe(db_engine, call_id, text)
        out[name] = call_id
    out["system"] = system
    return out


def test_word_phrase_and_prefix(server, corpus):
    assert corpus["fire"] in ids(find(server, "structure"))
    assert corpus["fire"] in ids(find(server, '"structure fire"'))
    assert corpus["fire"] not in ids(find(server, '"fire structure"'))
    assert corpus["fire"] in ids(find(server, "engin*"))
    assert ids(find(server, "structure zebra")) == []  # every word must match


@pytest.mark.parametrize("form", ["10-50", "10 50", "ten fifty", '"10-50"', "1050"])
def test_a_number_finds_every_spelling(server, corpus, form):
    found = set(ids(find(server, form, system=corpus["system"])))
    assert {corpus["code"], corpus["spelled"]} <= found


@pytest.mark.parametrize("form", ["1437", "14-37", "fourteen thirty seven"])
def test_an_address_number_finds_both_forms(server, corpus, form):
    found = set(ids(find(server, form, system=corpus["system"])))
    assert {corpus["fire"], corpus["split"]} <= found


def test_snippet_marks_hits_and_escapes_html(server, corpus):
    body = find(server, "10-50", system=corpus["system"])
    snippets = {r["call"]["id"]: r["snippet"] for r in body["results"]}
    assert "<mark>10-50</mark>" in snippets[corpus["code"]]
    assert "<mark>ten</mark> <mark>fifty</mark>" in snippets[corpus["spelled"]]
    angle = find(server, "suspect", system=corpus["system"])["results"][0]["snippet"]
    assert "&lt;script&gt;" in angle and "<script>" not in angle


def test_labels_and_units_are_searchable_before_any_transcript(server):
    system = fresh_system()
    call_id = upload(server, system, source=7654321, talkgroupLabel="Harbor Patrol Ops")
    assert ids(find(server, "harbor patrol", system=system)) == [call_id]
    assert ids(find(server, "7654321", system=system)) == [call_id]


def test_newest_first_cursor_pages_through_everything(server, db_engine):
    system = fresh_system()
    made = [upload(server, system, talkgroup=200 + i, source=i + 1) for i in range(5)]
    for call_id in made:
        transcribe(db_engine, call_id, "pager test common word")
    seen, cursor = [], None
    while True:
        params = {"system": system, "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = find(server, "pager", **params)
        seen += ids(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(made, reverse=True)
    relevance = find(server, "pager", system=system, order="relevance", limit=3)
    assert len(relevance["results"]) == 3 and relevance["next_cursor"]
    rest = find(server, "pager", system=system, order="relevance", limit=3, cursor=relevance["next_cursor"])
    assert sorted(ids(relevance) + ids(rest)) == sorted(made)


def test_filters(server, corpus):
    assert ids(find(server, "smoke", system=corpus["system"], talkgroup=103)) == [corpus["split"]]
    assert ids(find(server, "smoke", system=corpus["system"], talkgroup=104)) == []
    assert ids(find(server, "smoke", system=corpus["system"], until="2001-01-01T00:00:00Z")) == []
    assert ids(find(server, "smoke", system=corpus["system"], has_audio=True)) == [corpus["split"]]


def test_has_audio_follows_retention(server, db_engine):
    """Retention deletes the file and marks the row: the call leaves has_audio=true for has_audio=false."""
    system = fresh_system()
    kept, removed = (upload(server, system, talkgroup=300 + i) for i in range(2))
    for call_id in (kept, removed):
        transcribe(db_engine, call_id, "retention heron check")
    with db.make_session_factory(db_engine)() as session:
        session.execute(update(Call).where(Call.id == removed).values(audio_removed_at=utcnow()))
        session.commit()
    assert ids(find(server, "heron", system=system, has_audio=True)) == [kept]
    assert ids(find(server, "heron", system=system, has_audio=False)) == [removed]
    assert ids(find(server, "heron", system=system)) == [removed, kept]


def test_retranscription_replaces_the_entry(server, db_engine):
    system = fresh_system()
    call_id = upload(server, system)
    transcribe(db_engine, call_id, "first version mentions walrus")
    assert ids(find(server, "walrus", system=system)) == [call_id]
    transcribe(db_engine, call_id, "second version mentions pelican")
    assert ids(find(server, "walrus", system=system)) == []
    assert ids(find(server, "pelican", system=system)) == [call_id]


def test_key_grants_limit_search(server, db_engine):
    allowed = upload(server, 11, talkgroup=5, source=fresh_system())
    hidden = upload(server, fresh_system(), source=4242)
    transcribe(db_engine, allowed, "granted quokka sighting")
    transcribe(db_engine, hidden, "hidden quokka sighting")
    assert set(ids(find(server, "quokka", key=ADMIN_KEY))) >= {allowed, hidden}
    assert ids(find(server, "quokka", key=SCOPED_KEY)) == [allowed]


@pytest.mark.parametrize(("q", "status"), [("!!! ...", 400), ("", 422), ("x" * 501, 422)])
def test_bad_queries_are_4xx(server, q, status):
    r = httpx.get(f"{server.url}/api/search", params={"q": q}, headers={"X-API-Key": READ_KEY})
    assert r.status_code == status


def test_foreign_cursor_is_400(server):
    r = httpx.get(
        f"{server.url}/api/search",
        params={"q": "fire", "cursor": "bm90LWEtY3Vyc29y"},
        headers={"X-API-Key": READ_KEY},
    )
    assert r.status_code == 400


def test_a_word_with_digits_is_one_phrase(server, db_engine):
    """ "phone1" must not match every call that merely contains a 1 (found by the console tests)."""
    system = fresh_system()
    wanted = upload(server, system, talkgroup=1)
    other = upload(server, system, talkgroup=2, source=4200019)
    transcribe(db_engine, wanted, "switch to phone1 for the update")
    transcribe(db_engine, other, "phone line is down at station 19")
    assert ids(find(server, "PHONE1", system=system)) == [wanted]


def _labelled(server, system: int, talkgroup: int, label: str, source: int) -> int:
    """An upload with its own talkgroup label, a minute from any other (never a duplicate)."""
    when = int(time.time()) - 3600 + 60 * (source % 50)
    fields = [
        (k, v)
        for k, v in sdrtrunk_fields(system, talkgroup=talkgroup, source=source, when=when)
        if k != "talkgroupLabel"
    ]
    r = post(
        server,
        [*fields, ("talkgroupLabel", label)],
        clip("speech_sdrtrunk.mp3"),
        headers={"Accept": "application/json"},
    )
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_transcript_matches_rank_above_label_only_matches(server, db_engine):
    """A word in a talkgroup's name matches all its calls; the call whose transcript said the word
    comes first in relevance order, its snippet marked. (The label-only document is the shorter
    one, which the index alone ranks higher.)"""
    system = fresh_system()
    said = _labelled(server, system, 1, "FD Dispatch", 7301)
    transcribe(db_engine, said, "the boat is tied up at the harbor entrance by the fuel dock now")
    named = [_labelled(server, system, 2, "Harbor Tower", 7302 + n) for n in range(3)]
    for call_id in named:
        transcribe(db_engine, call_id, "copy")
    body = find(server, "harbor", system=system, order="relevance")
    assert ids(body) == [said, *sorted(named, reverse=True)]
    assert "<mark>harbor</mark>" in body["results"][0]["snippet"]
    # Newest first is still newest first.
    assert ids(find(server, "harbor", system=system)) == [*sorted(named, reverse=True), said]
    # Pages of the relevance order follow on from each other.
    first = find(server, "harbor", system=system, order="relevance", limit=2)
    rest = find(server, "harbor", system=system, order="relevance", limit=2, cursor=first["next_cursor"])
    assert ids(first) + ids(rest) == ids(body)


def test_a_radio_id_matches_as_a_unit_not_as_digits_inside_words(server, db_engine):
    system = fresh_system()
    radio = upload(server, system, talkgroup=1, source=73127)
    inside = upload(server, system, talkgroup=2, source=5001)
    transcribe(db_engine, radio, "copy that")
    transcribe(db_engine, inside, "medic573127 is on scene with engine 731270")
    assert ids(find(server, "73127", system=system)) == [radio]
    assert ids(find(server, "73127", system=system, order="relevance")) == [radio]
    # A number no radio used is still searched in the text, digits and all.
    assert ids(find(server, "731270", system=system)) == [inside]
