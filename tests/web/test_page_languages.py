"""Every page in every language: lang and dir, translated texts, the script's texts, no retry."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html import escape, unescape
from pathlib import Path

import pytest

from gatekeeper.web.catalogues import load_catalogues
from gatekeeper.web.pages import Notice, PageRenderer
from tests.web.support import VIEW

CATALOGUES = load_catalogues()
TAGS = CATALOGUES.tags
RTL = {"ar"}


def html_tag(tag: str) -> str:
    return f'<html lang="{tag}" dir="{"rtl" if tag in RTL else "ltr"}">'


def strings_of(page: str) -> dict[str, object]:
    found = re.search(r'<script type="application/json" id="gk-strings">(.*?)</script>', page)
    assert found is not None
    data = json.loads(found.group(1))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("tag", TAGS)
@pytest.mark.parametrize("notice", list(Notice), ids=[n.code for n in Notice])
def test_each_notice_in_each_language(renderer: PageRenderer, tag: str, notice: Notice) -> None:
    words = CATALOGUES.get(tag)
    page = renderer.render_notice(notice, 30, tag).decode()
    assert page.startswith(f"<!doctype html>\n{html_tag(tag)}")
    assert f"<title>{escape(words.text(f'notice.{notice.code}.title'))}</title>" in page
    assert escape(words.text(f"notice.{notice.code}.message")) in page
    after = words.plural("after.seconds", 30)
    assert escape(words.text("notice.retry", after=after)) in page
    assert '<meta http-equiv="refresh" content="30">' in page
    assert escape(words.text("notice.try_now")) in page


@pytest.mark.parametrize("tag", TAGS)
def test_closed_and_unavailable_pages_in_each_language(renderer: PageRenderer, tag: str) -> None:
    words = CATALOGUES.get(tag)
    closed = renderer.render_closed(tag).decode()
    assert html_tag(tag) in closed and "refresh" not in closed and "<script" not in closed
    assert escape(words.text("notice.room_closed.title")) in closed
    assert escape(words.text("closed.thanks")) in closed
    down = renderer.render_unavailable(5, tag).decode()
    assert html_tag(tag) in down
    assert escape(words.text("notice.store_unavailable.title")) in down


@pytest.mark.parametrize("tag", TAGS)
def test_the_waiting_page_in_each_language(renderer: PageRenderer, tag: str) -> None:
    words = CATALOGUES.get(tag)
    page = renderer.render_waiting(replace(VIEW, language=tag)).decode()
    assert html_tag(tag) in page
    for key in ("waiting.title", "wait.label", "waiting.note", "waiting.footer"):
        assert escape(words.text(key)) in page, key
    assert escape(words.plural("position.ahead", 42)) in page
    data = strings_of(page)
    assert data["lang"] == tag
    strings = data["strings"]
    assert isinstance(strings, dict)
    assert strings["position.next"] == words.text("position.next")
    assert "wait.minutes_range.other" in strings and "prequeue.countdown" in strings
    # Only what the script writes travels in the page.
    assert not any(key.startswith("notice.") for key in strings)


def test_an_unknown_language_renders_english(renderer: PageRenderer) -> None:
    page = renderer.render_waiting(replace(VIEW, language="tlh")).decode()
    assert '<html lang="en" dir="ltr">' in page


@pytest.mark.parametrize("notice", [Notice.ENQUEUE_TOKEN_REQUIRED, Notice.INVALID_ENQUEUE_TOKEN])
def test_a_final_notice_neither_reloads_nor_promises_a_retry(
    renderer: PageRenderer, notice: Notice
) -> None:
    page = renderer.render_notice(notice, 0).decode()
    assert "http-equiv" not in page
    assert "try again" not in page.lower() and "<a " not in page
    assert escape(notice.title) in page and escape(notice.message) in page
    german = renderer.render_notice(notice, 0, "de").decode()
    assert "Link" in german and "http-equiv" not in german


def test_the_invitation_notices_say_what_to_do(renderer: PageRenderer) -> None:
    page = renderer.render_notice(Notice.ENQUEUE_TOKEN_REQUIRED, 0).decode()
    assert "open the link the site gave you" in page
    expired = renderer.render_notice(Notice.INVALID_ENQUEUE_TOKEN, 0).decode()
    assert "expired" in expired and "Go back to the site" in expired


def test_the_page_knows_the_method_it_answered(renderer: PageRenderer) -> None:
    assert 'data-method="GET"' in renderer.render_waiting(VIEW).decode()
    posted = renderer.render_waiting(replace(VIEW, method="POST")).decode()
    assert 'data-method="POST"' in posted


def test_the_wait_is_shown_as_a_range(renderer: PageRenderer) -> None:
    page = renderer.render_waiting(replace(VIEW, wait_range=(240, 420))).decode()
    assert 'id="gk-eta">about 4–7 minutes<' in page
    german = renderer.render_waiting(replace(VIEW, wait_range=(240, 420), language="de"))
    assert 'id="gk-eta">etwa 4–7 Minuten<' in german.decode()
    alike = renderer.render_waiting(replace(VIEW, wait_range=(280, 320))).decode()
    assert 'id="gk-eta">about 5 minutes<' in alike


def test_the_prequeue_in_another_language(renderer: PageRenderer) -> None:
    view = replace(VIEW, position=None, starts_at="2027-03-01T18:00:00.000Z", language="fr")
    page = renderer.render_waiting(view).decode()
    assert "<title>La vente commence bientôt</title>" in page
    assert (
        'La vente commence le <time id="gk-starts-at" datetime="2027-03-01T18:00:00.000Z">' in page
    )
    assert "Vous êtes dans la pré-file" in page


def test_operator_texts_cannot_break_out_of_the_script_block(tmp_path: Path) -> None:
    evil = '</script><script>alert(1)</script><!-- & "'
    (tmp_path / "i18n").mkdir()
    (tmp_path / "i18n" / "en.json").write_text(
        json.dumps({"position.next": evil, "waiting.title": evil}), encoding="utf-8"
    )
    renderer = PageRenderer(template_dir=str(tmp_path))
    page = renderer.render_waiting(replace(VIEW, position=0)).decode()
    assert "<script>alert" not in page and "<!--" not in page
    assert page.count("</script>") == 2  # the packaged script and the data block
    assert strings_of(page)["strings"]["position.next"] == evil  # type: ignore[index]
    heading = re.search(r'<h1 id="gk-heading">(.*?)</h1>', page)
    assert heading is not None and unescape(heading.group(1)) == evil


def test_operator_templates_may_use_the_language_placeholders(tmp_path: Path) -> None:
    (tmp_path / "unavailable.html").write_text(
        '<html lang="${lang}" dir="${dir}"><h1>${title}</h1>${retry_after_text}</html>'
    )
    (tmp_path / "closed.html").write_text('<html lang="${lang}">${thanks_text}</html>')
    renderer = PageRenderer(template_dir=str(tmp_path))
    down = renderer.render_unavailable(120, "ar").decode()
    assert down == '<html lang="ar" dir="rtl"><h1>سنعود قريبًا</h1>دقيقتين</html>'
    assert renderer.render_closed("nl").decode() == (
        '<html lang="nl">Bedankt voor je geduld. Je kunt dit tabblad sluiten.</html>'
    )
