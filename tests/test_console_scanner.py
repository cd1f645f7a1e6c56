"""The console as a scanner listener uses it, in a real Chromium against a real rdio-api and
redis-server: the one-line call list (the default) and the cards (a remembered choice), holds and
mutes by system, talkgroup, tag and group, copy link and download on every call, the call page's
date, local time and frequency with its debugging panels closed, the talkgroups a search names, the
phone layout (no sideways scroll, a short player bar), the not-found page, and why a call waits.

No worker runs here: uploaded calls stay in the transcription queue, which is what the queue
position test needs. Screenshots land in test-artifacts/console/.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from rdio_core import db, jobs
from tests.browser import Console, after_every_call, chromium, console_stack
from tests.helpers import clip, raw_request, sdrtrunk_body
from tests.stack import ADMIN, READER
from tests.test_search import transcribe
from tests.test_upload import fresh_system, sdrtrunk_fields

DESKTOP = {"width": 1200, "height": 900}
PHONE = {"width": 390, "height": 844}
ZONE = "America/New_York"

_sources = itertools.count(5_300_001)
_last_start = 0


@pytest.fixture(scope="module")
def systems() -> tuple[int, int]:
    return fresh_system(), fresh_system()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_url):
    s = console_stack(tmp_path_factory.mktemp("console-scanner"), database_url, [])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _tab(browser, stack, tmp_path, viewport, **options):
    context = browser.new_context(viewport=viewport, locale="en-US", timezone_id=ZONE, **options)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.server.url)
    return context, Console(context.new_page(), stack.server.url, tmp_path)


@pytest.fixture
def console(browser, stack, tmp_path):
    context, tab = _tab(browser, stack, tmp_path, DESKTOP)
    yield tab
    context.close()


@pytest.fixture
def phone(browser, stack, tmp_path):
    context, tab = _tab(browser, stack, tmp_path, PHONE, is_mobile=True, has_touch=True)
    yield tab
    context.close()


def send(
    stack, system: int, talkgroup: int, alias: str = "E12", tag: str = "", group: str = "", label: str = ""
) -> int:
    """An SDRTrunk upload of the speech clip (3 s after the one before: never a duplicate), with the
    talkgroup's tag and group when given; returns the call id."""
    global _last_start
    _last_start = max(after_every_call(stack) if not _last_start else 0, int(time.time()), _last_start + 3)
    fields = [
        (name, value)
        for name, value in sdrtrunk_fields(
            system, talkgroup=talkgroup, key=ADMIN, when=_last_start, source=next(_sources)
        )
        if name not in ("talkgroupGroup", "talkerAlias") and not (label and name == "talkgroupLabel")
    ]
    if label:
        fields.append(("talkgroupLabel", label))
    fields += [("talkerAlias", alias), ("talkgroupGroup", group or "null")]
    if tag:
        fields.append(("talkgroupTag", tag))
    status, headers, text = raw_request(stack.server.port, sdrtrunk_body(fields, clip("speech_sdrtrunk.mp3")))
    assert status.startswith("HTTP/1.1 200"), (status, text)
    return int(headers["x-call-id"])


def row(console: Console, call_id: int):
    return console.page.locator(f"#feed article.row[data-call-id='{call_id}']")


def player(console: Console, expression: str):
    return console.page.evaluate(f"() => {{ const p = window.rdioConsole.player; return {expression}; }}")


def menu_choice(item, label: str) -> None:
    item.locator("details.menu > summary").click()
    item.locator(f"details.menu button:text-is('{label}')").click()


# --- the call list ---------------------------------------------------------------------------------


def test_feed_is_one_line_per_call_by_default_and_cards_are_a_remembered_choice(console, stack, systems):
    first = send(stack, systems[0], 601, alias="LINE-A")
    second = send(stack, systems[0], 602, alias="LINE-B")
    third = send(stack, systems[0], 601, alias="LINE-C")
    page = console.page
    console.open("/")
    console.enter_key(READER)
    console.wait_live()
    line = row(console, third)
    line.wait_for(timeout=10_000)
    assert page.locator("#feed article.card").count() == 0
    assert page.get_attribute(".view-switch button[data-view=list]", "aria-pressed") == "true"

    # One line each: colour, date and time, talkgroup, unit alias, length, transcript (or why not).
    call = stack.get(f"/api/calls/{third}").json()
    local = datetime.fromisoformat(call["date_time"].replace("Z", "+00:00")).astimezone(ZoneInfo(ZONE))
    assert line.locator("time").inner_text() == local.strftime("%m/%d, %I:%M:%S %p")
    assert line.locator(".tg").inner_text() == "FD Dispatch"
    assert line.locator(".unit").inner_text() == "LINE-C"
    assert line.locator(".dur").inner_text().endswith(" s")
    assert line.locator(".line-text").inner_text()
    box = line.bounding_box()
    assert box is not None and box["height"] < 48, box  # one line of text, not a card
    colours = {
        call_id: row(console, call_id).evaluate("el => getComputedStyle(el).borderLeftColor")
        for call_id in (first, second, third)
    }
    assert colours[first] == colours[third] != colours[second]
    console.screenshot("feed-list")

    # Cards instead: chosen once, kept after a reload.
    page.click(".view-switch button[data-view=cards]")
    console.card(third).wait_for(timeout=5_000)
    assert page.locator("#feed article.row").count() == 0
    page.reload()
    console.wait_live()
    console.card(third).wait_for(timeout=10_000)
    assert page.get_attribute(".view-switch button[data-view=cards]", "aria-pressed") == "true"
    console.screenshot("feed-cards")
    page.click(".view-switch button[data-view=list]")
    row(console, third).wait_for(timeout=5_000)
    assert console.console_errors == []


def test_hold_a_system_or_tag_mute_a_group_and_the_hold_is_named(console, stack, systems):
    mine, other = systems
    fire = send(stack, mine, 611, tag="Fire Dispatch", group="Fire")
    law = send(stack, mine, 612, tag="Law Dispatch", group="Law")
    page = console.page
    console.open("/")
    console.enter_key(READER)
    console.wait_live()
    row(console, law).wait_for(timeout=10_000)

    # Mute the group "Law": its lines are dimmed and its next call is never queued.
    menu_choice(row(console, law), "Mute group “Law”")
    assert "avoided" in row(console, law).get_attribute("class")
    assert "avoided" not in row(console, fire).get_attribute("class")

    # Hold the whole system, from a line's menu: the scanner bar names it.
    menu_choice(row(console, fire), "Hold system")
    assert page.inner_text("#hold") == "Held: County P25"
    page.click("#live-toggle")
    elsewhere = send(stack, other, 611, tag="Fire Dispatch", group="Fire")
    muted = send(stack, mine, 613, tag="Law Dispatch", group="Law")
    wanted = send(stack, mine, 614)
    row(console, wanted).wait_for(timeout=10_000)
    console.wait_until(
        "(id) => window.rdioConsole.player.current?.id === id", wanted, what="the held system's call"
    )
    assert row(console, elsewhere).count() == 1 and row(console, muted).count() == 1
    assert "avoided" in row(console, muted).get_attribute("class")
    queued = player(console, "p.queue.map((c) => c.id)")
    assert elsewhere not in queued and muted not in queued

    # Hold a tag from the talkgroups page, across systems.
    console.open("/talkgroups")
    tag = page.locator("ul.tag-list li[data-tag='tag:Fire Dispatch']")
    tag.wait_for(timeout=10_000)
    tag.locator("button:text('Hold')").click()
    assert page.inner_text("#hold") == "Held: tag Fire Dispatch"
    assert (
        page.get_attribute(f"section[data-system='{mine}'] header.system button:text('Hold')", "aria-pressed")
        == "false"
    )
    console.screenshot("talkgroups-tags")
    page.evaluate("() => window.rdioConsole.player.skip()")
    tagged = send(stack, other, 615, tag="Fire Dispatch", group="Fire")
    untagged = send(stack, mine, 616)
    console.wait_until(
        "(id) => window.rdioConsole.player.current?.id === id", tagged, what="the held tag's call"
    )
    time.sleep(0.5)
    assert untagged not in player(console, "p.queue.map((c) => c.id)")

    # The held talkgroup by name; a reload keeps every choice.
    console.open("/")
    row(console, fire).wait_for(timeout=10_000)
    menu_choice(row(console, fire), "Hold talkgroup")
    assert page.inner_text("#hold") == "Held: FD Dispatch (TG 611)"
    page.reload()
    console.wait_live()
    assert page.inner_text("#hold") == "Held: FD Dispatch (TG 611)"
    row(console, law).wait_for(timeout=10_000)
    assert "avoided" in row(console, law).get_attribute("class")
    console.screenshot("feed-held-talkgroup")
    assert console.console_errors == []


# --- every call: link and audio ---------------------------------------------------------------------


def _download_matches(console: Console, click, call: dict) -> None:
    with console.page.expect_download() as download:
        click()
    data = download.value.path().read_bytes()
    assert hashlib.sha256(data).hexdigest() == call["audio_sha256"]
    assert download.value.suggested_filename.endswith(".mp3")


def test_copy_link_and_download_audio_from_every_call_and_the_call_page(console, stack, systems):
    call_id = send(stack, systems[0], 621, alias="SHARE1")
    call = stack.get(f"/api/calls/{call_id}").json()
    link = f"{stack.server.url}/calls/{call_id}"
    page = console.page
    console.open("/")
    console.enter_key(READER)
    console.wait_live()
    line = row(console, call_id)
    line.wait_for(timeout=10_000)

    clipboard = "() => navigator.clipboard.readText()"
    menu_choice(line, "Copy link")
    console.wait_until(
        f"async () => (await navigator.clipboard.readText()) === {link!r}", what="the copied link"
    )
    assert page.inner_text("#toast").startswith("Link copied")
    _download_matches(console, lambda: menu_choice(line, "Download audio"), call)

    # The same on a card (search results are cards).
    console.open("/search?q=SHARE1")
    card = console.card(call_id, "#results")
    card.wait_for(timeout=10_000)
    page.evaluate("() => navigator.clipboard.writeText('')")
    menu_choice(card, "Copy link")
    console.wait_until(
        f"async () => (await navigator.clipboard.readText()) === {link!r}", what="the card's link"
    )
    _download_matches(console, lambda: menu_choice(card, "Download audio"), call)

    # The call page: date, local time with its zone, the frequency in MHz; buttons for both.
    console.open(f"/calls/{call_id}")
    head = page.locator(".call-head")
    head.locator("button.download").wait_for(timeout=10_000)
    local = datetime.fromisoformat(call["date_time"].replace("Z", "+00:00")).astimezone(ZoneInfo(ZONE))
    shown = head.locator("p.meta time").inner_text()
    assert local.strftime("%b %-d, %Y") in shown and local.strftime("%I:%M:%S %p") in shown, shown
    assert local.tzname() in shown, shown
    assert "851.0125 MHz" in head.locator("p.meta").inner_text()
    page.evaluate("() => navigator.clipboard.writeText('')")
    head.locator("button.copy-link").click()
    console.wait_until(
        f"async () => (await navigator.clipboard.readText()) === {link!r}", what="the page's link"
    )
    assert page.evaluate(clipboard) == link
    _download_matches(console, lambda: head.locator("button.download").click(), call)

    # Debugging panels: below the transcript, closed until asked for.
    sections = page.locator("#view .call-body > *").evaluate_all(
        "els => els.map((e) => [e.tagName, e.querySelector('h2')?.textContent, e.open ?? null])"
    )
    assert sections[0][:2] == ["SECTION", "Transcript"], sections
    debug = [s for s in sections if s[0] == "DETAILS"]
    assert {"Stored fields", "Job history"} <= {s[1] for s in debug}, sections
    assert all(s[2] is False for s in debug), sections
    first_debug = next(i for i, s in enumerate(sections) if s[0] == "DETAILS")
    assert all(s[0] == "DETAILS" for s in sections[first_debug:]), sections
    stored = page.locator("details.debug:has(h2:text('Stored fields')) dl.fields")
    assert not stored.is_visible()
    page.locator("details.debug > summary:has-text('Stored fields')").click()
    assert stored.is_visible()
    console.screenshot("call-page-head")
    assert console.console_errors == []


# --- why a call has no transcript yet ---------------------------------------------------------------


def test_a_waiting_call_says_how_many_calls_are_queued_before_it(console, stack, systems):
    earlier = send(stack, systems[1], 631)
    later = send(stack, systems[1], 631)
    ahead = {}
    for call_id in (earlier, later):
        got = stack.get(f"/api/calls/{call_id}").json()
        assert got["transcription_status"] in ("pending", "queued"), got
        ahead[call_id] = got["queue_ahead"]
    # Same priority: the later call waits behind everything the earlier one does, and the earlier one.
    assert isinstance(ahead[earlier], int) and ahead[later] == ahead[earlier] + 1
    listed = {c["id"]: c for c in stack.get("/api/calls", system=systems[1], limit=50).json()["calls"]}
    assert listed[later]["queue_ahead"] == ahead[later]

    console.open("/")
    console.enter_key(READER)
    console.wait_live()
    row(console, later).wait_for(timeout=10_000)
    n = ahead[later]
    assert (
        row(console, later).locator(".line-text").inner_text()
        == f"queued behind {n} call{'s' if n != 1 else ''}"
    )
    page = console.page
    page.click(".view-switch button[data-view=cards]")
    console.card(later).wait_for(timeout=5_000)
    assert f"queued behind {n} call" in console.card(later).locator(".transcript").inner_text()
    console.screenshot("card-queued")
    page.click(".view-switch button[data-view=list]")
    console.open(f"/calls/{later}")
    status = page.locator("section.panel:has(h2:text-is('Transcript')) p.status")
    status.wait_for(timeout=10_000)
    assert status.inner_text().startswith(f"queued behind {n} call")
    assert console.console_errors == []


# --- search: the talkgroup a query names ------------------------------------------------------------


def test_a_talkgroup_number_or_name_finds_the_talkgroup(console, stack, systems):
    call_id = send(stack, systems[0], 64123, alias="TGFIND", label="Harbor Patrol 9")
    page = console.page
    console.open("/search?q=64123")
    console.enter_key(READER)
    found = page.locator(f".found-talkgroups li[data-talkgroup='64123'][data-system='{systems[0]}']")
    found.wait_for(timeout=10_000)
    assert "Harbor Patrol 9 (TG 64123)" in found.inner_text()
    console.screenshot("search-talkgroup")
    found.locator("a").click()
    page.wait_for_url(f"**/search?system={systems[0]}&talkgroup=64123", timeout=10_000)
    console.card(call_id, "#results").wait_for(timeout=10_000)
    # By a part of its name, any case.
    console.open(f"/search?q=harbor%20PAT&system={systems[0]}")  # the database is the session's
    page.locator(".found-talkgroups li[data-talkgroup='64123']").wait_for(timeout=10_000)
    assert page.locator(".found-talkgroups li").count() == 1
    # A number no talkgroup has lists none.
    console.open("/search?q=98765")
    page.wait_for_selector("#results, p.note", timeout=10_000)
    time.sleep(0.5)
    assert page.locator(".found-talkgroups li").count() == 0
    assert console.console_errors == []


# --- phone --------------------------------------------------------------------------------------------


def test_phone_tables_fit_and_the_player_bar_is_short(phone, stack, systems):
    call_id = send(stack, systems[0], 641, alias="PHONE-A", tag="Fire Dispatch", group="Fire")
    phone.open("/")
    phone.enter_key(READER)
    phone.wait_live()
    page = phone.page
    row(phone, call_id).wait_for(timeout=10_000)
    # A long hold name must not make the bar grow.
    menu_choice(row(phone, call_id), "Hold talkgroup")
    limit = 0.12 * PHONE["height"]
    fits = """() => [...document.querySelectorAll('.table-wrap, table')].filter((el) =>
        el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > window.innerWidth + 1)
        .map((el) => el.className || el.tagName)"""
    for path, name, ready in (
        ("/", "phone-list", f"#feed article.row[data-call-id='{call_id}']"),
        ("/talkgroups", "phone-talkgroups-tags", "table.talkgroups"),
        (f"/calls/{call_id}", "phone-call-debug", "details.debug"),
        ("/alerts", "phone-alerts", "h2:has-text('Rules')"),
        ("/search?q=PHONE-A", "phone-search-results", f"#results article[data-call-id='{call_id}']"),
    ):
        phone.open(path)
        page.wait_for_selector(ready, timeout=10_000)
        for summary in page.locator("details.debug > summary").all():
            summary.click()  # the call page's tables too
        assert page.evaluate("window.innerWidth") == PHONE["width"]
        assert phone.no_horizontal_scroll(), f"{path} scrolls sideways at {PHONE['width']} px"
        assert page.evaluate(fits) == [], path
        bar = page.locator("#scanner").bounding_box()
        assert bar is not None and bar["height"] < limit, (path, bar)
        phone.screenshot(name)
    assert "Held: FD Dispatch (TG 641)" in page.inner_text("#hold")
    assert phone.console_errors == []


# --- not found ----------------------------------------------------------------------------------------


def test_an_unknown_path_is_the_consoles_not_found_page_for_a_browser_and_json_for_a_client(
    browser, stack, tmp_path
):
    url = stack.server.url
    page_html = httpx.get(f"{url}/").content
    html = httpx.get(
        f"{url}/anything-unknown", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )
    assert html.status_code == 404 and html.headers["content-type"].startswith("text/html")
    assert html.content == page_html and "default-src 'self'" in html.headers["content-security-policy"]
    for accept in ("application/json", "*/*"):
        api = httpx.get(f"{url}/anything-unknown", headers={"Accept": accept})
        assert api.status_code == 404 and api.json() == {"detail": "Not Found"}, accept
    # An API path stays JSON even for a browser, and so does a route's own 404.
    assert httpx.get(f"{url}/api/nope", headers={"Accept": "text/html"}).json() == {"detail": "Not Found"}
    missing = httpx.get(f"{url}/api/calls/999999999", headers={"Accept": "text/html", "X-API-Key": READER})
    assert missing.status_code == 404 and "not found" in missing.json()["detail"]

    context = browser.new_context(viewport=DESKTOP)
    try:
        tab = Console(context.new_page(), url, tmp_path)
        response = tab.page.goto(f"{url}/anything-unknown")
        assert response is not None and response.status == 404
        tab.enter_key(READER)  # the page's event stream asks for one, as on any page
        tab.page.wait_for_selector("h1:text('Page not found')", timeout=10_000)
        assert "/anything-unknown" in tab.page.inner_text(".not-found")
        tab.screenshot("not-found")
        tab.page.click(".not-found a:text('Live feed')")
        tab.page.wait_for_url(f"{url}/", timeout=10_000)
        assert tab.foreign_requests() == []
    finally:
        context.close()


# --- search: transcripts first, radio ids as radios -------------------------------------------------


def test_search_puts_transcript_matches_first_and_a_radio_id_finds_only_its_radio(
    console, stack, systems, db_engine
):
    """Transcripts are given through the job state machine the worker uses (tests/test_search.py's
    ``transcribe``): the ranking, not Whisper, is under test here."""
    system = systems[1]
    said = send(stack, system, 651, label="Pier Ops")
    transcribe(db_engine, said, "a boat is tied up at the harbor entrance by the fuel dock")
    named = send(stack, system, 652, label="Harbor Tower")
    transcribe(db_engine, named, "copy")
    page = console.page
    console.open(f"/search?q=harbor&system={system}&order=relevance")
    console.enter_key(READER)
    results = page.locator("#results article.card")
    console.card(named, "#results").wait_for(timeout=10_000)
    assert results.evaluate_all("els => els.map((e) => +e.dataset.callId)") == [said, named]
    assert results.first.locator(".snippet mark").inner_text().lower() == "harbor"
    assert page.input_value("select[name=order]") == "relevance"
    console.screenshot("search-transcripts-first")

    # A radio id: the radio's call, not the call whose words hold those digits.
    radio = int(stack.get(f"/api/calls/{named}").json()["source"])
    inside = send(stack, system, 653)
    transcribe(db_engine, inside, f"medic{radio}9 is on scene")
    console.open(f"/search?q={radio}&system={system}")
    console.card(named, "#results").wait_for(timeout=10_000)
    assert results.evaluate_all("els => els.map((e) => +e.dataset.callId)") == [named]
    assert console.console_errors == []


def test_an_aligned_call_page_shows_word_timings_and_a_word_plays_from_its_start(
    console, stack, systems, db_engine
):
    """The words WhisperX aligned, as the worker stores them in the job's segments (given through
    the job state machine here: the page, not the aligner, is under test); words it could not place
    carry no start and are left out."""
    call_id = send(stack, systems[1], 661)
    factory = db.make_session_factory(db_engine)
    with factory() as session:
        job_id = jobs.create_job(session, call_id, 3, None, None).id
        session.commit()
    assert jobs.claim(factory, job_id, "test-worker", 60, 3).outcome == "claimed"
    words = [
        {"word": "Engine", "start": 0.12, "end": 0.48, "score": 0.91},
        {"word": "twelve", "start": 0.52, "end": 0.9, "score": 0.88},
        {"word": "10-4"},  # not placed by the aligner
        {"word": "responding", "start": 1.4, "end": 2.05, "score": 0.8},
    ]
    segment = {"start": 0.1, "end": 2.1, "text": "Engine twelve 10-4 responding", "words": words}
    assert jobs.complete(factory, job_id, "test-worker", {"text": segment["text"], "segments": [segment]})
    page = console.page
    console.open(f"/calls/{call_id}")
    console.enter_key(READER)
    timed = page.locator("p.words .word")
    timed.first.wait_for(timeout=10_000)
    assert timed.evaluate_all("els => els.map((e) => e.firstChild.textContent)") == [
        "Engine",
        "twelve",
        "responding",
    ]
    assert "1.4" in timed.nth(2).get_attribute("title") and "score 0.80" in timed.nth(2).get_attribute(
        "title"
    )
    timed.nth(2).click()
    console.wait_until(
        "(id) => window.rdioConsole.player.current?.id === id", call_id, what="the call playing from the word"
    )
    console.wait_until("() => document.querySelector('audio').currentTime >= 1.3", what="playback from 1.4 s")
    console.screenshot("call-word-timings")
