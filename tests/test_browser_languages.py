"""The waiting page in headless Chromium: in the browser's language (German, Arabic right to
left), accessible (axe-core), still under reduced motion, and never re-sending a POST."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from gatekeeper.app import WaitingRoom
from gatekeeper.asgi import Receive, Scope, Send
from gatekeeper.config import load_config
from tests.browser_helpers import PageRecord, axe_violations, launch_chromium, serve_in_thread
from tests.gate.harness import ENV

try:
    from playwright.async_api import Browser, Dialog, Page, Request, expect
except ImportError:  # pragma: no cover - launch_chromium() fails the test with how to install
    pass

pytestmark = pytest.mark.browser

STEP_TIMEOUT_MS = 15_000
FORM = (
    b'<!doctype html><html lang="en"><meta charset="utf-8"><title>Shop</title>'
    b'<main><h1 id="site-title">Shop</h1><form method="post" action="/buy">'
    b'<input type="hidden" name="seat" value="A1"><button id="buy">Buy</button></form></main>'
)


@dataclass
class Shop:
    """The origin: a form on `/`, `/buy` that says which method reached it, `/done`."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.seen.append((scope["method"], scope["path"]))
        while (await receive()).get("more_body"):
            pass
        body = FORM
        if scope["path"] == "/buy":
            title = f"Bought with {scope['method']}"
            body = f'<!doctype html><h1 id="site-title">{title}</h1>'.encode()
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def requests(self, path: str) -> list[str]:
        """The methods of every request for `path` that reached the shop, in order."""
        return [method for method, seen_path in self.seen if seen_path == path]


@dataclass
class Site:
    """The shop behind a gate of capacity 1 (only /buy and /done are gated)."""

    url: str
    shop: Shop


@pytest.fixture
def site() -> Iterator[Site]:
    settings = load_config(
        None,
        environ=ENV,
        overrides={
            "waitingroom.processing.capacity": 1,
            "waitingroom.processing.rate-ms": 100,
            "waitingroom.polling.min-ms": 500,
            "waitingroom.polling.max-ms": 1500,
            "waitingroom.gate.protect": ["/buy", "/done"],
            "waitingroom.gate.done-paths": ["/done"],
            "waitingroom.gate.cookie.secure": False,
        },
    )
    shop = Shop()
    with serve_in_thread(WaitingRoom(shop, settings)) as url:
        yield Site(url, shop)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as chromium:
        yield chromium


async def visitor(browser: Browser, **options: object) -> Page:
    """A visitor with a cookie jar of their own; `options` for the browser context."""
    context = await browser.new_context(**options)  # type: ignore[arg-type]
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    return await context.new_page()


def take_the_place(site: Site, others: int = 0) -> httpx.Client:
    """A client that holds the room's one place, and `others` waiters in line behind it."""
    holder = httpx.Client(base_url=site.url)
    assert "site-title" in holder.get("/buy").text
    for _ in range(others):
        with httpx.Client(base_url=site.url) as waiter:
            # The first answer is provisional: the place is taken when the cookie comes back.
            for _ in range(2):
                assert 'id="gk-room"' in waiter.get("/buy").text
    return holder


@dataclass(frozen=True)
class Language:
    locale: str
    lang: str
    dir: str
    heading: str
    two_ahead: str
    wait: re.Pattern[str]


LANGUAGES = [
    Language(
        "en-US",
        "en",
        "ltr",
        "You're in line",
        "2 people ahead of you",
        re.compile(r"^(about \d|any moment|less than|calculating|more than)"),
    ),
    Language(
        "de-DE",
        "de",
        "ltr",
        "Sie sind in der Warteschlange",
        "2 Personen vor Ihnen",
        re.compile(r"^(etwa \d|jeden Moment|weniger als|wird berechnet|mehr als)"),
    ),
    Language(
        "ar",
        "ar",
        "rtl",
        "أنت في قائمة الانتظار",
        "شخصان أمامك",  # Arabic's dual: the "two" form, in Python and in Intl.PluralRules
        re.compile(r"(تقريبًا|في أي لحظة|أقل من|جارٍ الحساب|أكثر من)"),
    ),
]


@pytest.mark.parametrize("language", LANGUAGES, ids=[lang.lang for lang in LANGUAGES])
async def test_the_waiting_page_speaks_the_browsers_language_and_passes_axe(
    browser: Browser, site: Site, language: Language
) -> None:
    holder = take_the_place(site, others=2)
    page = await visitor(browser, locale=language.locale)
    try:
        # The first answer is provisional (it reloads itself after its first poll): the place
        # is taken by the second, which then stays put.
        await page.goto(f"{site.url}/buy")
        record = PageRecord.attach(page)
        response = await page.goto(f"{site.url}/buy")
        assert response is not None
        assert response.headers["content-language"] == language.lang
        assert "accept-language" in response.headers["vary"].lower()
        html = page.locator("html")
        await expect(html).to_have_attribute("lang", language.lang)
        await expect(html).to_have_attribute("dir", language.dir)
        await expect(page.locator("#gk-heading")).to_have_text(language.heading)
        position = page.locator("#gk-position")
        await expect(position).to_have_text(language.two_ahead)

        # Wipe what the server wrote: only the script, after a poll, can write it back.
        await page.evaluate(
            """() => {
              document.getElementById("gk-position").textContent = "";
              document.getElementById("gk-eta").textContent = "";
            }"""
        )
        polls = record.polls
        await expect(position).to_have_text(language.two_ahead)
        assert record.polls > polls
        eta = await page.locator("#gk-eta").inner_text()
        assert language.wait.search(eta), eta

        # Polls that bring no news leave the live region alone: nothing to announce.
        await page.evaluate(
            """() => {
              window.gkMutations = 0;
              new MutationObserver((m) => { window.gkMutations += m.length; }).observe(
                document.getElementById("gk-position"),
                {childList: true, characterData: true, subtree: true});
            }"""
        )
        polls = record.polls
        await record.wait_for(lambda r: r.polls >= polls + 2, "two more polls")
        assert await page.evaluate("window.gkMutations") == 0
        live = await position.get_attribute("aria-live")
        assert live == "polite"

        assert await axe_violations(page) == []
    finally:
        await page.context.close()
        holder.close()


async def test_reduced_motion_stops_every_animation(browser: Browser, site: Site) -> None:
    holder = take_the_place(site)
    moving = """() => [...document.querySelectorAll("*")].filter((el) => {
          const style = getComputedStyle(el);
          const durations = style.transitionDuration.split(",").map(parseFloat);
          return style.animationName !== "none" || durations.some((d) => d > 0);
        }).map((el) => el.tagName + "." + el.className)"""
    calm = await visitor(browser, reduced_motion="reduce")
    lively = await visitor(browser, reduced_motion="no-preference")
    try:
        for page in (calm, lively):
            # Twice: the first answer is provisional and reloads itself once the page has
            # polled; the second (with the cookie) takes the place and stays.
            for _ in range(2):
                await page.goto(f"{site.url}/buy")
                await expect(page.locator("#gk-room")).to_be_visible()
        # Without the preference the dot breathes and the bar slides, so the check sees motion.
        assert await lively.evaluate(moving) != []
        assert await calm.evaluate(moving) == []
        dot = calm.locator(".gk-pulse span")
        assert await dot.evaluate("(el) => getComputedStyle(el).animationName") == "none"
    finally:
        for page in (calm, lively):
            await page.context.close()
        holder.close()


async def test_a_waiting_page_that_answered_a_post_lets_in_with_a_get(
    browser: Browser, site: Site
) -> None:
    holder = take_the_place(site)
    page = await visitor(browser)
    documents: list[tuple[str, str]] = []
    dialogs: list[str] = []

    def on_request(request: Request) -> None:
        if request.resource_type == "document":
            documents.append((request.method, request.url))

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)

    page.on("request", on_request)
    page.on("dialog", on_dialog)
    try:
        await page.goto(f"{site.url}/")
        await page.locator("#buy").click()
        room = page.locator("#gk-room")
        await expect(room).to_be_visible()
        await expect(room).to_have_attribute("data-method", "POST")
        assert site.shop.requests("/buy") == ["GET"], "the POST was held by the gate"

        assert holder.get("/done").status_code == 200  # the holder leaves: the place is free
        await expect(page.locator("#site-title")).to_have_text("Bought with GET")
        # The shop saw the holder's GET and then the visitor's GET: the form never again.
        assert site.shop.requests("/buy") == ["GET", "GET"]
        assert documents[-1] == ("GET", f"{site.url}/buy")
        assert [method for method, _ in documents].count("POST") == 1
        assert dialogs == [], "no 'confirm form resubmission' prompt"
    finally:
        await page.context.close()
        holder.close()
