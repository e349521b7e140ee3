"""Regressions: malformed input to the JSON API and the operator API is a 4xx, never a 500.

Each case here answered 500 before the shared JSON body reader (web/json_body.py).
"""

from __future__ import annotations

import json

import pytest

from gatekeeper.store.base import Store
from gatekeeper.store.memory import MemoryStore
from gatekeeper.web.json_body import MAX_DEPTH, BadJSON, parse_object
from tests.conftest import FakeClock
from tests.web.rig import ADMIN, API, AUTH, Reply, api_only_app, assert_sane, call

JSON = (b"content-type", b"application/json")


def bad_request(reply: Reply) -> str:
    assert reply.status == 400, (reply.status, reply.body[:200])
    assert reply.headers[b"content-type"] == b"application/json"
    error = json.loads(reply.body)["error"]
    assert error["code"] == "bad_request"
    return str(error["message"])


async def join(store: Store, clock: FakeClock, body: bytes) -> Reply:
    app = api_only_app(store, clock)
    return await call(app, "POST", f"{API}/sessions", headers=[JSON], body=body)


# The join API, against every backend (the lone surrogate was a 500 with Redis only).


async def test_join_body_nested_4000_deep_is_400(store: Store, clock: FakeClock):
    message = bad_request(await join(store, clock, b"[" * 4000 + b"]" * 4000))
    assert "deep" in message


async def test_join_body_with_a_5000_digit_integer_is_400(store: Store, clock: FakeClock):
    message = bad_request(await join(store, clock, b'{"eventId":"E1","n":' + b"7" * 5000 + b"}"))
    assert "number" in message


@pytest.mark.parametrize(
    "body",
    [b'{"userId": "\\ud800"}', b'{"userId": "ok\\udfffok"}', b'{"eventId": "\\udc00"}',
     b'{"\\ud800": 1}', b'{"x": [{"y": "\\ud83d"}]}'],
)  # fmt: skip
async def test_join_body_with_a_lone_surrogate_is_400(store: Store, clock: FakeClock, body: bytes):
    assert "surrogate" in bad_request(await join(store, clock, body))


async def test_a_surrogate_pair_is_fine(store: Store, clock: FakeClock):
    reply = await join(store, clock, b'{"userId": "\\ud83d\\ude00"}')
    assert reply.status == 202


async def test_absurd_content_length_is_413_not_500(clock: FakeClock):
    app = api_only_app(MemoryStore(clock), clock)
    for path, auth in ((f"{API}/sessions", []), (f"{ADMIN}/rooms/E1", [AUTH])):
        method = "POST" if path.startswith(API) else "PATCH"
        headers = [*auth, (b"content-length", b"9" * 5000)]
        reply = await call(app, method, path, headers=headers, body=b"{}")
        assert reply.status == 413
        assert json.loads(reply.body)["error"]["code"] == "body_too_large"


# The operator API.


async def admin(method: str, path: str, body: bytes = b"", query: bytes = b"") -> Reply:
    clock = FakeClock()
    app = api_only_app(MemoryStore(clock), clock)
    return await call(app, method, ADMIN + path, query=query, headers=[AUTH, JSON], body=body)


@pytest.mark.parametrize("body", [b'{"mode": []}', b'{"mode": {}}', b'{"mode": [[]]}'])
async def test_unhashable_mode_is_400(body: bytes):
    assert "mode" in bad_request(await admin("PATCH", "/rooms/E1", body))


@pytest.mark.parametrize("path", ["/rooms/E1", "/settings"])
async def test_admin_body_nested_2040_deep_is_400(path: str):
    assert "deep" in bad_request(await admin("PATCH", path, b"[" * 2040 + b"]" * 2040))


async def test_settings_body_deep_beside_a_valid_field_is_400():
    # The whole body went into the audit entry, re-encoded: a RecursionError there too.
    deep = b"[" * 900 + b"]" * 900
    assert "deep" in bad_request(
        await admin("PATCH", "/settings", b'{"rateMs":null,"x":' + deep + b"}")
    )


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
async def test_non_finite_numbers_are_400(constant: bytes):
    # They went into the audit entry as `Infinity`/`NaN`, which is not JSON either.
    for path, field in (("/settings", b"rateMs"), ("/rooms/E1", b"capacity")):
        bad_request(await admin("PATCH", path, b'{"' + field + b'":null,"x":' + constant + b"}"))


async def test_audit_limit_of_5000_digits_is_clamped_not_500():
    clock = FakeClock()
    app = api_only_app(MemoryStore(clock), clock)
    for _ in range(3):
        await call(app, "POST", f"{ADMIN}/rooms/E1:pause", headers=[AUTH])
    reply = await call(app, "GET", f"{ADMIN}/audit", query=b"limit=" + b"9" * 5000, headers=[AUTH])
    assert reply.status == 200
    assert len(json.loads(reply.body)["entries"]) == 3
    reply = await call(
        app, "GET", f"{ADMIN}/audit", query=b"limit=" + b"0" * 5000 + b"2", headers=[AUTH]
    )
    assert len(json.loads(reply.body)["entries"]) == 2


async def test_a_lone_surrogate_in_the_path_is_404():
    clock = FakeClock()
    app = api_only_app(MemoryStore(clock), clock)
    routes = [
        ("GET", f"{API}/sessions/\ud800"),
        ("POST", f"{API}/sessions/\ud800:leave"),
        ("GET", f"{ADMIN}/rooms/\udfff"),
        ("POST", f"{ADMIN}/sessions/\ud800:revoke"),
    ]
    for method, path in routes:
        reply = await call(app, method, path, headers=[AUTH])
        assert reply.status == 404
        assert_sane(reply.status, reply.headers[b"content-type"].decode(), reply.body, path)


# The reader itself.


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(b"", {}), (b"  \n", {}),
     (b'{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
     (b'\xef\xbb\xbf{"a": 1}', {"a": 1}), ('{"a": "é"}'.encode("utf-16"), {"a": "é"}),
     (b'{"s": "[[[[{{{{\\"\\\\"}', {"s": '[[[[{{{{"\\'}),
     (b'{"a":' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH, None),
     (b'{"n": -' + b"9" * 19 + b"}", {"n": -(10**19 - 1)})],
)  # fmt: skip
def test_reader_accepts_what_json_loads_did(raw: bytes, expected: object):
    parsed = parse_object(raw)
    assert parsed == (json.loads(raw) if expected is None else expected)


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b'"x"', b"1", b"null", b"\xff\xfe\xfd", b'{"a": "\xff"}', b'{"a": NaN}',
     b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), b'{"n": ' + b"1" * 21 + b"}",
     b'{"a": "\\ud800"}', b"]" * 5000 + b"[" * 5000, b'"\\' + b'"\\' * 3000],
)  # fmt: skip
def test_reader_refuses_with_bad_json(raw: bytes):
    with pytest.raises(BadJSON):
        parse_object(raw)
