"""Cookie and Set-Cookie handling on raw ASGI header lists."""

from __future__ import annotations

import re
from dataclasses import dataclass

from gatekeeper.asgi import Headers, HeaderSeq

_COOKIE = b"cookie"
_OWS = b" \t"
# RFC 6265 token (cookie-name) and cookie-octet (cookie-value), as bytes.
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(rb"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
# Path and Domain attribute values: printable ASCII without ';'.
_ATTR = re.compile(rb"[\x20-\x3a\x3c-\x7e]*")
_SAME_SITE = {"lax": b"Lax", "strict": b"Strict", "none": b"None"}


def _name_bytes(name: str) -> bytes:
    # "replace" keeps the never-raise promise even for names with lone surrogates.
    return name.encode("utf-8", "replace")


def _is_cookie_header(key: bytes) -> bool:
    # ASGI servers lower-case names, but nothing forces hand-built scopes to.
    return key == _COOKIE or key.lower() == _COOKIE


def read_cookie(headers: HeaderSeq, name: str) -> str | None:
    """The value of cookie `name` in the request's Cookie headers (first one wins), else None.

    Surrounding whitespace and one pair of double quotes are removed; never raises.
    """
    want = _name_bytes(name)
    for key, value in headers:
        if want not in value or not _is_cookie_header(key):
            continue
        for pair in value.split(b";"):
            found, sep, val = pair.partition(b"=")
            if sep and found.strip(_OWS) == want:
                val = val.strip(_OWS)
                if len(val) >= 2 and val[0] == 0x22 and val[-1] == 0x22:
                    val = val[1:-1]
                return val.decode("latin-1")
    return None


def strip_cookie(headers: HeaderSeq, name: str, *, family: bool = False) -> Headers:
    """`headers` with every cookie `name` removed from the Cookie headers.

    With `family`, cookies named `name-<anything>` and `name~<anything>` go too (the per-room
    cookies and the challenge answers).

    Other cookies keep their bytes and order; a Cookie header left empty is dropped; other
    headers are untouched.
    """
    want = _name_bytes(name)
    out: Headers = []
    for header in headers:
        key, value = header
        if want not in value or not _is_cookie_header(key):
            out.append(header)
            continue
        pairs = value.split(b";")
        kept = [p for p in pairs if b"=" not in p or not _ours(p, want, family)]
        if len(kept) == len(pairs):
            out.append(header)
            continue
        rest = b";".join(kept).lstrip(_OWS)
        if rest.strip(b" \t;"):
            out.append((key, rest))
    return out


def _ours(pair: bytes, want: bytes, family: bool) -> bool:
    found = pair.partition(b"=")[0].strip(_OWS)
    return found == want or (
        family and (found.startswith(want + b"-") or found.startswith(want + b"~"))
    )


@dataclass(frozen=True, slots=True)
class CookieAttributes:
    """The attributes of a Set-Cookie header: lifetime, scope and how browsers may send it."""

    secure: bool
    same_site: str
    max_age_s: int = 0
    path: str = "/"
    domain: str | None = None
    http_only: bool = True


def _attributes(a: CookieAttributes) -> bytes:
    attrs = b""
    path_b = a.path.encode("ascii")
    if not path_b.startswith(b"/") or not _ATTR.fullmatch(path_b):
        raise ValueError(f"invalid cookie path: {a.path!r}")
    attrs += b"; Path=" + path_b
    if a.domain is not None:
        domain_b = a.domain.encode("ascii")
        if not domain_b or b" " in domain_b or not _ATTR.fullmatch(domain_b):
            raise ValueError(f"invalid cookie domain: {a.domain!r}")
        attrs += b"; Domain=" + domain_b
    site = _SAME_SITE.get(a.same_site.lower())
    if site is None:
        raise ValueError(f"invalid SameSite value: {a.same_site!r} (lax, strict or none)")
    if site == b"None" and not a.secure:
        # Browsers drop SameSite=None cookies that are not Secure.
        raise ValueError("SameSite=None requires secure=True")
    if a.secure:
        attrs += b"; Secure"
    return attrs + b"; SameSite=" + site


def _checked_name(name: str) -> bytes:
    name_b = name.encode("ascii")
    if not _NAME.fullmatch(name_b):
        raise ValueError(f"invalid cookie name: {name!r}")
    return name_b


def set_cookie_header(name: str, value: str, attributes: CookieAttributes) -> tuple[bytes, bytes]:
    """A `set-cookie` header; raises ValueError on a name, value or attribute a browser rejects."""
    name_b = _checked_name(name)
    value_b = value.encode("ascii")
    if not _VALUE.fullmatch(value_b):
        raise ValueError("cookie value contains characters not allowed in a cookie")
    if attributes.max_age_s < 0:
        raise ValueError(f"max_age_s must be >= 0, got {attributes.max_age_s}")
    header = name_b + b"=" + value_b + b"; Max-Age=" + str(attributes.max_age_s).encode("ascii")
    header += _attributes(attributes)
    if attributes.http_only:
        header += b"; HttpOnly"
    return (b"set-cookie", header)


def delete_cookie_header(name: str, attributes: CookieAttributes) -> tuple[bytes, bytes]:
    """A `set-cookie` header removing cookie `name`; path and domain must match the original."""
    header = _checked_name(name) + b"=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
    header += _attributes(attributes)
    return (b"set-cookie", header + b"; HttpOnly")
