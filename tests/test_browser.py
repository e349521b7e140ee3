"""End to end in headless Chromium: the demo fills up, a third visitor waits and gets in alone."""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.browser_helpers import Demo, PageRecord, launch_chromium, run_demo

try:
    from playwright.async_api import Browser, Page, expect
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # pragma: no cover - launch_chromium() fails the test with how to install
    pass

pytestmark = pytest.mark.browser

CAPACITY = 2
ADMISSION_TIMEOUT_MS = 15_000  # from checkout to the waiting visitor's page showing the site
STEP_TIMEOUT_MS = 15_000  # any single page load or click on a loaded 2-core machine
COOKIE = "gk_session"
SCREENSHOT_ENV = "GK_E2E_SCREENSHOT"  # e.g. /tmp/waiting-e2e.png; default: the test's tmp dir


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with run_demo(tmp_path, capacity=CAPACITY) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as chromium:
        yield chromium


async def new_visitor(browser: Browser, *, javascript: bool = True) -> Page:
    """A visitor with a cookie jar of their own (one browser context each)."""
    context = await browser.new_context(java_script_enabled=javascript)
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    return await context.new_page()


async def close_all(pages: list[Page]) -> None:
    for page in pages:
        await page.context.close()


async def open_site(page: Page, demo: Demo) -> None:
    """A visitor who gets in: the site's home page, not the waiting page."""
    await page.goto(f"{demo.url}/")
    await expect(page.locator("#site-title")).to_be_visible()
    await expect(page.locator("#gk-room")).to_have_count(0)


async def open_waiting(page: Page, demo: Demo) -> None:
    """A visitor who must wait: first in line, so "You're next", and none of the site."""
    await page.goto(f"{demo.url}/")
    room = page.locator("#gk-room")
    await expect(room).to_be_visible()
    await expect(room).to_have_attribute("data-status", "WAITING")
    await expect(room).to_have_attribute("data-position", "0")
    await expect(page.locator("#gk-position")).to_have_text("You're next")
    await expect(page.locator("#site-title")).to_have_count(0)


async def buy_a_seat(page: Page) -> float:
    """Pick an event, a free seat, hold it and complete the purchase, all by clicking.

    Returns time.monotonic() just before "Complete purchase" was clicked: the moment the gate
    is told this visitor is done and their place is released.
    """
    await page.get_by_role("link", name="Choose seats").first.click()
    await expect(page).to_have_url(re.compile(r"/events/[a-z-]+$"))
    seat = page.locator("label.seat.free").first
    radio_id = await seat.get_attribute("for")
    assert radio_id, "a free seat's label names its radio button"
    await seat.click()
    await expect(page.locator(f"#{radio_id}")).to_be_checked()
    await page.get_by_role("button", name="Hold this seat").click()
    await expect(page).to_have_url(re.compile(r"/checkout$"))
    await expect(page.get_by_role("heading", name="Checkout")).to_be_visible()
    released_at = time.monotonic()
    await page.get_by_role("button", name="Complete purchase").click()
    await expect(
        page.get_by_role("heading", name="Thank you — your seat is booked")
    ).to_be_visible()
    await expect(page.locator(".reference")).to_have_text(re.compile(r"^EA-[0-9A-F]{6}$"))
    await expect(page.locator("#site-title")).to_be_visible()
    return released_at


async def wait_until_admitted(page: Page, record: PageRecord, demo: Demo, since: float) -> float:
    """Seconds from `since` until the waiting page, left alone, shows the site."""
    try:
        await page.locator("#site-title").wait_for(state="visible", timeout=ADMISSION_TIMEOUT_MS)
    except PlaywrightTimeout:
        position = await page.locator("#gk-position").all_inner_texts()
        pytest.fail(
            f"the waiting visitor was not let in within {ADMISSION_TIMEOUT_MS / 1000:.0f} s of "
            f"the checkout (page at {page.url}, position text {position}, {record.polls} "
            f"status polls).\nDocuments loaded:\n{record.describe()}\n"
            f"Demo output:\n{demo.log_tail()}"
        )
    return time.monotonic() - since


async def assert_waited_then_admitted(record: PageRecord, released_at: float) -> None:
    """The origin served this visitor nothing before their place was released: every document
    before the first site page was the gate's waiting page, and that came after the release."""
    landings = await record.settled()
    kinds = [landing.kind for landing in landings]
    assert "site" in kinds, f"never reached the site:\n{record.describe()}"
    first_site = kinds.index("site")
    assert first_site >= 1 and all(k == "waiting" for k in kinds[:first_site]), (
        f"expected only the waiting page before the site:\n{record.describe()}"
    )
    assert landings[first_site].at >= released_at, (
        f"the site was served before anyone left:\n{record.describe()}"
    )
    assert landings[first_site].status == 200


async def assert_session_cookie_is_hidden(page: Page) -> None:
    """gk_session is HttpOnly and SameSite=Lax, and page scripts cannot read it."""
    cookies = {c.get("name"): c for c in await page.context.cookies()}
    assert COOKIE in cookies, f"no {COOKIE} cookie in {sorted(map(str, cookies))}"
    cookie = cookies[COOKIE]
    assert cookie.get("httpOnly") is True
    assert cookie.get("sameSite") == "Lax"
    assert cookie.get("path") == "/"
    visible = await page.evaluate("document.cookie")
    assert COOKIE not in visible, f"document.cookie exposes the session: {visible!r}"


async def test_third_visitor_waits_and_is_let_in_after_a_checkout(
    browser: Browser, demo: Demo, tmp_path: Path
) -> None:
    first, second, third = [await new_visitor(browser) for _ in range(3)]
    try:
        await open_site(first, demo)
        await open_site(second, demo)
        await assert_session_cookie_is_hidden(first)

        record = PageRecord.attach(third)
        await open_waiting(third, demo)
        await expect(third).to_have_title("You're in line")
        shot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "waiting-e2e.png")
        await third.screenshot(path=shot, full_page=True)
        # While the room is full the page polls the status API and keeps the visitor waiting.
        await record.wait_for(lambda r: r.polls >= 1, "status poll while the room is full")
        await expect(third.locator("#gk-position")).to_have_text("You're next")
        assert record.count("site") == 0
        # The first page (a lazy join, no place yet) reloaded by itself without polling; the
        # page that holds the place polls, and the store knows its session.
        kinds = [landing.kind for landing in await record.settled()]
        assert kinds == ["waiting", "waiting"] and record.refused_polls == 0

        released_at = await buy_a_seat(first)
        # From here on the test only watches the third page: no click, no reload.
        seconds = await wait_until_admitted(third, record, demo, released_at)
        print(f"\nthird visitor admitted {seconds:.2f} s after checkout ({record.polls} polls)")

        await expect(third).to_have_url(f"{demo.url}/")
        await expect(third.get_by_role("heading", name="On sale now")).to_be_visible()
        await expect(third.locator("#gk-room")).to_have_count(0)
        await assert_waited_then_admitted(record, released_at)
        await assert_session_cookie_is_hidden(third)
        # The second visitor was never disturbed.
        await second.reload()
        await expect(second.locator("#site-title")).to_be_visible()
    finally:
        await close_all([first, second, third])


async def test_visitor_without_javascript_is_let_in_by_the_noscript_refresh(
    browser: Browser, demo: Demo
) -> None:
    first, second = [await new_visitor(browser) for _ in range(2)]
    no_js = await new_visitor(browser, javascript=False)
    try:
        await open_site(first, demo)
        await open_site(second, demo)

        record = PageRecord.attach(no_js)
        await open_waiting(no_js, demo)
        # get_by_text() never looks inside <noscript>, so find the note by its place.
        note = no_js.locator("#gk-room noscript p")
        await expect(note).to_be_visible()
        await expect(note).to_contain_text("This page refreshes itself every")
        await expect(no_js.locator('noscript meta[http-equiv="refresh"]')).to_have_attribute(
            "content", re.compile(r"^[1-9][0-9]*$")
        )
        # While the room is full the page refreshes itself and the visitor keeps waiting.
        await record.wait_for(lambda r: r.count("waiting") >= 2, "refresh while the room is full")
        assert record.count("site") == 0

        released_at = await buy_a_seat(second)
        # From here on the test only watches the no-JS page: no click, no reload.
        seconds = await wait_until_admitted(no_js, record, demo, released_at)
        print(f"\nno-JS visitor admitted {seconds:.2f} s after checkout")

        await expect(no_js).to_have_url(f"{demo.url}/")
        await expect(no_js.get_by_role("heading", name="On sale now")).to_be_visible()
        assert record.polls == 0, "without JavaScript nothing should poll the status API"
        await assert_waited_then_admitted(record, released_at)
        await expect(first.locator("#site-title")).to_be_visible()
    finally:
        await close_all([first, second, no_js])


@pytest.fixture
def pow_demo(tmp_path: Path) -> Iterator[Demo]:
    challenge = {
        "WAITINGROOM_GATE_CHALLENGE_KIND": "proof-of-work",
        "WAITINGROOM_GATE_CHALLENGE_DIFFICULTY": "14",
    }
    with run_demo(tmp_path, capacity=CAPACITY, settings=challenge) as running:
        yield running


async def test_the_page_solves_the_proof_of_work_and_takes_its_place_in_line(
    browser: Browser, pow_demo: Demo
) -> None:
    first, second, third = [await new_visitor(browser) for _ in range(3)]
    no_js = await new_visitor(browser, javascript=False)
    try:
        await open_site(first, pow_demo)  # a room that is not busy asks nothing
        await open_site(second, pow_demo)
        loads: list[str] = []
        third.on(
            "request", lambda r: loads.append(r.url) if r.resource_type == "document" else None
        )
        await third.goto(f"{pow_demo.url}/")
        # The first answer carries the challenge; the page solves it, reloads with the answer
        # and the gate places it in line: the plain waiting page, no challenge any more.
        await expect(third.locator("#gk-challenge")).to_have_count(0)
        room = third.locator("#gk-room")
        await expect(room).to_have_attribute("data-status", "WAITING")
        await expect(room).to_have_attribute("data-position", "0")
        cookies = {c["name"]: c["value"] for c in await third.context.cookies()}
        # Only the challenge's script sets the answer; the reload that carried it came after.
        assert COOKIE in cookies and f"{COOKIE}~answer" in cookies and len(loads) >= 2
        await no_js.goto(f"{pow_demo.url}/")
        note = no_js.locator("#gk-challenge noscript p")
        await expect(note).to_contain_text("needs JavaScript")
        await no_js.reload()
        await expect(no_js.locator("#gk-challenge")).to_have_count(1)  # still not in line
        await expect(no_js.locator("#gk-room")).to_have_attribute("data-position", "1")
    finally:
        await close_all([first, second, third, no_js])


ADMIN_TOKEN = "a" * 32


@pytest.fixture
def onsale_demo(tmp_path: Path) -> Iterator[Demo]:
    with run_demo(
        tmp_path, capacity=CAPACITY, settings={"WAITINGROOM_ADMIN_TOKEN": ADMIN_TOKEN}
    ) as running:
        yield running


async def test_a_prequeue_counts_down_then_admits_and_queues_by_the_draw(
    browser: Browser, onsale_demo: Demo
) -> None:
    import httpx

    starts_ms = int(time.time() * 1000) + 6_000
    async with httpx.AsyncClient(base_url=onsale_demo.url) as admin:
        r = await admin.put(
            "/_gatekeeper/admin/rooms/default/event",
            json={"prequeueOpensAt": starts_ms - 60_000, "startsAt": starts_ms},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert r.status_code == 200, r.text
    pages = [await new_visitor(browser) for _ in range(CAPACITY + 1)]
    try:
        for page in pages:
            await page.goto(f"{onsale_demo.url}/")
        for page in pages:
            # The pre-queue page: the start in local time and a countdown; nobody is in yet.
            await expect(page.locator("#gk-prequeue")).to_be_visible()
            await expect(page.locator("#gk-countdown")).to_contain_text("Starts in")
            await expect(page.locator("#gk-position")).to_contain_text("pre-queue")
            await expect(page.locator("#site-title")).to_have_count(0)
        # Left alone, the pages turn at the start: the first two drawn into the site, the
        # third into the waiting page with a position.
        deadline = time.monotonic() + 25
        outcome: list[str] = []
        while time.monotonic() < deadline:
            outcome = [await _state(page) for page in pages]
            if sorted(outcome) == ["site", "site", "waiting"]:
                break
            await pages[0].wait_for_timeout(250)
        assert sorted(outcome) == ["site", "site", "waiting"], outcome
        assert time.time() * 1000 >= starts_ms, "nobody was let in before the start"
        # Sold out: the waiting page turns into the closed page by itself, and stays.
        async with httpx.AsyncClient(base_url=onsale_demo.url) as admin:
            r = await admin.post(
                "/_gatekeeper/admin/rooms/default:close",
                headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert r.status_code == 200, r.text
        waiting = pages[outcome.index("waiting")]
        await expect(waiting.get_by_role("heading", name="This sale has closed")).to_be_visible()
        late = await new_visitor(browser)
        pages.append(late)
        await late.goto(f"{onsale_demo.url}/")
        await expect(late.get_by_role("heading", name="This sale has closed")).to_be_visible()
        await expect(late.locator("#gk-room")).to_have_count(0)
    finally:
        await close_all(pages)


async def _state(page: Page) -> str:
    """What a page shows: the site, the pre-queue, or the waiting page with a position."""
    try:
        return str(
            await page.evaluate(
                """() => {
                  if (document.getElementById("site-title")) return "site";
                  const room = document.getElementById("gk-room");
                  if (!room) return "loading";
                  if (document.getElementById("gk-prequeue")) return "prequeue";
                  const position = room.getAttribute("data-position") || "";
                  return /^[0-9]+$/.test(position) ? "waiting" : "no position";
                }"""
            )
        )
    except Exception:  # navigating: the page is between two documents
        return "loading"


async def test_a_message_to_the_line_appears_on_a_waiting_page_by_itself(
    browser: Browser, onsale_demo: Demo
) -> None:
    import httpx

    first, second, third = [await new_visitor(browser) for _ in range(3)]
    try:
        await open_site(first, onsale_demo)
        await open_site(second, onsale_demo)
        await open_waiting(third, onsale_demo)
        await expect(third.locator("#gk-message")).to_be_hidden()
        async with httpx.AsyncClient(base_url=onsale_demo.url) as admin:
            r = await admin.patch(
                "/_gatekeeper/admin/rooms/default",
                json={"message": "Extra seats released at 8 <pm>"},
                headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            assert r.status_code == 200, r.text
        # No reload: the next status poll brings it, as text.
        await expect(third.locator("#gk-message")).to_have_text("Extra seats released at 8 <pm>")
        await expect(third.locator("#gk-message")).to_be_visible()
    finally:
        await close_all([first, second, third])
