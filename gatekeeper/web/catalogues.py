"""The pages' words in every language: the packaged JSON catalogues, an operator's merged over them.

A catalogue is a flat JSON object of key → text; `{name}` marks a value filled in. A key that
ends in a plural category (`.one`, `.other`, and for languages that have them `.zero`, `.two`,
`.few`, `.many`) is one form of a counted text. English (`en.json`) names every key there is.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources

from gatekeeper.errors import ConfigError
from gatekeeper.web.languages import Direction, direction, format_number, plural_category

__all__ = [
    "BASE_LANGUAGE",
    "PLURAL_CATEGORIES",
    "Catalogue",
    "Catalogues",
    "check_catalogue",
    "english",
    "load_catalogues",
    "placeholders",
]

BASE_LANGUAGE = "en"
PLURAL_CATEGORIES = ("zero", "one", "two", "few", "many", "other")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_FILE_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")
_PACKAGE = "gatekeeper.web"


def placeholders(text: str) -> frozenset[str]:
    """The `{name}`s a text uses."""
    return frozenset(_PLACEHOLDER.findall(text))


class Catalogue:
    """One language's words, with its plural rules and number format."""

    def __init__(self, tag: str, strings: Mapping[str, str]) -> None:
        self.tag = tag
        self.direction: Direction = direction(tag)
        self._strings = dict(strings)

    def raw(self, key: str) -> str:
        """The text of `key` as written, placeholders and all."""
        return self._strings[key]

    def text(self, key: str, **values: str) -> str:
        """The text of `key` with its `{name}`s filled in (values are plain text)."""
        return _fill(self._strings[key], values)

    def plural(self, key: str, count: int, **values: str) -> str:
        """The form of counted text `key` for `count`; `{count}` is the formatted number."""
        form = self._strings.get(f"{key}.{plural_category(self.tag, count)}")
        if form is None:
            form = self._strings[f"{key}.other"]
        return _fill(form, {"count": self.number(count), **values})

    def number(self, n: int) -> str:
        """`n` written the language's way."""
        return format_number(self.tag, n)

    def subset(self, prefixes: tuple[str, ...]) -> dict[str, str]:
        """Every key that starts with one of `prefixes`, for the page's script."""
        return {k: v for k, v in self._strings.items() if k.startswith(prefixes)}


def _fill(text: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


class Catalogues:
    """Every language we speak, by tag; any other tag gets English."""

    def __init__(self, by_tag: Mapping[str, Catalogue]) -> None:
        self._by_tag = dict(by_tag)

    @property
    def tags(self) -> tuple[str, ...]:
        """The tags of every language, as spelled in their catalogue's file name."""
        return tuple(sorted(self._by_tag))

    def get(self, tag: str) -> Catalogue:
        """The catalogue of `tag` (as `tags` spells it), else the English one."""
        found = self._by_tag.get(tag)
        return found if found is not None else self._by_tag[BASE_LANGUAGE]


def _allowed(reference: Mapping[str, str]) -> dict[str, frozenset[str]]:
    """Every key a catalogue may hold, with the placeholders its text may use."""
    allowed = {key: placeholders(text) for key, text in reference.items()}
    for key in list(allowed):
        base, _, category = key.rpartition(".")
        if category in ("one", "other"):
            used = frozenset().union(
                *(placeholders(t) for k, t in reference.items() if k.startswith(base + "."))
            )
            for other in PLURAL_CATEGORIES:
                allowed[f"{base}.{other}"] = used
    return allowed


def check_catalogue(origin: str, data: object, reference: Mapping[str, str]) -> dict[str, str]:
    """`data` (a parsed catalogue) checked against the English one: known keys, string
    values, no placeholder the text cannot be given. `origin` names it in errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: a catalogue is a JSON object of key: text")
    allowed = _allowed(reference)
    checked: dict[str, str] = {}
    for key, value in data.items():
        if key not in allowed:
            near = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else " (en.json lists every key)"
            raise ConfigError(f"{origin}: unknown key {key!r}{hint}")
        if not isinstance(value, str):
            raise ConfigError(f"{origin}: {key}: the text must be a string, not {value!r:.40}")
        extra = placeholders(value) - allowed[key]
        if extra:
            may = ", ".join(f"{{{name}}}" for name in sorted(allowed[key])) or "none"
            raise ConfigError(
                f"{origin}: {key}: unknown placeholder {{{min(extra)}}} (this text may use {may})"
            )
        checked[key] = value
    return checked


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice")
        seen[key] = value
    return seen


def _parse(origin: str, text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise ConfigError(f"{origin}: not a valid catalogue ({exc})") from exc


@cache
def _packaged() -> dict[str, dict[str, str]]:
    folder = resources.files(_PACKAGE) / "i18n"
    raw = {
        entry.name.removesuffix(".json"): _parse(entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    }
    reference = raw[BASE_LANGUAGE]
    assert isinstance(reference, dict)
    return {tag: check_catalogue(f"i18n/{tag}.json", data, reference) for tag, data in raw.items()}


@cache
def english() -> Catalogue:
    """The packaged English catalogue."""
    return Catalogue(BASE_LANGUAGE, _packaged()[BASE_LANGUAGE])


def _operator_files(template_dir: str | None) -> Iterable[tuple[str, str]]:
    """(tag, path) of each catalogue in `<template_dir>/i18n/`."""
    folder = os.path.join(template_dir, "i18n") if template_dir else ""
    if not folder or not os.path.isdir(folder):
        return []
    found = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json"):
            continue
        tag = name.removesuffix(".json")
        if not _FILE_TAG.fullmatch(tag):
            raise ConfigError(
                f"{os.path.join(folder, name)}: the file name must be a language tag, "
                "such as de.json or pt-BR.json"
            )
        found.append((tag, os.path.join(folder, name)))
    return found


def load_catalogues(template_dir: str | None = None) -> Catalogues:
    """The packaged catalogues with the operator's (`<template_dir>/i18n/<tag>.json`) merged
    over them key by key; an operator's new language starts from English. Checked now, so a
    mistake stops startup rather than a page."""
    merged = {tag: dict(strings) for tag, strings in _packaged().items()}
    spelled = {tag.lower(): tag for tag in merged}
    reference = _packaged()[BASE_LANGUAGE]
    extensions = []
    for tag, path in _operator_files(template_dir):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read it ({exc})") from exc
        strings = check_catalogue(path, _parse(path, text), reference)
        tag = spelled.get(tag.lower(), tag)
        spelled[tag.lower()] = tag
        if tag in merged:
            merged[tag].update(strings)
        else:
            extensions.append((tag, strings))
    # A new language falls back to English, as the operator has it.
    for tag, strings in extensions:
        merged[tag] = {**merged[BASE_LANGUAGE], **strings}
    return Catalogues({tag: Catalogue(tag, strings) for tag, strings in merged.items()})
