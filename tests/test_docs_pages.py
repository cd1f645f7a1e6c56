"""/docs in a real Chromium with no network beyond the server: Swagger UI renders from the packaged
assets, asks for the key in the page (never the URL), and "Try it out" sends it as a header."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser import ARTIFACTS, chromium
from tests.conftest import READ_KEY


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


def _offline_page(browser, server):  # type: ignore[no-untyped-def]
    """A tab that can reach the server only: any other host is refused, as on an offline box."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def route(request_route) -> None:  # type: ignore[no-untyped-def]
        url = request_route.request.url
        if url.startswith(server.url):
            request_route.continue_()
        else:
            outside.append(url)
            request_route.abort()

    context.route("**/*", route)
    return context, context.new_page(), outside


def test_swagger_renders_offline_takes_the_key_in_the_page_and_tries_a_call(browser, server) -> None:
    context, page, outside = _offline_page(browser, server)
    sent_keys: list[str | None] = []
    page.on(
        "request",
        lambda request: (
            sent_keys.append(request.headers.get("x-api-key"))
            if "/api/transcription/queue/status" in request.url
            else None
        ),
    )
    try:
        page.goto(f"{server.url}/docs")
        page.locator("#key-input").fill("not-a-key")
        page.locator("#key-form button").click()
        page.get_by_text("That key was refused.").wait_for(timeout=10_000)
        page.locator("#key-input").fill(READ_KEY)
        page.locator("#key-form button").click()
        page.locator(".opblock-summary-path", has_text="/api/calls").first.wait_for(timeout=30_000)
        assert READ_KEY not in page.url and "key=" not in page.url
        # Swagger's Authorize dialog holds the key the page was given.
        page.locator("button.authorize").first.click()
        page.get_by_text("Authorized").first.wait_for(timeout=10_000)
        page.locator("button.btn-done, button.close-modal").first.click()
        # Try it out on a read route: 200 with the key sent as X-API-Key.
        block = page.locator(
            ".opblock", has=page.locator(".opblock-summary-path", has_text="/api/transcription/queue/status")
        )
        block.locator(".opblock-summary").first.click()
        block.get_by_role("button", name="Try it out").click()
        block.get_by_role("button", name="Execute").click()
        block.locator(".live-responses-table tr.response .response-col_status").first.wait_for(timeout=20_000)
        assert (
            block.locator(".live-responses-table tr.response .response-col_status").first.inner_text().strip()
            == "200"
        )
        assert READ_KEY in sent_keys
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "docs-swagger.png"), full_page=False)
        assert outside == []  # nothing fetched from a CDN
    finally:
        context.close()


def test_redoc_renders_offline_with_the_key_from_this_tab(browser, server) -> None:
    context, page, outside = _offline_page(browser, server)
    try:
        page.goto(f"{server.url}/redoc")
        page.locator("#key-input").fill(READ_KEY)
        page.locator("#key-form button").click()
        page.get_by_text("/api/calls").first.wait_for(timeout=30_000)
        # The same tab opens /docs without asking again (the key is kept for this tab only).
        page.goto(f"{server.url}/docs")
        page.locator(".opblock-summary-path", has_text="/api/calls").first.wait_for(timeout=30_000)
        assert page.locator("#key-form").is_hidden()
        assert outside == []
    finally:
        context.close()
