"""The web console in a real Chromium, against a real rdio-api, redis-server and (for transcripts)
a Celery worker running tiny.en: what a person at the page sees, hears and can do.

One Stack serves the whole module; the worker starts only when a ``worker`` test needs it. Every
test opens its own browser context (its own localStorage), so the key prompt is tested fresh.
Screenshots land in the test's tmp dir and in test-artifacts/console/.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import signal
import time
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from sqlalchemy import update

from rdio_core.models import Call
from tests.browser import Console, after_every_call, chromium, console_stack, upload
from tests.conftest import base_config
from tests.helpers import REPO, ServerProcess, clip
from tests.stack import ADMIN, READER
from tests.test_upload import fresh_system

CORPUS = REPO / "tests" / "corpus" / "audio"
LIMITED = "console-limited-key"
DESKTOP = {"width": 1200, "height": 900}
PHONE = {"width": 375, "height": 812}
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

# Radio ids no other module uploads (test_read_api_limits uses 4200000 and up).
_sources = itertools.count(7_300_001)
_last_start = 0
PAGING_TALKGROUPS = (140, 141, 142)


@pytest.fixture(scope="module")
def systems() -> tuple[int, int]:
    """Two systems of this module's own: the limited key sees the first one only."""
    return fresh_system(), fresh_system()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_url, systems):
    limited = {"key": LIMITED, "name": "one system", "scopes": ["read"], "systems": [{"id": systems[0]}]}
    # The paging test's 55 calls need no transcript: on talkgroups 140-142 they would keep the
    # worker busy for about 35 s, and every later test's call would wait behind them.
    paging = {"id": systems[1], "talkgroups": [{"id": t, "enabled": False} for t in PAGING_TALKGROUPS]}
    s = console_stack(tmp_path_factory.mktemp("console"), database_url, [limited], systems=[paging])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def worker(stack):
    if stack.worker is None:
        stack.start_worker()
    return stack


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


# The feed's default is one line per call (tests/test_console_scanner.py); these tests read the
# cards, so their browser starts with the cards chosen (unless a test chose otherwise).
CHOOSE_CARDS = """(() => { try {
  const saved = JSON.parse(localStorage.getItem('rdio.scanner') || '{}');
  if (!('view' in saved)) localStorage.setItem('rdio.scanner', JSON.stringify({ ...saved, view: 'cards' }));
} catch (e) {} })()"""


def _console(browser, stack, tmp_path, viewport: dict, cards: bool = False, **options):
    context = browser.new_context(viewport=viewport, **options)
    if cards:
        context.add_init_script(CHOOSE_CARDS)
    return context, Console(context.new_page(), stack.server.url, tmp_path)


@pytest.fixture
def console(browser, stack, tmp_path):
    context, tab = _console(browser, stack, tmp_path, DESKTOP, cards=True)
    yield tab
    context.close()


@pytest.fixture
def phone(browser, stack, tmp_path):
    context, tab = _console(
        browser, stack, tmp_path, PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    yield tab
    context.close()


def send(stack, audio: bytes, system: int, talkgroup: int = 100, alias: str = "E12") -> int:
    """Upload as SDRTrunk does. Each call starts 3 s after the one before (the same clip twice
    within upload.dedup_window_seconds would be a duplicate), so newest first is upload order."""
    global _last_start
    _last_start = max(after_every_call(stack) if not _last_start else 0, int(time.time()), _last_start + 3)
    return upload(
        stack, audio, system, talkgroup, key=ADMIN, source=next(_sources), when=_last_start, talkerAlias=alias
    )


def spelled(number: str) -> str:
    """'90210' -> 'nine zero two one zero': the same number written another way."""
    return " ".join(DIGIT_WORDS[int(d)] for d in number)


# --- serving ------------------------------------------------------------------------------------


def test_page_and_assets_are_served_with_cache_headers(stack):
    url = stack.server.url
    page = httpx.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache" and page.headers["etag"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    # Deep links answer the same page, so a reload of any of them works.
    for path in ("/calls/12345", "/search?q=engine+12", "/talkgroups"):
        deep = httpx.get(url + path)
        assert deep.status_code == 200 and deep.content == page.content, path
    # Revalidation costs a 304 and no body.
    again = httpx.get(f"{url}/", headers={"If-None-Match": page.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    script = httpx.get(f"{url}/console/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cache-control"] == "no-cache"
    assert (
        httpx.get(f"{url}/console/app.js", headers={"If-None-Match": script.headers["etag"]}).status_code
        == 304
    )
    assert httpx.get(f"{url}/console/console.css").headers["content-type"].startswith("text/css")
    for bad in ("/console/nope.js", "/console/..%2Fapp.py", "/console/index.html", "/console/.hidden.js"):
        assert httpx.get(url + bad).status_code == 404, bad
    # The page needs no key (the API behind it does) and stays out of the OpenAPI schema.
    schema = httpx.get(f"{url}/openapi.json", headers={"X-API-Key": READER}).json()
    assert not [
        p for p in schema["paths"] if not p.startswith("/api/") and p.startswith(("/console", "/calls"))
    ]
    assert "/" not in schema["paths"] and "/search" not in schema["paths"]


# --- key ------------------------------------------------------------------------------------------


def test_asks_for_the_key_once_and_never_puts_it_in_a_url(console, stack, systems):
    call = send(stack, clip("speech_sdrtrunk.mp3"), systems[0])
    console.open("/")
    console.enter_key(READER)
    console.wait_live()
    console.card(call).wait_for(timeout=10_000)
    # Kept in this browser: a reload asks nothing, and every API request carries it in the header.
    console.requests.clear()
    console.page.reload()
    console.wait_live()
    assert not console.page.locator("#key-dialog").is_visible()
    console.card(call).wait_for(timeout=10_000)
    api_requests = [r for r in console.requests if "/api/" in r.url]
    assert api_requests and all(r.headers.get("x-api-key") == READER for r in api_requests)
    assert not [r.url for r in console.requests if READER in r.url]
    assert console.foreign_requests() == []
    # A refused key is forgotten and asked for again, saying why.
    console.page.evaluate("localStorage.setItem('rdio.apiKey', 'not-a-key')")
    console.page.reload()
    console.page.locator("#key-dialog").wait_for(state="visible", timeout=10_000)
    assert "refused" in console.page.inner_text("#key-error")
    console.enter_key(READER)
    console.wait_live()
    assert console.console_errors == []


def test_public_read_needs_no_key(browser, tmp_path, database_url):
    server = ServerProcess(tmp_path, base_config(tmp_path / "data", database_url, auth={"public_read": True}))
    server.start()
    context = browser.new_context(viewport=DESKTOP)
    try:
        tab = Console(context.new_page(), server.url, tmp_path)
        tab.open("/")
        tab.wait_live()
        tab.page.wait_for_selector(
            "#feed article[data-call-id], p.note:has-text('No calls yet')", timeout=10_000
        )
        assert not tab.page.locator("#key-dialog").is_visible()
        assert not [r.url for r in tab.requests if "x-api-key" in r.headers]
        assert tab.console_errors == []
    finally:
        context.close()
        server.stop()


# --- live feed, playback, transcript ---------------------------------------------------------------


@pytest.mark.worker
def test_live_upload_appears_plays_and_gets_its_transcript(console, worker, systems):
    console.open("/")
    console.enter_key(READER)
    console.wait_live()
    console.page.click("#live-toggle")
    assert console.page.get_attribute("#live-toggle", "aria-pressed") == "true"

    call = send(worker, (CORPUS / "jfk_radio.mp3").read_bytes(), systems[0], talkgroup=101, alias="E12")
    card = console.card(call)
    card.wait_for(timeout=10_000)
    header = card.inner_text()
    assert "FD Dispatch" in header and "County P25" in header and "E12" in header
    assert console.page.locator("#feed article.card").first.get_attribute("data-call-id") == str(call)

    # Live playback: the scanner picked it up and the audio element really advances.
    console.wait_until("() => document.getElementById('audio').currentTime > 0.5", what="playback to start")
    first = console.audio_time()
    console.wait_until(
        f"() => document.getElementById('audio').currentTime > {first + 0.5}", what="playback to advance"
    )
    assert "FD Dispatch" in console.page.inner_text("#now-playing")

    # The transcript arrives on the event stream, under its card, with no reload.
    card.locator(".transcript .seg").first.wait_for(timeout=120_000)
    shown = card.locator(".transcript").inner_text()
    stored = worker.get(f"/api/calls/{call}/transcription").json()["transcript"]
    assert "country" in shown.lower() and stored["text"].split()[0] in shown
    segments = stored["segments"]

    # Clicking a segment seeks there and plays; the segment being spoken is highlighted.
    last = card.locator(".transcript .seg").last
    console.page.evaluate(
        "() => { const a = document.getElementById('audio'); a.pause(); a.currentTime = 0; }"
    )
    last.click()
    console.wait_until(
        "() => !document.getElementById('audio').paused", what="playback after a segment click"
    )
    assert console.audio_time() >= segments[-1]["start"] - 0.05
    console.wait_until(
        "(id) => document.querySelector(`article[data-call-id='${id}'] .seg.speaking`)",
        call,
        what="the spoken segment's highlight",
    )
    console.screenshot("live-feed")
    assert console.console_errors == []


@pytest.mark.worker
def test_search_finds_a_call_by_word_and_by_a_number_written_another_way(console, worker, systems):
    words = send(worker, (CORPUS / "librispeech_260_radio.mp3").read_bytes(), systems[0], talkgroup=102)
    digits = send(worker, (CORPUS / "vosk_digits_radio.mp3").read_bytes(), systems[0], talkgroup=103)
    said = worker.wait_call(words)["transcript"]["text"]
    numbers = worker.wait_call(digits)["transcript"]["text"]
    assert "horizon" in said.lower(), said
    run = max(re.findall(r"\d{3,}", numbers), key=len, default="")
    assert run, f"the digits clip gave no number to search for: {numbers!r}"

    console.open("/search")
    console.enter_key(READER)
    console.page.fill("input[name=q]", "horizon")
    console.page.click("form.search button[type=submit]")
    console.page.wait_for_url("**/search?q=horizon")
    hit = console.card(words, "#results")
    hit.wait_for(timeout=10_000)
    assert hit.locator(".snippet mark").first.inner_text().lower() == "horizon"

    # The number, spelled out in words, finds the call whose transcript has it in digits.
    query = spelled(run)
    console.page.fill("input[name=q]", query)
    console.page.click("form.search button[type=submit]")
    found = console.card(digits, "#results")
    found.wait_for(timeout=10_000)
    assert found.locator(".snippet mark").count() >= 1
    assert console.card(words, "#results").count() == 0

    # The URL is the search: a reload shows the same results, and the result plays.
    assert "q=" + query.replace(" ", "+") in console.page.url
    console.page.reload()
    found.wait_for(timeout=10_000)
    assert console.page.input_value("input[name=q]") == query
    found.locator("button.play").click()
    console.wait_until("() => document.getElementById('audio').currentTime > 0.3", what="the result to play")

    # A filter that excludes the call's system finds nothing.
    console.open(f"/search?q=horizon&system={systems[1]}")
    console.page.wait_for_selector("p.note:has-text('No calls match')", timeout=10_000)
    console.open("/search?q=horizon&order=relevance")
    console.card(words, "#results").wait_for(timeout=10_000)
    console.screenshot("search")
    assert console.console_errors == []


# --- access -------------------------------------------------------------------------------------


def test_a_key_for_one_system_sees_nothing_of_another(console, stack, systems):
    mine, other = systems
    audio = clip("speech_sdrtrunk.mp3")
    seen = send(stack, audio, mine, alias="LIMITTEST")
    hidden = send(stack, audio, other, alias="LIMITTEST")
    console.open("/")
    console.enter_key(LIMITED)
    console.wait_live()
    console.card(seen).wait_for(timeout=10_000)
    assert console.card(hidden).count() == 0

    # Live: the other system's call is sent first; once this system's later call is shown, the
    # other one would have been shown before it (the stream is in order).
    hidden_live = send(stack, audio, other, alias="LIMITTEST")
    seen_live = send(stack, audio, mine, alias="LIMITTEST")
    console.card(seen_live).wait_for(timeout=10_000)
    assert console.card(hidden_live).count() == 0

    # Search by the unit alias both systems' calls carry.
    console.open("/search?q=LIMITTEST")
    console.card(seen, "#results").wait_for(timeout=10_000)
    shown = console.page.locator("#results article.card").evaluate_all(
        "els => els.map(e => +e.dataset.callId)"
    )
    assert seen in shown and seen_live in shown and hidden not in shown and hidden_live not in shown

    # Audio, asked for by hand with the page's own key.
    statuses = console.page.evaluate(
        """async (ids) => Promise.all(ids.map(async (id) => (await fetch(`/api/calls/${id}/audio`,
             {headers: {'X-API-Key': localStorage.getItem('rdio.apiKey')}})).status))""",
        [seen, hidden],
    )
    assert statuses == [200, 404]
    console.open(f"/calls/{hidden}")
    console.page.wait_for_selector(".call-head .error", timeout=10_000)
    assert "not found" in console.page.inner_text(".call-head").lower()
    console.screenshot("limited-key")
    assert console.console_errors == []


# --- call page ------------------------------------------------------------------------------------


@pytest.mark.worker
def test_call_page_shows_everything_stored_and_retranscribes_for_allowed_keys(console, worker, systems):
    # An alert tone: the model hears words in it, the radio filters remove them, with a reason.
    call = send(worker, (CORPUS / "nospeech_alert_tone_1khz.mp3").read_bytes(), systems[0], talkgroup=104)
    done = worker.wait_call(call)
    job = done["transcript"]
    assert job is not None, done
    removed = job["result"]["removed"]
    assert removed, f"expected the filters to remove something from an alert tone: {job['result']}"
    stored = worker.get(f"/api/calls/{call}").json()

    page = console.page
    console.open(f"/calls/{call}")
    console.enter_key(READER)
    page.wait_for_selector("h2:has-text('Raw and filtered text')", timeout=10_000)
    # The debugging panels are closed under the transcript: open them all to read them.
    for summary in page.locator("details.debug > summary").all():
        summary.click()
    text = page.inner_text("#view")
    assert "FD Dispatch · County P25" in text and "E12 (" in text
    for removal in removed:
        assert removal["reason"] in text
    if job["result"]["raw_text"]:
        assert job["result"]["raw_text"] in page.inner_text("p.raw")
    assert page.inner_text("p.filtered") == (job["text"] or "(no speech)")
    for name in ("audio_sha256", "received_at", "client_kind", "key_name", "frequency"):
        assert page.locator("dl.fields dt", has_text=name).count() == 1, name
    assert stored["audio_sha256"] in text
    history = page.locator(".panel:has(h2:text('Job history')) tbody tr")
    assert history.count() == len(done["history"])
    console.screenshot("call-page")

    # A read key may not re-transcribe: the server's reason is shown.
    page.click("button:text('Re-transcribe')")
    page.wait_for_selector(".call-head .note.error", timeout=10_000)
    assert "lacks scope" in page.inner_text(".call-head .note.error")

    # An admin key may: the new job joins the history once the worker is done with it.
    page.evaluate("(key) => localStorage.setItem('rdio.apiKey', key)", ADMIN)
    page.reload()
    page.wait_for_selector("h2:has-text('Job history')", timeout=10_000)
    page.click("button:text('Re-transcribe')")
    page.wait_for_selector(".call-head .note:has-text('Job ')", timeout=10_000)
    console.wait_until(
        """(n) => [...document.querySelectorAll(".panel")].find((s) => s.querySelector("h2")?.textContent
             === "Job history")?.querySelectorAll("tbody tr").length === n + 1""",
        len(done["history"]),
        timeout=120,
        what="the new job in the history",
    )
    assert console.console_errors == []


@pytest.mark.worker
def test_units_and_tones_on_cards_and_call_page_and_a_unit_searches(console, worker, systems, db_engine):
    """An upload with a srcList-shaped ``sources`` and a talkerAlias: its radios on the feed card
    and the call page (transcript under the radio on air), each a link to a ``unit:`` search. The
    tones are written to the row as the analyze task stores them (tone detection has its own tests)."""
    global _last_start
    _last_start = max(after_every_call(worker) if not _last_start else 0, int(time.time()), _last_start + 3)
    first, second = next(_sources), next(_sources)
    sources = [{"pos": 0.0, "src": first}, {"pos": 8.0, "src": second, "tag": "Ladder 9", "emergency": 1}]
    page = console.page
    console.open("/")
    console.enter_key(READER)
    console.wait_live()
    call = upload(
        worker,
        (CORPUS / "jfk_radio.mp3").read_bytes(),
        systems[0],
        105,
        key=ADMIN,
        source=first,
        when=_last_start,
        talkerAlias="Engine 7",
        sources=json.dumps(sources),
    )
    card = console.card(call)
    card.wait_for(timeout=10_000)
    assert card.locator("a.unit").all_inner_texts() == [f"Engine 7 ({first})", f"⚠ Ladder 9 ({second})"]

    tones = [
        {"kind": "two_tone", "frequencies": [1002.3, 1270.7], "start": 0.0, "end": 4.0, "name": "Station 7"}
    ]
    with db_engine.begin() as conn:
        conn.execute(
            update(Call)
            .where(Call.id == call)
            .values(tones=tones, analyzed_at=datetime.now(UTC).replace(tzinfo=None))
        )
    worker.wait_call(call)
    page.reload()
    card.wait_for(timeout=10_000)
    assert "Station 7 (two-tone 1002.3 / 1270.7 Hz)" in card.locator(".tones").inner_text()

    card.locator("a.open").click()
    page.wait_for_selector("h2:has-text('Units')", timeout=10_000)
    radios = page.locator("table.transmissions tbody tr")
    assert radios.count() == 2
    assert f"Engine 7 ({first})" in radios.nth(0).inner_text()
    assert "Ladder 9" in radios.nth(1).inner_text() and "EMERGENCY" in radios.nth(1).inner_text()
    assert "Station 7" in page.inner_text("section.panel:has(h2:text('Tones'))")
    # The ~11 s clip is one segment; its midpoint (5.5 s) is before the second key-up (8 s).
    speaker = page.locator(".transcript .speaker a.unit").first
    speaker.wait_for(timeout=10_000)
    assert speaker.inner_text() == f"Engine 7 ({first})"
    console.screenshot("call-units")

    radios.nth(1).locator("a.unit").click()
    page.wait_for_url(f"**/search?q=unit%3A{second}")
    console.card(call, "#results").wait_for(timeout=10_000)
    assert console.page.locator("#results article.card").count() == 1
    assert console.console_errors == []


# --- scanner --------------------------------------------------------------------------------------


def _player(console, expression: str):
    return console.page.evaluate(f"() => {{ const p = window.rdioConsole.player; return {expression}; }}")


def test_scanner_mutes_holds_skips_replays_and_remembers(console, stack, systems):
    mine = systems[0]
    audio = clip("speech_sdrtrunk.mp3")
    page = console.page
    noisy = send(stack, audio, mine, talkgroup=302)
    console.open("/")
    console.enter_key(READER)
    console.wait_live()
    page.click("#live-toggle")
    page.eval_on_selector("#volume", "(el) => { el.value = '0.3'; el.dispatchEvent(new Event('input')); }")

    # Mute talkgroup 302 from its card: its next call is listed (dimmed) but not played.
    card = console.card(noisy)
    card.locator("summary").click()
    card.locator("button:text('Mute talkgroup')").click()
    assert "avoided" in card.get_attribute("class")
    muted = send(stack, audio, mine, talkgroup=302)
    console.card(muted).wait_for(timeout=10_000)
    time.sleep(1.0)
    assert "avoided" in console.card(muted).get_attribute("class")
    assert _player(console, "p.current") is None and _player(console, "p.queue.length") == 0

    # Calls on another talkgroup play in arrival order; skip goes to the next; replay the last.
    first, second, third = (send(stack, audio, mine, talkgroup=301) for _ in range(3))
    console.wait_until("(id) => window.rdioConsole.player.current?.id === id", first, what="the first call")
    console.wait_until("() => window.rdioConsole.player.queue.length === 2", what="two calls queued")
    assert page.inner_text("#queue-size") == "2 queued"
    page.click("#skip")
    console.wait_until(
        "(id) => window.rdioConsole.player.current?.id === id", second, what="skip to the second"
    )
    page.click("#skip")
    console.wait_until(
        "(id) => window.rdioConsole.player.current?.id === id", third, what="skip to the third"
    )
    console.wait_until(
        "() => document.getElementById('audio').currentTime > 1.0", what="the third to play on"
    )
    page.click("#replay")
    console.wait_until(
        "() => document.getElementById('audio').currentTime < 0.8", what="the replay to restart"
    )
    assert _player(console, "p.current.id") == third and _player(console, "p.playing")

    # Hold talkgroup 301: a call on 303 is not played, the next one on 301 is.
    page.click("#hold")
    assert page.inner_text("#hold") == "Held: FD Dispatch (TG 301)"
    page.click("#skip")  # stop the replay: the player is idle
    other = send(stack, audio, mine, talkgroup=303)
    console.card(other).wait_for(timeout=10_000)
    held = send(stack, audio, mine, talkgroup=301)
    console.wait_until(
        "(id) => window.rdioConsole.player.current?.id === id", held, what="the held talkgroup"
    )
    assert _player(console, "p.queue.length") == 0

    # Everything chosen survives a reload.
    page.reload()
    console.wait_live()
    assert page.get_attribute("#live-toggle", "aria-pressed") == "true"
    assert page.input_value("#volume") == "0.3"
    assert page.inner_text("#hold") == "Held: FD Dispatch (TG 301)"
    console.card(muted).wait_for(timeout=10_000)
    assert "avoided" in console.card(muted).get_attribute("class")
    console.screenshot("scanner")
    assert console.console_errors == []


# --- event stream ---------------------------------------------------------------------------------


def test_stream_reconnects_with_last_event_id_and_loses_nothing(console, stack, systems):
    page = console.page
    console.open("/")
    console.enter_key(READER)
    console.wait_live()
    before = send(stack, clip("speech_sdrtrunk.mp3"), systems[0], talkgroup=110)
    console.card(before).wait_for(timeout=10_000)
    # The card can come from the feed's first page before its event arrives on the stream (seen
    # with four test workers on two cores): wait for the event, not for the card.
    last_id = console.wait_until("() => window.rdioConsole.stream.lastEventId", what="an event id")
    assert last_id.isdigit()

    # Cut the page off the network and its stream with it; a call arrives meanwhile.
    page.context.set_offline(True)
    page.evaluate("() => window.rdioConsole.stream.restart()")
    page.wait_for_selector("#stream-state[data-state=reconnecting]", timeout=10_000)
    missed = send(stack, clip("speech_sdrtrunk.mp3"), systems[0], talkgroup=110)
    time.sleep(0.5)
    assert console.card(missed).count() == 0
    console.requests.clear()
    page.context.set_offline(False)

    # Back online: the stream resumes after the last event seen and the missed call shows up.
    console.card(missed).wait_for(timeout=40_000)
    resumed = [r for r in console.requests if r.url.endswith("/api/events")]
    assert resumed and resumed[0].headers.get("last-event-id") == last_id
    console.wait_live()
    assert console.console_errors == []


# --- phone ----------------------------------------------------------------------------------------


def test_usable_at_phone_width(phone, stack, systems):
    call = send(stack, clip("speech_sdrtrunk.mp3"), systems[0], talkgroup=120, alias="PHONE1")
    phone.open("/")
    phone.page.locator("#key-dialog").wait_for(state="visible", timeout=10_000)
    phone.screenshot("phone-key")
    phone.enter_key(READER)
    phone.wait_live()
    pages = [
        ("/", "phone-feed", f"#feed article[data-call-id='{call}']"),
        ("/search?q=PHONE1", "phone-search", f"#results article.card[data-call-id='{call}']"),
        (f"/calls/{call}", "phone-call", "h2:has-text('Stored fields')"),
        ("/talkgroups", "phone-talkgroups", "table.talkgroups"),
    ]
    for path, name, ready in pages:
        phone.open(path)
        phone.page.wait_for_selector(ready, timeout=10_000)
        assert phone.page.evaluate("window.innerWidth") == PHONE["width"]
        assert phone.no_horizontal_scroll(), f"{path} scrolls sideways at {PHONE['width']} px"
        phone.screenshot(name)
    # The talkgroups view shows each talkgroup's call count and last activity from the API.
    section = phone.page.locator(f"section.panel[data-system='{systems[0]}']")
    assert "calls" in section.locator("span.activity").inner_text()
    assert phone.page.locator("text=does not report call counts").count() == 0
    assert phone.console_errors == []


# --- what the page trusts -------------------------------------------------------------------------


def test_labels_and_snippets_from_uploads_are_text_never_markup(console, stack, systems):
    alias = '<img src=x onerror="window.pwned=1">'
    call = send(stack, clip("speech_sdrtrunk.mp3"), systems[0], talkgroup=130, alias=alias)
    page = console.page
    console.open("/search?q=onerror")
    console.enter_key(READER)
    card = console.card(call, "#results")
    card.wait_for(timeout=10_000)
    assert card.locator(".snippet mark").count() >= 1  # the server's <mark> is markup...
    assert card.locator("img").count() == 0 and alias in card.inner_text()  # ...its escaped text is not
    console.open("/")
    console.card(call).wait_for(timeout=10_000)
    assert console.card(call).locator("img").count() == 0
    assert page.evaluate("() => window.pwned") is None
    # The guard itself: a snippet with any tag but <mark> goes in as text.
    shown = page.evaluate(
        """async () => {
             const { snippetNode } = await import('/console/dom.js');
             return ['a <mark>b</mark> &amp; c', '<b>x</b> <mark>y</mark>', '<mark onclick=x>z</mark>']
               .map((s) => snippetNode(s).innerHTML);
           }"""
    )
    assert shown == [
        "a <mark>b</mark> &amp; c",
        "&lt;b&gt;x&lt;/b&gt; &lt;mark&gt;y&lt;/mark&gt;",
        "&lt;mark onclick=x&gt;z&lt;/mark&gt;",
    ]


def test_event_stream_parser_takes_any_chunking(console, stack):
    """The wire format in awkward pieces: a CRLF split across chunks, comments, multi-line data,
    an event without an id, a retry hint."""
    console.open("/")
    got = console.page.evaluate(
        r"""async () => {
             const { EventStreamParser } = await import('/console/sse.js');
             const events = [];
             const parser = new EventStreamParser((e) => events.push(e));
             const chunks = [': ping\r', '\n', 'id: 7\r', '\nevent: call.created\ndata: {"a":', '1}\n', '\n',
                             'data: line1\ndata:line2\n\n', 'id: 8\nretry: 1500\n', 'data:x\r\r', 'data: y\n\n'];
             for (const chunk of chunks) parser.feed(chunk);
             return { events, retry: parser.retry };
           }"""
    )
    assert got["events"] == [
        {"id": "7", "type": "call.created", "data": '{"a":1}'},
        {"id": None, "type": "message", "data": "line1\nline2"},
        {"id": "8", "type": "message", "data": "x"},
        {"id": None, "type": "message", "data": "y"},
    ]
    assert got["retry"] == 1500


def test_older_calls_and_more_results_follow_the_cursor(console, stack, systems):
    audio = clip("speech_sdrtrunk.mp3")
    ids = [
        send(stack, audio, systems[1], talkgroup=PAGING_TALKGROUPS[n % 3], alias="PAGING") for n in range(55)
    ]
    page = console.page
    console.open("/")
    console.enter_key(READER)
    console.card(ids[-1]).wait_for(timeout=10_000)
    assert page.locator("#feed article.card").count() == 50
    page.click("button:text('Older calls')")
    console.card(ids[0]).wait_for(timeout=10_000)
    assert page.locator("#feed article.card").count() > 55

    console.open("/search?q=PAGING")
    results = page.locator("#results article.card")
    console.card(ids[-1], "#results").wait_for(timeout=10_000)
    assert results.count() == 25
    for expected in (50, 55):
        page.click("button:text('More results')")
        console.wait_until("(n) => document.querySelectorAll('#results article.card').length === n", expected)
    assert page.locator("button:text('More results')").is_hidden()
    shown = results.evaluate_all("els => els.map(e => +e.dataset.callId)")
    assert shown == ids[::-1]
    assert console.console_errors == []


# --- why a call has no transcript ------------------------------------------------------------------


def test_cards_and_talkgroups_say_why_a_call_is_not_transcribed(console, stack, systems):
    """A talkgroup turned off in the config: its card names the reason, not just "not transcribed",
    and the talkgroups page marks the talkgroup."""
    mine = systems[0]
    original = copy.deepcopy(stack.config)
    config = copy.deepcopy(stack.config)
    config["transcription"]["systems"].append({"id": mine, "talkgroups": [{"id": 309, "enabled": False}]})
    stack.server.config_path.write_text(yaml.safe_dump(config))
    stack.server.proc.send_signal(signal.SIGHUP)
    try:
        audio = clip("speech_sdrtrunk.mp3")
        send(stack, audio, mine, talkgroup=301)  # a talkgroup still transcribed
        deadline = time.monotonic() + 20
        while True:  # until the reload applies: the next call on 309 is skipped with its reason
            off = send(stack, audio, mine, talkgroup=309)
            got = stack.get(f"/api/calls/{off}")
            assert got.status_code == 200, (got.status_code, got.text, stack.server.log()[-2000:])
            call = got.json()
            if call["transcription_status"] == "skipped" or time.monotonic() > deadline:
                break
        reason = f"transcription is off for system {mine} talkgroup 309"
        assert call["transcription_note"] == reason
        listed = {t["talkgroup"]: t for t in stack.get("/api/talkgroups", system=mine).json()["talkgroups"]}
        assert listed[309]["transcribed"] is False and listed[301]["transcribed"] is True

        console.open("/")
        console.enter_key(READER)
        console.wait_live()
        card = console.card(off)
        card.wait_for(timeout=10_000)
        assert f"skipped: {reason}" in card.locator(".transcript").inner_text()
        console.screenshot("card-not-transcribed")

        console.open("/talkgroups")
        row = console.page.locator(f"section[data-system='{mine}'] tr[data-talkgroup='309']")
        row.wait_for(timeout=10_000)
        assert "transcription off for this talkgroup" in row.inner_text()
        other = console.page.locator(f"section[data-system='{mine}'] tr[data-talkgroup='301']")
        assert "transcription off" not in other.inner_text()
        console.screenshot("talkgroups-not-transcribed")
        assert console.console_errors == []
    finally:
        stack.server.config_path.write_text(yaml.safe_dump(original))
        stack.server.proc.send_signal(signal.SIGHUP)


@pytest.mark.worker
def test_a_page_of_tones_alone_says_it_was_skipped_for_its_tones(console, worker, systems):
    """A two-tone page with no speech: the worker skips it before any model time, and the list line
    and the call page say so (the tones' own detection has its own tests)."""
    call = send(worker, (CORPUS / "nospeech_two_tone_page.mp3").read_bytes(), systems[0], talkgroup=107)
    done = worker.wait_call(call)
    reason = done["latest_job"]["error"] or ""
    assert done["latest_job"]["status"] == "skipped" and reason.startswith("only dispatch tones"), done
    page = console.page
    page.add_init_script("localStorage.setItem('rdio.scanner', JSON.stringify({ view: 'list' }))")
    console.open("/")
    console.enter_key(READER)
    line = page.locator(f"#feed article.row[data-call-id='{call}'] .line-text")
    line.wait_for(timeout=10_000)
    assert line.inner_text() == f"skipped: {reason}"
    console.open(f"/calls/{call}")
    status = page.locator("section.panel:has(h2:text-is('Transcript')) p.status")
    status.wait_for(timeout=10_000)
    assert status.inner_text() == f"skipped: {reason}"
    console.screenshot("skipped-tones")
    assert console.console_errors == []
