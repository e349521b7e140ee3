"""In headless Chromium: one user in two browsers holds one place; a bad link gets a 403 page."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gatekeeper.enqueue import EnqueueClaim, mint_enqueue_token
from tests.browser_helpers import PROOF, Shop, launch_chromium, serve_in_thread
from tests.processes import gatekeeper_process

try:
    from playwright.async_api import Browser, BrowserContext, Page, expect
except ImportError:  # pragma: no cover - launch_chromium() fails the test with how to install
    pass

pytestmark = pytest.mark.browser

STEP_TIMEOUT_MS = 15_000
SITE_KEY = "site-enqueue-key-0123456789"
COOKIE = "gk_session"


def link(gate: str, user: str) -> str:
    claim = EnqueueClaim("default", user, int(time.time()) + 600)
    return f"{gate}/tickets?seat=A1&gk-enqueue={mint_enqueue_token(SITE_KEY, claim)}"


@contextmanager
def site(tmp_path: Path) -> Iterator[tuple[Shop, str]]:
    """The shop behind a real gate that takes joins with an enqueue token only (capacity 1)."""
    shop = Shop()
    env = {
        "WAITINGROOM_PROCESSING_CAPACITY": "1",
        "WAITINGROOM_GATE_COOKIE_SECURE": "false",  # plain http in the test
        "WAITINGROOM_GATE_COOKIE_KEYS": "k" * 32,
        "WAITINGROOM_GATE_PROOF_SECRET": PROOF,
        "WAITINGROOM_GATE_REQUIRE_ENQUEUE_TOKEN": "true",
        "WAITINGROOM_ENQUEUE_TOKEN_SECRET": SITE_KEY,
    }
    with serve_in_thread(shop, lifespan="off") as shop_url:
        args = ["--origin", shop_url]
        with gatekeeper_process(args, env, tmp_path / "gk.log", ready="/_gatekeeper/readyz") as (
            gate,
            _,
        ):
            yield shop, gate


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as chromium:
        yield chromium


async def visitor(browser: Browser, locale: str = "en-US") -> tuple[BrowserContext, Page]:
    context = await browser.new_context(locale=locale)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    return context, await context.new_page()


async def session_of(context: BrowserContext, gate: str) -> str:
    [cookie] = [c for c in await context.cookies(gate) if c["name"] == COOKIE]
    return str(cookie["value"]).split("~")[1]


async def test_one_user_in_two_browsers_holds_one_place(browser: Browser, tmp_path: Path):
    with site(tmp_path) as (shop, gate):
        holder, holder_page = await visitor(browser)
        await holder_page.goto(link(gate, "holder"))
        await expect(holder_page.locator("#echo")).to_be_visible()  # admitted: the shop
        laptop, on_laptop = await visitor(browser)
        phone, on_phone = await visitor(browser)
        await on_laptop.goto(link(gate, "alice"))
        await expect(on_laptop.locator("#gk-room")).to_be_visible()
        assert on_laptop.url == f"{gate}/tickets?seat=A1"  # the token left the address bar
        await on_phone.goto(link(gate, "alice"))
        await expect(on_phone.locator("#gk-room")).to_be_visible()
        assert await session_of(laptop, gate) == await session_of(phone, gate)
        # Cleared cookies and a fresh link: the same session, the same place.
        await phone.clear_cookies()
        await on_phone.goto(link(gate, "alice"))
        await expect(on_phone.locator("#gk-room")).to_be_visible()
        assert await session_of(phone, gate) == await session_of(laptop, gate)
        await expect(on_phone.locator("#gk-position")).to_have_text("You're next")
        bob, on_bob = await visitor(browser)
        await on_bob.goto(link(gate, "bob"))
        await expect(on_bob.locator("#gk-position")).to_have_text("1 person ahead of you")
        assert all("gk-enqueue" not in s["query"] for s in shop.seen)
        assert all("x-gatekeeper-enqueue" not in s["headers"] for s in shop.seen)
        for context in (holder, laptop, phone, bob):
            await context.close()


async def test_without_a_valid_link_the_page_says_so_in_the_visitors_language(
    browser: Browser, tmp_path: Path
):
    with site(tmp_path) as (shop, gate):
        context, page = await visitor(browser, locale="de-DE")
        response = await page.goto(f"{gate}/tickets")
        assert response is not None and response.status == 403
        assert await page.locator("html").get_attribute("lang") == "de"
        await expect(page.locator("h1")).to_have_text(
            "Dieser Warteraum ist nur mit Einladung zugänglich"
        )
        expired = EnqueueClaim("default", "late", int(time.time()) - 1)
        token = mint_enqueue_token(SITE_KEY, expired)
        response = await page.goto(f"{gate}/tickets?gk-enqueue={token}")
        assert response is not None and response.status == 403
        await expect(page.locator("h1")).to_have_text("Dieser Link ist nicht mehr gültig")
        assert [s["path"] for s in shop.seen if s["path"] != "/favicon.ico"] == []  # bypassed
        await context.close()
