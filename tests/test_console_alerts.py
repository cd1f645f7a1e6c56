"""The console's Alerts page in a real Chromium: the rules (no secret on the page) and the
deliveries with their attempts, linked to the call, after a real upload fired a rule and a real
Celery ``alerts`` worker delivered it to a local receiver (the second attempt, the first got 500);
and the live feed marking the calls that fired a rule, each mark a link to the call's deliveries."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from rdio_tasks.celery_app import worker_argv
from tests.browser import Console, after_every_call, chromium, console_stack, upload
from tests.helpers import REPO
from tests.stack import ADMIN, READER
from tests.test_alerts import SECRET, Receiver, hook
from tests.test_upload import fresh_system

CORPUS = REPO / "tests" / "corpus" / "audio"


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_url, receiver):
    s = console_stack(tmp_path_factory.mktemp("console-alerts"), database_url, [])
    s.server.stop()
    s.config["alerts"] = {
        "retry_backoff_max_seconds": 1,
        "rules": [
            {
                "name": "station 7 page",
                "talkgroups": [777],
                "cooldown_seconds": 60,
                "actions": [hook(receiver, "/page")],
            },
            {"name": "harbor watch", "talkgroups": [778], "actions": [hook(receiver, "/harbor")]},
        ],
    }
    s.server.config_path.write_text(yaml.safe_dump(s.config))
    s.server.start()
    worker = subprocess.Popen(
        [sys.executable, *worker_argv(f"console-alerts-{os.getpid()}@%h", queues=("alerts", "tones"))],
        cwd=s.work,
        env=s.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield s
    worker.terminate()
    worker.wait(20)
    s.stop()


def test_alerts_page_lists_rules_and_deliveries_with_attempts(stack, receiver, tmp_path):
    receiver.fail["/page"] = 1
    call_id = upload(stack, (CORPUS / "ldc93s1_16k_radio.mp3").read_bytes(), fresh_system(), 777, ADMIN)
    receiver.wait("/page", 2, stack=stack)
    deadline = time.monotonic() + 20
    # The database is the session's: other tests' deliveries are there too, so look at this call's.
    mine = f"/api/alerts/deliveries?call_id={call_id}"
    while stack.get(mine, key=READER).json()["deliveries"][0]["status"] != "sent":
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.2)
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        tab = Console(context.new_page(), stack.server.url, tmp_path)
        tab.open("/")
        tab.enter_key(READER)
        tab.page.click("nav a[data-nav=alerts]")
        rule_row = tab.page.locator("table.alert-rules tr[data-rule='station 7 page']")
        rule_row.wait_for(timeout=10_000)
        assert "upload" in rule_row.inner_text() and "talkgroups: 777" in rule_row.inner_text()
        assert f"webhook: {receiver.url}/page" in rule_row.inner_text()
        # One rule's history (a deep link that survives a reload): only this test fires this rule.
        tab.open("/alerts?rule=station%207%20page")
        row = tab.page.locator("table.alert-deliveries tr[data-status=sent]").first
        row.wait_for(timeout=10_000)
        assert "station 7 page" in row.inner_text() and "talkgroup 777" in row.inner_text()
        attempts = tab.page.locator("tr.attempts ol.attempts li")
        assert attempts.count() == 2
        assert "HTTP 500" in attempts.nth(0).inner_text() and "ok (200)" in attempts.nth(1).inner_text()
        assert SECRET not in tab.page.content()
        tab.screenshot("console-alerts")
        tab.page.click(f"table.alert-deliveries a[href='/calls/{call_id}']")
        tab.page.wait_for_url(f"**/calls/{call_id}", timeout=10_000)
        assert not tab.console_errors, tab.console_errors
        assert tab.foreign_requests() == []
        context.close()


def test_feed_marks_a_call_that_fired_an_alert_and_links_to_it(stack, receiver, tmp_path):
    system = fresh_system()
    audio = (CORPUS / "ldc93s1_16k_radio.mp3").read_bytes()
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        tab = Console(context.new_page(), stack.server.url, tmp_path)
        tab.open("/")
        tab.enter_key(READER)
        tab.wait_live()
        # Live: the call arrives on the stream, its rule fires on the alerts worker, the mark follows.
        start = after_every_call(stack)  # newest in the feed, whatever other modules stored
        fired = upload(stack, audio, system, 778, ADMIN, when=start)
        quiet = upload(stack, audio, system, 779, ADMIN, when=start + 3)
        line = tab.page.locator(f"#feed article.row[data-call-id='{fired}']")
        line.locator("a.alerted").wait_for(timeout=30_000)
        assert "harbor watch" in line.locator("a.alerted").inner_text()
        assert tab.page.locator(f"#feed article.row[data-call-id='{quiet}'] a.alerted").count() == 0
        tab.screenshot("feed-alert-mark")
        # Cards mark it too, after a reload (read from the deliveries, not only live).
        tab.page.click(".view-switch button[data-view=cards]")
        tab.page.reload()
        tab.wait_live()
        tab.card(fired).locator("a.alerted").wait_for(timeout=10_000)
        # The mark leads to this call's deliveries.
        tab.card(fired).locator("a.alerted").click()
        tab.page.wait_for_url(f"**/alerts?call_id={fired}", timeout=10_000)
        rows = tab.page.locator("table.alert-deliveries tr[data-delivery]")
        rows.first.wait_for(timeout=10_000)
        assert rows.count() == 1 and "harbor watch" in rows.first.inner_text()
        assert f"call {fired}" in rows.first.inner_text()
        # And the call page shows the same mark.
        tab.open(f"/calls/{fired}")
        tab.page.locator(".call-head a.alerted").wait_for(timeout=10_000)
        assert not tab.console_errors, tab.console_errors
        context.close()
