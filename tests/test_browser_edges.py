"""In headless Chromium: a buyer comes back from a payment provider on another site by a POST.

The gate (a real `gatekeeper run`) and the shop are on http://127.0.0.1, the provider on
http://localhost: another site, so Chromium withholds the `SameSite=Lax` cookie from its POST.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from gatekeeper.asgi import ASGIApp, Receive, Scope, Send
from tests.browser_helpers import PROOF, Shop, launch_chromium, serve_in_thread
from tests.processes import gatekeeper_process

try:
    from playwright.async_api import Browser, BrowserContext, Page, Request, expect
except ImportError:  # pragma: no cover - launch_chromium() fails the test with how to install
    pass

pytestmark = pytest.mark.browser

STEP_TIMEOUT_MS = 15_000
COOKIE = "gk_session"
RETURN = "/pay/return"
# What a 3-D Secure ACS posts back, with characters a re-post must keep as they are.
FIELDS = [
    ("cres", "eyJhY3NUcmFuc0lEIjoiYjUzOSIsInRyYW5zU3RhdHVzIjoiWSJ9"),
    ("MD", 'order 7 & co = "paid" + <ok> é ☃'),
    ("threeDSSessionData", ""),
]


def returns(shop: Shop) -> list[dict[str, Any]]:
    """What reached the shop at the return path."""
    return [s for s in shop.seen if s["path"] == RETURN]


def provider(gate_url: str) -> ASGIApp:
    """The payment provider: a page whose button posts the fields back to the shop."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(n)}" value="{html.escape(v)}">' for n, v in FIELDS
    )
    page = (
        f'<!doctype html><meta charset="utf-8"><title>Bank</title>'
        f'<form method="post" action="{gate_url}{RETURN}?order=7">{inputs}'
        f'<button id="pay">Pay</button></form>'
    ).encode()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": page})

    return app


@contextmanager
def sites(tmp_path: Path, return_paths: str) -> Iterator[tuple[Shop, str, str]]:
    """The shop behind a real gate (capacity 1) on 127.0.0.1, the provider on localhost."""
    shop = Shop()
    env = {
        "WAITINGROOM_PROCESSING_CAPACITY": "1",
        "WAITINGROOM_GATE_COOKIE_SECURE": "false",  # plain http in the test
        "WAITINGROOM_GATE_COOKIE_KEYS": "k" * 32,
        "WAITINGROOM_GATE_PROOF_SECRET": PROOF,
        "WAITINGROOM_GATE_RETURN_PATHS": return_paths,
    }
    with serve_in_thread(shop, lifespan="off") as shop_url:
        log = tmp_path / "gatekeeper.log"
        with gatekeeper_process(["--origin", shop_url], env, log, ready="/_gatekeeper/readyz") as (
            gate,
            _,
        ):
            with serve_in_thread(provider(gate), lifespan="off") as bank:
                # localhost, not 127.0.0.1: another site, whose POST carries no Lax cookie.
                yield shop, gate, bank.replace("127.0.0.1", "localhost")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as chromium:
        yield chromium


async def visitor(browser: Browser, javascript: bool = True) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(java_script_enabled=javascript)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    return context, await context.new_page()


async def our_cookie(context: BrowserContext) -> str:
    [cookie] = [c for c in await context.cookies() if c["name"] == COOKIE]
    assert cookie["sameSite"] == "Lax"
    return cookie["value"]


async def holding_the_only_place(
    browser: Browser, shop: Shop, gate: str, javascript: bool = True
) -> tuple[Page, str]:
    """A buyer who holds the room's one place, and whose place a newcomer would wait for."""
    context, page = await visitor(browser, javascript)
    for _ in range(2):  # the join, then the claim
        await page.goto(f"{gate}/checkout")
        await expect(page.locator("#site-title")).to_be_visible()
    [*_, claimed] = [s for s in shop.seen if s["path"] == "/checkout"]
    sid = shop.session(claimed)
    assert sid is not None
    stranger, other = await visitor(browser)
    await other.goto(f"{gate}/checkout")
    await expect(other.locator("#gk-room")).to_be_visible()  # the room is full
    await stranger.close()
    return page, sid


def cookies_sent(page: Page) -> list[str]:
    """The Cookie header of every POST to the return path the page makes, in order."""
    sent: list[str] = []

    async def record(request: Request) -> None:
        if request.method == "POST" and RETURN in request.url:
            sent.append((await request.all_headers()).get("cookie", ""))

    page.on("request", record)
    return sent


async def test_without_return_paths_the_buyer_comes_back_as_a_stranger(
    browser: Browser, tmp_path: Path
) -> None:
    with sites(tmp_path, return_paths="") as (shop, gate, bank):
        page, _ = await holding_the_only_place(browser, shop, gate)
        before = await our_cookie(page.context)
        sent = cookies_sent(page)
        await page.goto(f"{bank}/pay")
        await page.click("#pay")
        # Chromium withholds the Lax cookie from the cross-site POST: the gate sees a
        # newcomer in a full room, and its new cookie replaces the buyer's.
        await expect(page.locator("#gk-room")).to_be_visible()
        assert len(sent) == 1 and f"{COOKIE}=" not in sent[0]
        assert await our_cookie(page.context) != before
        assert returns(shop) == []
        await page.context.close()


async def test_with_a_return_path_the_buyer_comes_back_with_their_place(
    browser: Browser, tmp_path: Path
) -> None:
    with sites(tmp_path, return_paths=RETURN) as (shop, gate, bank):
        page, sid = await holding_the_only_place(browser, shop, gate)
        before = await our_cookie(page.context)
        sent = cookies_sent(page)
        await page.goto(f"{bank}/pay")
        await page.click("#pay")
        # Bounced through our own page, which posts the fields again, same-site this time.
        await expect(page.locator("#site-title")).to_be_visible()
        assert len(sent) == 2
        assert f"{COOKIE}=" not in sent[0] and f"{COOKIE}={before}" in sent[1]
        [arrived] = returns(shop)
        assert arrived["method"] == "POST" and arrived["query"] == "order=7"
        assert parse_qsl(arrived["body"], keep_blank_values=True) == FIELDS
        assert shop.session(arrived) == sid  # the place the buyer held
        assert COOKIE not in arrived["headers"].get("cookie", "")
        # The bounce page's no-referrer policy: no Referer, and a POST's Origin is "null".
        assert arrived["headers"].get("origin") == "null" and "referer" not in arrived["headers"]
        await page.context.close()


async def test_without_javascript_the_buyer_continues_by_the_button(
    browser: Browser, tmp_path: Path
) -> None:
    with sites(tmp_path, return_paths="/pay/*") as (shop, gate, bank):
        page, sid = await holding_the_only_place(browser, shop, gate, javascript=False)
        await page.goto(f"{bank}/pay")
        await page.click("#pay")
        await page.get_by_role("button", name="Continue").click()
        await expect(page.locator("#site-title")).to_be_visible()
        [arrived] = returns(shop)
        assert parse_qsl(arrived["body"], keep_blank_values=True) == FIELDS
        assert shop.session(arrived) == sid
        await page.context.close()
