"""The catalogues: complete in every language, and an operator's merged over them safely."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gatekeeper.errors import ConfigError
from gatekeeper.web.catalogues import PLURAL_CATEGORIES, load_catalogues, placeholders
from gatekeeper.web.pages import Notice, PageRenderer
from gatekeeper.web.views import WaitingView
from gatekeeper.web.wording import describe_after, describe_position, describe_wait

I18N = Path(__file__).resolve().parents[2] / "gatekeeper" / "web" / "i18n"
PACKAGED = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in I18N.glob("*.json")}
ENGLISH = PACKAGED["en"]
VIEW = WaitingView("s", "WAITING", 3, 200, 2000, "/api/x", "/_gatekeeper")


def _plural_base(key: str) -> str | None:
    base, _, category = key.rpartition(".")
    return base if category in PLURAL_CATEGORIES else None


@pytest.mark.parametrize("tag", sorted(PACKAGED))
def test_every_catalogue_has_every_english_key(tag: str) -> None:
    strings = PACKAGED[tag]
    assert set(ENGLISH) - set(strings) == set()
    extra = set(strings) - set(ENGLISH)
    # Only more plural forms of a counted text (Arabic's zero, two, few, many).
    assert {
        k for k in extra if _plural_base(k) is None or f"{_plural_base(k)}.other" not in ENGLISH
    } == set()
    assert all(isinstance(v, str) and v.strip() for v in strings.values())


@pytest.mark.parametrize("tag", sorted(PACKAGED))
def test_placeholders_match_english(tag: str) -> None:
    for key, text in PACKAGED[tag].items():
        base = _plural_base(key)
        if base is None or key.endswith(".other"):
            assert placeholders(text) == placeholders(ENGLISH[key]), (tag, key, text)
        else:
            # "one", "two" forms may spell the number out ("دقيقتان", "chaque seconde").
            assert placeholders(text) <= placeholders(ENGLISH[f"{base}.other"]), (tag, key)


@pytest.mark.parametrize("tag", sorted(PACKAGED))
def test_catalogues_are_translated_not_copied(tag: str) -> None:
    if tag == "en":
        return
    # Words some languages share with English ("5 minutes" is French too).
    shared = {"after.minutes.one", "after.minutes.other"}
    same = [k for k, v in PACKAGED[tag].items() if ENGLISH.get(k) == v and k not in shared]
    assert same == [], f"{tag} keeps English for {same}"


def test_every_notice_has_its_texts() -> None:
    for notice in Notice:
        assert f"notice.{notice.code}.title" in ENGLISH
        assert ENGLISH[f"notice.{notice.code}.title"] == notice.title
        assert ENGLISH[f"notice.{notice.code}.message"] == notice.message


def test_wording_in_other_languages() -> None:
    catalogues = load_catalogues()
    de, ar, fr, ja = (catalogues.get(t) for t in ("de", "ar", "fr", "ja"))
    assert describe_position("WAITING", 1234, de) == "1.234 Personen vor Ihnen"
    assert describe_position("WAITING", 1, de) == "1 Person vor Ihnen"
    assert describe_position("WAITING", 2, ar) == "شخصان أمامك"
    assert describe_position("WAITING", 5, ar) == "5 أشخاص أمامك"
    assert describe_position("WAITING", 12, ar) == "12 شخصًا أمامك"
    assert describe_position("ACTIVE", 0, fr) == "C’est votre tour, nous vous faisons entrer…"
    assert describe_wait(190, ja) == "約3分"
    assert describe_wait(None, de, (240, 420)) == "etwa 4–7 Minuten"
    assert describe_after(1, fr) == "1 seconde"
    assert describe_after(120, ar) == "دقيقتين"


@pytest.mark.parametrize(
    ("span", "text"),
    [
        ((240, 420), "about 4–7 minutes"),
        ((280, 320), "about 5 minutes"),  # both ends round to 5
        ((20, 100), "about 1–2 minutes"),
        ((5, 40), "less than a minute"),
        ((0, 10), "any moment now"),
        ((3000, 9000), "about 1–3 hours"),
        ((5500, 6600), "about 2 hours"),
        ((3600 * 20, 3600 * 40), "about 20–24 hours"),
        ((3600 * 30, 3600 * 40), "more than a day"),
    ],
)
def test_a_wait_range_in_words(span: tuple[int, int], text: str) -> None:
    assert describe_wait(300, span=span) == text


def test_without_a_usable_range_the_single_estimate_is_shown() -> None:
    assert describe_wait(300, span=None) == "about 5 minutes"
    assert describe_wait(300, span=(400, 200)) == "about 5 minutes"
    assert describe_wait(None, span=None) == "calculating…"


def _operator(tmp_path: Path, files: dict[str, object]) -> str:
    folder = tmp_path / "i18n"
    folder.mkdir()
    for name, data in files.items():
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
        (folder / name).write_text(text, encoding="utf-8")
    return str(tmp_path)


def test_an_operator_overrides_some_strings_key_by_key(tmp_path: Path) -> None:
    directory = _operator(
        tmp_path,
        {
            "de.json": {"waiting.title": "Willkommen in der Schlange"},
            "en.json": {"waiting.footer": "First come, first served."},
        },
    )
    renderer = PageRenderer(template_dir=directory)
    page = renderer.render_waiting(WaitingView(**{**_fields(VIEW), "language": "de"})).decode()
    assert "Willkommen in der Schlange" in page
    assert "3 Personen vor Ihnen" in page  # the rest stays packaged German
    english = renderer.render_waiting(VIEW).decode()
    assert "First come, first served." in english and "You&#x27;re in line" in english


def test_an_operator_adds_a_language(tmp_path: Path) -> None:
    directory = _operator(
        tmp_path,
        {
            "sv.json": {
                "waiting.title": "Du står i kön",
                "position.ahead.one": "{count} person före dig",
                "position.ahead.other": "{count} personer före dig",
            },
            "he.json": {"waiting.title": "אתם בתור"},
        },
    )
    renderer = PageRenderer(template_dir=directory)
    assert {"sv", "he"} <= set(renderer.languages)
    page = renderer.render_waiting(WaitingView(**{**_fields(VIEW), "language": "sv"})).decode()
    assert '<html lang="sv" dir="ltr">' in page
    assert "Du står i kön" in page and "3 personer före dig" in page
    assert "Estimated wait" in page  # what the operator left out is English
    hebrew = renderer.render_notice(Notice.QUEUE_FULL, 30, "he").decode()
    assert '<html lang="he" dir="rtl">' in hebrew


@pytest.mark.parametrize(
    ("files", "error"),
    [
        (
            {"de.json": {"waiting.titel": "x"}},
            r"de\.json: unknown key 'waiting\.titel' \(did you mean 'waiting\.title'\?\)",
        ),
        ({"de.json": {"waiting.title": 5}}, r"waiting\.title: the text must be a string"),
        ({"de.json": {"waiting.title": None}}, r"the text must be a string"),
        ({"de.json": ["waiting.title"]}, r"a catalogue is a JSON object"),
        ({"de.json": "{not json"}, r"de\.json: not a valid catalogue"),
        ({"de.json": '{"waiting.title": "a", "waiting.title": "b"}'}, r"appears twice"),
        (
            {"de.json": {"waiting.title": "Hallo {name}"}},
            r"unknown placeholder \{name\} \(this text may use none\)",
        ),
        (
            {"de.json": {"position.ahead.few": "{count} {low}"}},
            r"unknown placeholder \{low\} \(this text may use \{count\}\)",
        ),
        ({"de_DE.json": {}}, r"the file name must be a language tag"),
    ],
)
def test_a_bad_operator_catalogue_stops_startup(
    tmp_path: Path, files: dict[str, object], error: str
) -> None:
    directory = _operator(tmp_path, files)
    with pytest.raises(ConfigError, match=error):
        PageRenderer(template_dir=directory)


def test_a_plural_form_english_lacks_is_allowed(tmp_path: Path) -> None:
    directory = _operator(tmp_path, {"de.json": {"position.ahead.few": "{count} Leute vor Ihnen"}})
    assert PageRenderer(template_dir=directory)


def test_other_files_in_the_folder_are_ignored(tmp_path: Path) -> None:
    directory = _operator(tmp_path, {"README.txt": "notes", "de.json.bak": "{"})
    assert PageRenderer(template_dir=directory).languages == load_catalogues().tags


def _fields(view: WaitingView) -> dict[str, object]:
    return {name: getattr(view, name) for name in view.__dataclass_fields__}


def test_no_catalogue_text_holds_markup() -> None:
    for tag, strings in PACKAGED.items():
        for key, text in strings.items():
            assert not re.search(r"[<>&]", text), (tag, key)
