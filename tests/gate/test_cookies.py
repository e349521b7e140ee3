"""Tests for Cookie header parsing/stripping and Set-Cookie building on raw ASGI headers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.gate.cookies import (
    CookieAttributes,
    Headers,
    delete_cookie_header,
    read_cookie,
    set_cookie_header,
    strip_cookie,
)

NAME = "gk"


def cookie(*values: bytes) -> Headers:
    return [(b"host", b"example.com")] + [(b"cookie", v) for v in values]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((b"gk=abc",), "abc"),
        ((b"a=1; gk=abc; b=2",), "abc"),
        ((b"a=1;gk=abc;b=2",), "abc"),
        ((b"  a=1 ;   gk =  abc  ; b=2",), "abc"),
        ((b"\tgk=abc\t",), "abc"),
        ((b'gk="abc"',), "abc"),
        ((b'gk="',), '"'),
        ((b"gk=",), ""),
        ((b"gk=first; gk=second",), "first"),
        ((b"a=1", b"gk=second-header"), "second-header"),
        ((b"gk=one", b"gk=two"), "one"),
        ((b"gk=a=b=c",), "a=b=c"),
        ((b"xgk=1; gkx=2; x=gk",), None),
        ((b"GK=upper",), None),
        ((b"gk",), None),
        ((b"",), None),
        ((b";;;; ;",), None),
        ((b"\xff\xfe; gk=ok; \x00\x01",), "ok"),
        ((b"gk=caf\xc3\xa9",), "caf\xc3\xa9"),
        ((), None),
    ],
)
def test_read_cookie(values: tuple[bytes, ...], expected: str | None) -> None:
    assert read_cookie(cookie(*values), NAME) == expected


def test_read_ignores_other_headers_and_accepts_mixed_case_name() -> None:
    headers = [(b"x-cookie", b"gk=no"), (b"set-cookie", b"gk=no"), (b"Cookie", b"gk=yes")]
    assert read_cookie(headers, NAME) == "yes"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"gk=abc", None),
        (b"a=1; gk=abc; b=2", b"a=1; b=2"),
        (b"gk=abc; a=1", b"a=1"),
        (b"a=1; gk=abc", b"a=1"),
        (b"a=1;gk=abc;b=2", b"a=1;b=2"),
        (b"gk=1; gk=2", None),
        (b"gk=1;", None),
        (b" gk = 1 ; ; ", None),
        (b'a="x y";  gk=1;b=\xff\x00', b'a="x y";b=\xff\x00'),
        (b"xgk=1; gkx=2; x=gk", b"xgk=1; gkx=2; x=gk"),
        (b"gk; a=1", b"gk; a=1"),
    ],
)
def test_strip_cookie(value: bytes, expected: bytes | None) -> None:
    headers = [(b"host", b"h"), (b"cookie", value), (b"accept", b"*/*")]
    out = strip_cookie(headers, NAME)
    middle = [] if expected is None else [(b"cookie", expected)]
    assert out == [(b"host", b"h"), *middle, (b"accept", b"*/*")]
    assert read_cookie(out, NAME) is None


def test_strip_every_cookie_header_and_keep_others_identical() -> None:
    untouched = (b"cookie", b"a=1; b=2")
    headers = [(b"cookie", b"gk=1"), untouched, (b"cookie", b"c=3; gk=2"), (b"x", b"gk=3")]
    out = strip_cookie(headers, NAME)
    assert out == [untouched, (b"cookie", b"c=3"), (b"x", b"gk=3")]
    assert out[0] is untouched
    assert headers[0] == (b"cookie", b"gk=1")  # input not mutated


_octet = st.sampled_from([c for c in "abcXYZ019!#$%&'*+-.^_`|~/:<>?@[]" if c not in ";"]).map(str)
_names = st.text("abcdgkxyz_-", min_size=1, max_size=4)
_values = st.text(_octet, max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_names, _values), max_size=6), st.sampled_from(["; ", ";", " ;  "]))
def test_strip_preserves_other_cookies_in_order(pairs: list[tuple[str, str]], sep: str) -> None:
    raw = sep.join(f"{n}={v}" for n, v in pairs).encode()
    out = strip_cookie([(b"cookie", raw)], NAME)
    others = [f"{n}={v}" for n, v in pairs if n != NAME]
    if not others:  # an empty header we did not touch passes through as it was
        assert out == ([] if pairs else [(b"cookie", raw)])
        return
    assert [h[0] for h in out] == [b"cookie"]
    kept = [p.strip(" \t") for p in out[0][1].decode().split(";")]
    assert kept == others
    for name, value in pairs:  # the first of each other name still reads back
        if name != NAME:
            assert read_cookie(out, name) == value
            break


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=60)), max_size=5),
    st.text(max_size=5),
)
def test_garbage_never_raises(headers: Headers, name: str) -> None:
    read_cookie(headers, name)
    read_cookie(headers, NAME)
    out = strip_cookie(headers, NAME)
    assert read_cookie(out, NAME) is None


def test_set_cookie_defaults() -> None:
    key, value = set_cookie_header(
        NAME, "v.1~x", CookieAttributes(max_age_s=600, secure=True, same_site="lax")
    )
    assert key == b"set-cookie"
    assert value == b"gk=v.1~x; Max-Age=600; Path=/; Secure; SameSite=Lax; HttpOnly"


def test_set_cookie_all_flags() -> None:
    _, value = set_cookie_header(
        NAME,
        "v",
        CookieAttributes(
            max_age_s=0,
            secure=False,
            same_site="Strict",
            path="/shop",
            domain="example.com",
            http_only=False,
        ),
    )
    assert value == b"gk=v; Max-Age=0; Path=/shop; Domain=example.com; SameSite=Strict"
    _, value = set_cookie_header(
        NAME, "v", CookieAttributes(max_age_s=5, secure=True, same_site="none")
    )
    assert b"; Secure" in value and value.endswith(b"; SameSite=None; HttpOnly")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "g k"},
        {"name": ""},
        {"name": "gk;"},
        {"name": "gké"},
        {"value": "a b"},
        {"value": "a;b"},
        {"value": 'a"b'},
        {"value": "a,b"},
        {"value": "a\\b"},
        {"value": "é"},
        {"max_age_s": -1},
        {"same_site": "sometimes"},
        {"same_site": "none", "secure": False},
        {"path": "shop"},
        {"path": "/a;b"},
        {"domain": "a.com; Secure"},
        {"domain": ""},
    ],
)
def test_set_cookie_rejects_bad_input(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "name": NAME,
        "value": "v",
        "max_age_s": 1,
        "secure": True,
        "same_site": "lax",
        **kwargs,
    }
    name, value = args.pop("name"), args.pop("value")
    with pytest.raises(ValueError):
        set_cookie_header(name, value, CookieAttributes(**args))  # type: ignore[arg-type]


def test_delete_cookie() -> None:
    key, value = delete_cookie_header(NAME, CookieAttributes(secure=True, same_site="lax"))
    assert key == b"set-cookie"
    assert value == (
        b"gk=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; Secure; SameSite=Lax;"
        b" HttpOnly"
    )
    _, value = delete_cookie_header(
        NAME,
        CookieAttributes(path="/shop", domain="example.com", secure=False, same_site="strict"),
    )
    assert b"; Path=/shop; Domain=example.com; SameSite=Strict" in value
    assert b"Secure" not in value
    with pytest.raises(ValueError):
        delete_cookie_header("bad name", CookieAttributes(secure=True, same_site="lax"))
