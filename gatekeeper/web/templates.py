"""Page templates and static files: loading, checking the placeholders, filling them in.

Templates come from the package, or from the operator (`gate.template-dir`, whose files replace
the packaged ones of the same name, and `gate.waiting-template`). A template may use only its
page's placeholders, every value arrives HTML-escaped, and a stray `$` is refused at startup.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from functools import cache
from importlib import resources
from string import Template

from gatekeeper.errors import ConfigError

_PACKAGE = "gatekeeper.web"
_CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}


def template_text(name: str, template_dir: str | None) -> tuple[str, str]:
    """(text, origin) of template `name`: the operator's file in `template_dir` when there is
    one, else the packaged one."""
    if template_dir:
        path = os.path.join(template_dir, name)
        if os.path.isfile(path):
            return read_template(path), path
    return packaged_template(name), name


# A template compiled once into alternating literal text and placeholder names, so a render is
# one join rather than a regex pass over the whole page.
Compiled = tuple[tuple[str, str | None], ...]


def compile_template(text: str, allowed: frozenset[str], origin: str) -> Compiled:
    """A template's text checked against the placeholders it may use (`origin` names it in
    errors) and compiled for `fill`."""
    pattern = Template.pattern
    parts: list[tuple[str, str | None]] = []
    literal: list[str] = []
    pos = 0
    for match in pattern.finditer(text):
        literal.append(text[pos : match.start()])
        pos = match.end()
        if match.group("escaped") is not None:
            literal.append("$")
            continue
        name = match.group("named") or match.group("braced")
        if name is None:
            line = text.count("\n", 0, match.start()) + 1
            raise ConfigError(f"template {origin}: stray '$' on line {line} (write $$ for a $)")
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise ConfigError(f"template {origin}: unknown placeholder ${name} (known: {known})")
        parts.append(("".join(literal), name))
        literal = []
    literal.append(text[pos:])
    parts.append(("".join(literal), None))
    return tuple(parts)


def fill(compiled: Compiled, values: dict[str, str]) -> bytes:
    """A compiled template with every placeholder replaced (the values arrive escaped)."""
    out: list[str] = []
    for literal, name in compiled:
        out.append(literal)
        if name is not None:
            out.append(values[name])
    return "".join(out).encode("utf-8")


def prefill(compiled: Compiled, values: dict[str, str]) -> Compiled:
    """`compiled` with the placeholders in `values` filled in (escaped, as `fill` takes them)
    and the others left for `fill`: the parts of a page that are the same for many visitors
    are joined once."""
    parts: list[tuple[str, str | None]] = []
    literal = ""
    for text, name in compiled:
        literal += text
        if name is not None and name in values:
            literal += values[name]
        else:
            parts.append((literal, name))
            literal = ""
    return tuple(parts)


@cache
def packaged_template(name: str) -> str:
    """The text of a template shipped in the package."""
    return (resources.files(_PACKAGE) / "templates" / name).read_text(encoding="utf-8")


def read_template(path: str) -> str:
    """The text of an operator's template file."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"template {path}: cannot read it ({exc})") from exc


@cache
def _static_files() -> dict[str, tuple[bytes, str]]:
    files: dict[str, tuple[bytes, str]] = {}
    for entry in (resources.files(_PACKAGE) / "static").iterdir():
        if not entry.is_file() or entry.name.startswith("."):
            continue
        suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
        ctype = _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(entry.name)[0]
        files[entry.name] = (entry.read_bytes(), ctype or "application/octet-stream")
    return files


def static_file(name: str) -> tuple[bytes, str] | None:
    """Content and content-type of a packaged static file, or None for any other name."""
    if not name or "/" in name or "\\" in name or ".." in name or "\0" in name:
        return None
    return _static_files().get(name)


@cache
def _static_version(name: str) -> str:
    found = static_file(name)
    return hashlib.sha256(found[0]).hexdigest()[:12] if found else "0"


def asset_url(prefix: str, name: str) -> str:
    """The URL of a static file under `prefix`, with its content hash."""
    # The content hash in the query lets the gate serve these with a long cache lifetime.
    return f"{prefix.rstrip('/')}/{name}?v={_static_version(name)}"
