"""Real Chromium for the console tests: the Debian ``chromium`` package driven by Playwright.

Playwright's own browser download needs the network, so the tests launch the system binary with
``executable_path``. A machine without it fails with one message saying how to install it: the
console is a feature, and a suite that silently skips its browser tests has not tested it.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO, raw_request, sdrtrunk_body
from tests.stack import ADMIN, Stack
from tests.test_upload import sdrtrunk_fields

CHROMIUM = Path(os.environ.get("RDIO_CHROMIUM", "/usr/bin/chromium"))
INSTALL_HINT = (
    f"The console tests drive a real Chromium and {CHROMIUM} is missing: install it with "
    "`sudo apt-get install chromium chromium-driver` (Debian/Ubuntu; `make test` does it as root: "
    "scripts/test-deps.sh), "
    "or point RDIO_CHROMIUM at a Chromium binary."
)
# Every screenshot is also kept here (gitignored), for a person or a CI job to keep as an artifact:
# what the pages looked like when the tests ran.
ARTIFACTS = REPO / "test-artifacts" / "console"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def require_chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(INSTALL_HINT, pytrace=False)
    return CHROMIUM


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (playwright.sync_api.Browser) for the duration of the block."""
    require_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: `.venv/bin/pip install -e '.[dev]'` installs it.", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def console_stack(work: Path, database_url: str, extra_keys: list[dict], **transcription: Any) -> Stack:
    """A Stack whose config also holds ``extra_keys`` (and ``transcription`` settings); Redis and
    the API are started, the worker is not (``start_worker`` when a test needs transcripts: loading
    Whisper costs ~10 s of CPU)."""
    stack = Stack(work, database_url, **transcription)
    stack.config["api_keys"].extend(extra_keys)
    stack.server.config_path.write_text(yaml.safe_dump(stack.config))
    stack.redis.start()
    stack.server.start()
    return stack


def after_every_call(stack: Stack) -> int:
    """A dateTime (epoch seconds) 3 s after the newest call stored. The database is the session's:
    another module's calls (some dated ahead of the clock, 3 s apart) must not push this module's
    off the feed's first page, nor this module's push theirs."""
    calls = stack.get("/api/calls", key=ADMIN, limit=1).json()["calls"]
    newest = datetime.fromisoformat(calls[0]["date_time"]).timestamp() if calls else 0.0
    return max(int(time.time()), int(newest) + 3)


def upload(stack: Stack, audio: bytes, system: int, talkgroup: int, key: str, **fields: Any) -> int:
    """One SDRTrunk-shaped upload (its exact multipart bytes); returns the new call's id."""
    body = sdrtrunk_body(sdrtrunk_fields(system, talkgroup=talkgroup, key=key, **fields), audio)
    status, headers, text = raw_request(stack.server.port, body)
    assert status.startswith("HTTP/1.1 200") and b"Call imported successfully." in text, (status, text)
    return int(headers["x-call-id"])


class Console:
    """One browser tab on the console, with the waits and evidence the tests need."""

    def __init__(self, page: Any, base_url: str, shots: Path) -> None:
        self.page = page
        self.base_url = base_url
        self.shots = shots
        self.requests: list[Any] = []
        self.console_errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request))
        page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))
        page.on("console", self._console_message)

    def _console_message(self, message: Any) -> None:
        # A 401 or 404 the page handles is logged by Chromium itself: not a script error.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.console_errors.append(message.text)

    def open(self, path: str = "/") -> Console:
        self.page.goto(self.base_url + path)
        return self

    def enter_key(self, key: str) -> None:
        dialog = self.page.locator("#key-dialog")
        dialog.wait_for(state="visible", timeout=10_000)
        self.page.fill("#key-input", key)
        self.page.click("#key-dialog button[type=submit]")
        dialog.wait_for(state="hidden", timeout=10_000)

    def wait_live(self) -> None:
        self.page.wait_for_selector("#stream-state[data-state=live]", timeout=15_000)

    def card(self, call_id: int, within: str = "") -> Any:
        return self.page.locator(f"{within} article.card[data-call-id='{call_id}']".strip())

    def wait_until(self, script: str, arg: Any = None, timeout: float = 20.0, what: str = "") -> Any:
        """Poll a JS expression (a function of ``arg``) until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.page.evaluate(script, arg)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what or script}: last value {value!r}")

    def audio_time(self) -> float:
        return float(self.page.evaluate("document.getElementById('audio').currentTime"))

    def screenshot(self, name: str) -> Path:
        """Save a full-page PNG under the test's tmp dir and copy it to test-artifacts/console/."""
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, ARTIFACTS / path.name)
        return path

    def no_horizontal_scroll(self) -> bool:
        return bool(
            self.page.evaluate(
                "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
                " && document.body.scrollWidth <= window.innerWidth"
            )
        )

    def foreign_requests(self) -> list[str]:
        """URLs the page asked for outside its own origin (blob: and data: are in-page)."""
        return [r.url for r in self.requests if not r.url.startswith((self.base_url + "/", "blob:", "data:"))]
