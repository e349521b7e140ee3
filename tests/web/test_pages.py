"""Tests for the waiting page, the unavailable page and packaged static files."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from html import escape
from pathlib import Path

import pytest

from gatekeeper.errors import ConfigError
from gatekeeper.web.pages import WAITING_PLACEHOLDERS, Notice, PageRenderer
from gatekeeper.web.templates import compile_template, fill, prefill, static_file
from gatekeeper.web.views import WaitingView
from gatekeeper.web.wording import describe_position, describe_wait
from tests.web.support import VIEW

STATIC_DIR = Path(__file__).resolve().parents[2] / "gatekeeper" / "web" / "static"


def render(renderer: PageRenderer, view: WaitingView = VIEW) -> str:
    body = renderer.render_waiting(view)
    assert isinstance(body, bytes)
    return body.decode("utf-8")


def test_waiting_page_shows_position_eta_and_note(renderer: PageRenderer) -> None:
    html = render(renderer)
    assert '<html lang="en" dir="ltr">' in html
    assert 'name="viewport"' in html
    assert "<main" in html
    assert re.search(r'role="status"[^>]*aria-live="polite"[^>]*>42 people ahead of you<', html)
    assert "about 3 minutes" in html
    # Catalogue texts arrive escaped like every other value.
    assert escape("Keep this tab open; you'll be let in automatically.") in html


def test_prefilled_pages_match_a_full_fill_and_stay_bounded(renderer: PageRenderer) -> None:
    compiled = compile_template('<p lang="$lang">$title $position</p>$$', WAITING_PLACEHOLDERS, "t")
    values = {"lang": "de", "title": "T &amp; C", "position": "3"}
    some = prefill(compiled, {"lang": "de", "title": "T &amp; C"})
    assert fill(some, values) == fill(compiled, values) == b'<p lang="de">T &amp; C 3</p>$'
    assert fill(prefill(compiled, values), {}) == fill(compiled, values)
    # One prefilled page per language and title: many titles cannot grow it without bound.
    for i in range(600):
        assert f"Sale {i}" in render(renderer, replace(VIEW, title=f"Sale {i}"))
        assert renderer._prefilled.cache_info().currsize <= 256
    assert "Sale 599" in render(renderer, replace(VIEW, title="Sale 599", language="de"))


def test_waiting_page_meta_refresh_only_without_javascript(renderer: PageRenderer) -> None:
    html = render(renderer)
    head = html.split("</head>")[0]
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in head
    assert head.count('http-equiv="refresh"') == 1
    exact = render(renderer, replace(VIEW, poll_after_ms=4000))
    assert 'http-equiv="refresh" content="4"' in exact
    tiny = render(renderer, replace(VIEW, poll_after_ms=0))
    assert 'http-equiv="refresh" content="1"' in tiny


def test_waiting_page_links_status_url_and_static_files(renderer: PageRenderer) -> None:
    html = render(renderer, replace(VIEW, static_prefix="/_gatekeeper/static/"))
    assert 'data-status-url="/api/waiting-room/sessions/s3ss10n-id"' in html
    assert 'data-poll-after-ms="2500"' in html
    assert re.search(
        r'<link rel="stylesheet" href="/_gatekeeper/static/waiting\.css\?v=\w+">', html
    )
    assert re.search(r'<script src="/_gatekeeper/static/waiting\.js\?v=\w+" defer>', html)
    # Nothing is loaded from anywhere but the gate itself.
    for url in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert url.startswith("/_gatekeeper/static/waiting.")


def test_progress_bar_determinate_and_indeterminate(renderer: PageRenderer) -> None:
    html = render(renderer)
    assert re.search(r'<progress [^>]*value="78" max="121"', html)
    unknown = render(renderer, replace(VIEW, joined_position=None))
    progress = re.search(r"<progress [^>]*>", unknown)
    assert progress is not None and "value=" not in progress.group(0)
    overtaken = render(renderer, replace(VIEW, position=200, joined_position=5))
    assert 'value="0" max="6"' in overtaken


@pytest.mark.parametrize(
    ("position", "text"),
    [(0, "You're next"), (1, "1 person ahead of you"), (1234, "1,234 people ahead of you")],
)
def test_position_wording(renderer: PageRenderer, position: int, text: str) -> None:
    assert describe_position("WAITING", position) == text
    assert escape(text) in render(renderer, replace(VIEW, position=position))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "calculating…"),
        (5, "any moment now"),
        (45, "less than a minute"),
        (60, "about 1 minute"),
        (190, "about 3 minutes"),
        (150, "about 3 minutes"),
        (5400, "about 2 hours"),
        (200_000, "more than a day"),
    ],
)
def test_wait_wording(seconds: int | None, text: str) -> None:
    assert describe_wait(seconds) == text


def test_unknown_eta_renders_calculating(renderer: PageRenderer) -> None:
    html = render(renderer, replace(VIEW, estimated_wait_seconds=None))
    assert 'id="gk-eta">calculating…<' in html
    assert 'data-eta-seconds=""' in html


def test_hostile_values_are_escaped(renderer: PageRenderer) -> None:
    evil = '<script>alert("x")</script>'
    view = replace(
        VIEW,
        title=evil,
        room=evil,
        session_id=evil,
        status=evil,
        status_url='/api/"><script>alert(1)</script>',
        static_prefix='"><script>alert(2)</script>',
    )
    html = render(renderer, view)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert 'data-status-url="/api/&quot;&gt;&lt;script&gt;' in html
    # The one script that runs is the packaged one; the other holds the texts as JSON data.
    assert html.count("<script") == 2 and html.count("<script src=") == 1
    assert html.count('<script type="application/json" id="gk-strings">') == 1


def test_custom_template_overrides_default(tmp_path: Path) -> None:
    template = tmp_path / "mine.html"
    template.write_text(
        "<p>${title} | ${position_text} | ${eta_text} | ${status_url} | $$5 | ${room}</p>",
        encoding="utf-8",
    )
    renderer = PageRenderer(str(template))
    html = render(renderer, replace(VIEW, room="<b>"))
    assert html == (
        "<p>You&#x27;re in line | 42 people ahead of you | about 3 minutes"
        " | /api/waiting-room/sessions/s3ss10n-id | $5 | &lt;b&gt;</p>"
    )


def test_custom_template_with_unknown_placeholder_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "bad.html"
    template.write_text("<p>${nope}</p>", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\$nope"):
        PageRenderer(str(template))
    stray = tmp_path / "stray.html"
    stray.write_text("<p>costs $ 5</p>", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1"):
        PageRenderer(str(stray))


def test_missing_custom_template_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PageRenderer(str(tmp_path / "absent.html"))


def test_unavailable_page(renderer: PageRenderer) -> None:
    html = renderer.render_unavailable(30).decode("utf-8")
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "We&#x27;ll be right back" in html or "We'll be right back" in html
    assert "30 seconds" in html
    assert 'content="1"' in renderer.render_unavailable(0).decode("utf-8")
    assert "2 minutes" in renderer.render_unavailable(120).decode("utf-8")


def test_static_files_are_served_by_plain_name() -> None:
    css = static_file("waiting.css")
    js = static_file("waiting.js")
    assert css is not None and css[1] == "text/css; charset=utf-8"
    assert js is not None and js[1] == "text/javascript; charset=utf-8"
    assert css[0] == (STATIC_DIR / "waiting.css").read_bytes()
    assert static_file("waiting.css") is css  # cached


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../pages.py",
        "..",
        "../templates/waiting.html",
        "/etc/passwd",
        "sub/waiting.css",
        "..\\pages.py",
        "waiting.css\0",
        "nope.css",
        "__init__.py",
    ],
)
def test_static_file_refuses_other_names(name: str) -> None:
    assert static_file(name) is None


def test_static_assets_use_no_external_resources() -> None:
    for name in ("waiting.css", "waiting.js"):
        text = (STATIC_DIR / name).read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "@import" not in text


def test_stylesheet_respects_reduced_motion() -> None:
    css = (STATIC_DIR / "waiting.css").read_text(encoding="utf-8")
    assert "prefers-reduced-motion" in css


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_waiting_js_parses() -> None:
    result = subprocess.run(
        ["node", "--check", str(STATIC_DIR / "waiting.js")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr


def test_a_template_directory_replaces_the_pages_it_has(tmp_path: Path) -> None:
    (tmp_path / "closed.html").write_text("<h1>${title}</h1><p>Sold out, sorry. ${message}</p>")
    (tmp_path / "notice.html").write_text("<p>${title}: ${message} (${retry_after_text})</p>")
    renderer = PageRenderer(template_dir=str(tmp_path))
    closed = renderer.render_closed().decode()
    assert closed.startswith("<h1>This sale has closed</h1><p>Sold out, sorry.")
    assert renderer.render_notice(Notice.QUEUE_FULL, 30).decode().startswith("<p>The line is full")
    assert renderer.render_unavailable(5).decode().startswith("<p>We&#x27;ll be right back")
    waiting = renderer.render_waiting(
        WaitingView("s", "WAITING", 3, None, 1000, "/api/x", "/_gatekeeper")
    ).decode()
    assert 'id="gk-room"' in waiting, "a page the directory lacks stays the packaged one"
    (tmp_path / "closed.html").write_text("<p>${seed}</p>")
    with pytest.raises(ConfigError, match="unknown placeholder"):
        PageRenderer(template_dir=str(tmp_path))
