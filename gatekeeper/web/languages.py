"""Which language a page speaks (Accept-Language against the catalogues), and language rules."""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import Enum

from gatekeeper.config.settings import Settings
from gatekeeper.errors import ConfigError

__all__ = [
    "MAX_HEADER_CHARS",
    "MAX_RANGES",
    "Choice",
    "Direction",
    "LanguagePolicy",
    "best_match",
    "direction",
    "format_number",
    "lookup",
    "parse_accept_language",
    "plural_category",
]

MAX_HEADER_CHARS = 256
"""Only this much of an Accept-Language header is read: a 1 MB header costs what 256 bytes do."""
MAX_RANGES = 12
"""Only the first this many language ranges of the header are looked at."""

_RANGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*")
_Q = re.compile(r"[qQ]=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")
# Chinese in simplified characters; other Chinese (zh-TW, zh-Hant) reaches it by its prefix too,
# which reads better to most of them than English would.
_ALIASES = {"zh": "zh-hans", "zh-cn": "zh-hans", "zh-sg": "zh-hans", "zh-my": "zh-hans"}
_RTL = frozenset({"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ps", "sd", "ug", "ur", "yi"})
# Group separator and minimum grouping digits, as CLDR (and so Intl.NumberFormat) has them:
# Spanish and Italian write 1234 but 12.345.
_GROUPING = {
    "es": (".", 2),
    "it": (".", 2),
    "de": (".", 1),
    "nl": (".", 1),
    "pt": (".", 1),
    "fr": ("\u202f", 1),
}


class Direction(Enum):
    """The writing direction of a language, as `<html dir>` takes it."""

    LTR = "ltr"
    RTL = "rtl"


def _primary(tag: str) -> str:
    return tag.partition("-")[0].lower()


def direction(tag: str) -> Direction:
    """Right to left for Arabic, Hebrew, Persian, Urdu and the like; left to right otherwise."""
    return Direction.RTL if _primary(tag) in _RTL else Direction.LTR


def plural_category(tag: str, n: int) -> str:
    """The CLDR plural category of the whole number `n` (what Intl.PluralRules says)."""
    lang = _primary(tag)
    if lang in ("ja", "zh", "ko", "th", "vi", "id", "ms"):
        return "other"
    if lang in ("fr", "pt"):
        return "one" if n in (0, 1) else "other"
    if lang == "ar":
        tail = n % 100
        if n in (0, 1, 2):
            return ("zero", "one", "two")[n]
        if 3 <= tail <= 10:
            return "few"
        return "many" if 11 <= tail <= 99 else "other"
    return "one" if n == 1 else "other"


def format_number(tag: str, n: int) -> str:
    """`n` with the language's digit grouping (1,234 · 1.234 · 1 234)."""
    separator, min_grouping = _GROUPING.get(_primary(tag), (",", 1))
    digits = str(abs(n))
    if len(digits) >= 3 + min_grouping:
        head = len(digits) % 3 or 3
        groups = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
        digits = separator.join(groups)
    return f"-{digits}" if n < 0 else digits


def parse_accept_language(header: str | bytes | None) -> list[str]:
    """The language ranges of an Accept-Language header, lower case, most preferred first.

    Ranges refused with q=0 and malformed entries are left out, so a header with nothing valid
    is as good as none. Only `MAX_HEADER_CHARS` and `MAX_RANGES` of it are looked at."""
    if not header:
        return []
    text = header[: MAX_HEADER_CHARS + 1]
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    if len(text) > MAX_HEADER_CHARS:
        # Cut mid-entry: what follows the last comma is a fragment, not a range.
        text = text[: text.rfind(",", 0, MAX_HEADER_CHARS + 1) + 1]
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(text.split(",", MAX_RANGES)[:MAX_RANGES]):
        tag, _, params = item.partition(";")
        tag = tag.strip(" \t")
        if not _RANGE.fullmatch(tag):
            continue
        q = 1.0
        if params:
            found = _Q.fullmatch(params.strip(" \t"))
            if found is None:
                continue
            q = float(found.group(1))
        if q > 0:
            ranked.append((-q, index, tag.lower()))
    ranked.sort()
    return [tag for _, _, tag in ranked]


def lookup(tag: str, available: Mapping[str, str]) -> str | None:
    """The catalogue for `tag` or for its nearest prefix (pt-BR → pt, zh-CN → zh-Hans);
    `available` maps lower-case tags to their spelling."""
    wanted = tag.lower()
    while wanted:
        for candidate in (wanted, _ALIASES.get(wanted)):
            if candidate is not None and candidate in available:
                return available[candidate]
        wanted = wanted.rpartition("-")[0]
    return None


def best_match(ranges: list[str], available: Mapping[str, str]) -> str | None:
    """The first range (in preference order) we have a catalogue for; None for none or `*`."""
    for wanted in ranges:
        if wanted == "*":
            return None
        found = lookup(wanted, available)
        if found is not None:
            return found
    return None


@dataclass(frozen=True, slots=True)
class Choice:
    """The language of one page, and whether it came from the request's Accept-Language."""

    tag: str
    negotiated: bool
    """True unless forced: the answer varies with Accept-Language."""

    @property
    def direction(self) -> Direction:
        """The page's writing direction."""
        return direction(self.tag)


@dataclass(frozen=True, slots=True)
class _Rule:
    default: str
    forced: str


class LanguagePolicy:
    """Chooses each page's language from the gate's and the rooms' settings; every configured
    tag is checked against the catalogues when it is built (at startup)."""

    def __init__(self, settings: Settings, available: Collection[str]) -> None:
        self._available = {tag.lower(): tag for tag in available}
        self._offered = tuple(self._available.items())
        gate = settings.gate
        self._gate = _Rule(
            self._resolve("gate.language", gate.language),
            self._resolve("gate.force-language", gate.force_language),
        )
        self._rooms: dict[str, _Rule] = {}
        for room, override in settings.rooms.overrides.items():
            key = f"rooms.overrides.{room}"
            default, forced = self._gate.default, self._gate.forced
            if override.language is not None:
                default = self._resolve(f"{key}.language", override.language)
            if override.force_language is not None:
                forced = self._resolve(f"{key}.force-language", override.force_language)
            self._rooms[room] = _Rule(default, forced)

    def _resolve(self, key: str, tag: str) -> str:
        if not tag:
            return ""
        found = lookup(tag, self._available)
        if found is None:
            have = " ".join(sorted(self._available.values()))
            raise ConfigError(
                f"{key}: no catalogue for {tag!r} (we have {have}; add one as "
                f"<gate.template-dir>/i18n/{tag}.json)"
            )
        return found

    def choose(self, room: str | None, accept_language: bytes | None) -> Choice:
        """The language of a page of `room` (None: the gate's settings) for this header."""
        rule = self._rooms.get(room, self._gate) if room is not None else self._gate
        if rule.forced:
            return Choice(rule.forced, negotiated=False)
        # Remembered by the part that parsing reads: browsers send a few distinct headers.
        header = (accept_language or b"")[: MAX_HEADER_CHARS + 1]
        return Choice(_negotiated(header, self._offered) or rule.default, negotiated=True)


@functools.lru_cache(maxsize=1024)
def _negotiated(header: bytes, offered: tuple[tuple[str, str], ...]) -> str | None:
    """The best of `offered` (lower-case tag, tag) for an Accept-Language header."""
    return best_match(parse_accept_language(header), dict(offered))
