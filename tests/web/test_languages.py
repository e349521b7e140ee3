"""Choosing a page's language: Accept-Language parsing, fallbacks, forced and per-room settings."""

from __future__ import annotations

import time

import pytest

from gatekeeper.config import Settings, load_config
from gatekeeper.errors import ConfigError
from gatekeeper.web.catalogues import load_catalogues
from gatekeeper.web.languages import (
    MAX_HEADER_CHARS,
    MAX_RANGES,
    Direction,
    LanguagePolicy,
    _negotiated,
    best_match,
    format_number,
    parse_accept_language,
    plural_category,
)

TAGS = load_catalogues().tags
AVAILABLE = {tag.lower(): tag for tag in TAGS}


def settings(**overrides: object) -> Settings:
    return load_config(
        None, environ={}, overrides={f"waitingroom.{k}": v for k, v in overrides.items()}
    )


def negotiate(header: str | bytes | None) -> str | None:
    return best_match(parse_accept_language(header), AVAILABLE)


def test_every_promised_language_is_packaged() -> None:
    assert set(TAGS) >= {"en", "es", "fr", "de", "pt", "it", "nl", "ja", "zh-Hans", "ar"}


@pytest.mark.parametrize(
    ("header", "ranges"),
    [
        ("de", ["de"]),
        ("de-DE,de;q=0.9,en;q=0.8", ["de-de", "de", "en"]),
        ("en;q=0.1, fr;q=0.9, ja", ["ja", "fr", "en"]),
        # Equal q keeps the header's order; q=1 beats a later q=1.000 never.
        ("nl;q=0.5, it;q=0.5", ["nl", "it"]),
        ("fr;q=1.000, de", ["fr", "de"]),
        # q=0 means "not this one".
        ("de;q=0, fr", ["fr"]),
        ("*", ["*"]),
        (" es-419 ;Q=0.7 ,\tpt-BR", ["pt-br", "es-419"]),
    ],
)
def test_ranges_come_in_order_of_preference(header: str, ranges: list[str]) -> None:
    assert parse_accept_language(header) == ranges
    assert parse_accept_language(header.encode()) == ranges


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        ";;;",
        "de;q=2",
        "de;q=0.5000",
        "de;q=abc",
        "de;level=1",
        "de_DE",
        "de-deutschland",  # a subtag over 8 characters
        "123",
        "dé",
        "\x00de",
        "de;q=0.5;q=0.4",
    ],
)
def test_malformed_is_as_good_as_absent(header: str | None) -> None:
    assert parse_accept_language(header) == []
    assert negotiate(header) is None


def test_a_malformed_entry_does_not_spoil_the_good_ones() -> None:
    assert parse_accept_language("??, fr;q=0.8, de;q=oops") == ["fr"]


@pytest.mark.parametrize(
    ("header", "tag"),
    [
        ("pt-BR", "pt"),
        ("pt-PT,pt;q=0.9", "pt"),
        ("zh-CN", "zh-Hans"),
        ("zh-Hans", "zh-Hans"),
        ("zh", "zh-Hans"),
        ("zh-Hans-CN", "zh-Hans"),
        ("zh-TW", "zh-Hans"),
        ("AR-eg", "ar"),
        ("es-419", "es"),
        ("de-CH-1996", "de"),
        ("ko, fr;q=0.3", "fr"),
        ("ko, sv", None),
        ("*", None),
        ("ko, *;q=0.5, de;q=0.1", None),
    ],
)
def test_a_region_or_script_falls_back_to_its_language(header: str, tag: str | None) -> None:
    assert negotiate(header) == tag


def test_a_huge_header_costs_nothing_and_only_its_head_counts() -> None:
    head = "ko, sv, " * 5 + "de"
    huge = head + ", " + "fr;q=0.9, " * 100_000
    assert len(huge) > 1_000_000
    started = time.perf_counter()
    for _ in range(1000):
        assert negotiate(huge) == "de"
        assert negotiate(huge.encode()) == "de"
    assert time.perf_counter() - started < 1.0
    # Only the first MAX_RANGES ranges are looked at.
    late = ", ".join(["ko"] * MAX_RANGES + ["de"])
    assert negotiate(late) is None
    # A range cut by the length limit is dropped, not read as a shorter tag.
    cut = "x" * (MAX_HEADER_CHARS - 3) + ",de-AT"
    assert len(cut) > MAX_HEADER_CHARS and negotiate(cut) is None
    one_giant = "de" + "-abc" * 100_000
    assert negotiate(one_giant) is None


def test_the_policy_falls_back_to_the_configured_default() -> None:
    policy = LanguagePolicy(settings(**{"gate.language": "fr"}), TAGS)
    assert policy.choose(None, b"ko").tag == "fr"
    assert policy.choose(None, None).tag == "fr"
    choice = policy.choose(None, b"de-AT;q=0.4, ar")
    assert (choice.tag, choice.negotiated, choice.direction) == ("ar", True, Direction.RTL)


def test_the_matches_remembered_stay_bounded_under_a_flood_of_headers() -> None:
    policy = LanguagePolicy(settings(), TAGS)
    bound = _negotiated.cache_info().maxsize
    assert bound is not None
    for i in range(3 * bound):
        assert policy.choose(None, b"de;q=0.%d, x-%d" % (i % 9 + 1, i)).tag == "de"
        assert _negotiated.cache_info().currsize <= bound
    # A header past what parsing reads is remembered by that part only: the same entry.
    giant = b"fr," + b"x" * 1_000_000
    assert policy.choose(None, giant).tag == "fr"
    hits = _negotiated.cache_info().hits
    assert policy.choose(None, giant[: MAX_HEADER_CHARS + 1] + b"y").tag == "fr"
    assert _negotiated.cache_info().hits == hits + 1


def test_a_forced_language_ignores_the_browser() -> None:
    policy = LanguagePolicy(settings(**{"gate.force-language": "pt-BR"}), TAGS)
    choice = policy.choose("default", b"de")
    assert (choice.tag, choice.negotiated) == ("pt", False)


def test_rooms_choose_their_own_language() -> None:
    policy = LanguagePolicy(
        settings(
            **{
                "gate.language": "de",
                "gate.force-language": "it",
                "rooms.overrides": {
                    "tokyo": {"language": "ja", "force-language": ""},
                    "cairo": {"force-language": "ar"},
                    "plain": {"capacity": 3},
                },
            }
        ),
        TAGS,
    )
    assert policy.choose("tokyo", b"ko").tag == "ja"
    assert policy.choose("tokyo", b"fr").tag == "fr"
    assert policy.choose("cairo", b"fr").tag == "ar"
    assert policy.choose("plain", b"fr").tag == "it"  # the gate's settings
    assert policy.choose("unlisted", b"fr").tag == "it"
    assert policy.choose(None, b"fr").tag == "it"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"gate.language": "ko"}, "gate.language"),
        ({"gate.force-language": "sv"}, "gate.force-language"),
        ({"rooms.overrides": {"seoul": {"language": "ko"}}}, "rooms.overrides.seoul.language"),
    ],
)
def test_a_language_without_a_catalogue_stops_startup(
    overrides: dict[str, object], key: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{key}: no catalogue for"):
        LanguagePolicy(settings(**overrides), TAGS)


@pytest.mark.parametrize(
    ("tag", "n", "text"),
    [
        ("en", 1234567, "1,234,567"),
        ("de", 1234, "1.234"),
        ("es", 1234, "1234"),
        ("es", 12345, "12.345"),
        ("it", 1234, "1234"),
        ("fr", 1234567, "1\u202f234\u202f567"),
        ("ja", 1234, "1,234"),
        ("ar", 1234, "1,234"),
        ("nl", 999, "999"),
        ("en", -1234, "-1,234"),
    ],
)
def test_numbers_are_grouped_as_intl_does(tag: str, n: int, text: str) -> None:
    assert format_number(tag, n) == text


@pytest.mark.parametrize(
    ("tag", "counts"),
    [
        ("en", {0: "other", 1: "one", 2: "other"}),
        ("fr", {0: "one", 1: "one", 2: "other"}),
        ("pt", {0: "one", 1: "one", 2: "other"}),
        ("ja", {1: "other", 2: "other"}),
        ("zh-Hans", {1: "other"}),
        ("ar", {0: "zero", 1: "one", 2: "two", 3: "few", 10: "few", 11: "many", 99: "many"}),
        ("ar", {100: "other", 102: "other", 103: "few", 111: "many"}),
    ],
)
def test_plural_categories_follow_cldr(tag: str, counts: dict[int, str]) -> None:
    assert {n: plural_category(tag, n) for n in counts} == counts
