"""Property: no client input gets a 5xx from the JSON API or the operator API.

Every route of both (join, poll, leave; admin rooms list/get/patch/pause/resume/queue-all/
passthrough/close/reopen, settings get/patch, revoke, audit), unknown paths, health, under
arbitrary methods, paths built from nasty segments, query strings, headers and bodies (deep JSON,
huge numbers anywhere, lone surrogates, wrong types, random bytes, bad UTF-8). Each answer must
be < 500 and, where the route answers JSON, JSON (the error shape on a 4xx).

Two drivers: httpx.ASGITransport, what a real client can send; and the raw ASGI caller of
tests/web/rig.py, what no client can send but an ASGI server might pass on (a lone surrogate in
the decoded path, odd methods, a bogus Content-Length). The embedded store runs the bulk; a real
Redis the surrogate-heavy run (a lone surrogate cannot be encoded to UTF-8 for Redis).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gatekeeper.config.settings import RedisSettings
from gatekeeper.store.base import Store
from gatekeeper.store.memory import MemoryStore
from gatekeeper.store.redis import RedisStore
from tests.conftest import FakeClock, unique_prefix
from tests.web.rig import ADMIN, API, AUTH, api_only_app, assert_sane, call

T = TypeVar("T")
MAX_URL = 65_536  # httpx's limit
# A failing example's repr is long (a 9 KB body): let Hypothesis print it anyway.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def repeat(unit: str, times: int, before: str = "", after: str = "") -> st.SearchStrategy[str]:
    """`before + unit * times + after`, built on draw (a long literal would be repr'd)."""
    return st.just((before, unit, times, after)).map(lambda p: p[0] + p[1] * p[2] + p[3])


# --- paths -----------------------------------------------------------------------------------

SID = "@SID@"  # replaced by a real session id, created before the run
NASTY = [
    "", ".", "..", "%2E%2E", "%2e", "%3F", "%23", "%3B", "%2F", "%5C", "%3A", "%25", "%00",
    "%ED%A0%80", "%FF", "%C0%AF", "%zz", "%", "?", "#", ";", "/", "\\", ":", "::", ":leave",
    ":revoke", ":pause", "\x00", "\ud800", "\udfff", "\ud83d\ude00", "é", "E1", "default",
    "a" * 64, "a" * 65, "x" * 22 + ".E1", "x" * 22 + ".default", "x" * 22 + "." + "r" * 65,
    SID, SID + "x", "{sid}", "{tag}", "rooms", "sessions",
]  # fmt: skip
ACTIONS = [
    "pause", "resume", "queue-all", "passthrough", "close", "reopen", "leave", "revoke", "", "PAUSE"
]  # fmt: skip
# Every route, with the method it serves ({0} {1}: segments, {2}: an action after a colon).
ROUTES = [
    # the JSON API: join, poll, leave
    ("POST", API + "/sessions"),
    ("GET", API + "/sessions/{0}"), ("GET", API + "/sessions/" + SID),
    ("POST", API + "/sessions/{0}:leave"), ("POST", API + "/sessions/" + SID + ":leave"),
    ("GET", API + "/sessions/{0}/{1}"), ("GET", API), ("GET", API + "/{0}"),
    ("GET", API + "{0}"),
    # the operator API: rooms list/get/patch/actions, settings, revoke, audit
    ("GET", ADMIN + "/rooms"), ("GET", ADMIN + "/rooms/{0}"), ("GET", ADMIN + "/rooms/E1"),
    ("PATCH", ADMIN + "/rooms/E1"), ("PATCH", ADMIN + "/rooms/default"),
    ("PATCH", ADMIN + "/rooms/{0}"), ("POST", ADMIN + "/rooms/E1:{2}"),
    ("POST", ADMIN + "/rooms/{0}:{2}"), ("GET", ADMIN + "/settings"),
    ("PATCH", ADMIN + "/settings"), ("PATCH", ADMIN + "/settings/{0}"),
    ("POST", ADMIN + "/sessions/{0}:revoke"), ("POST", ADMIN + "/sessions/" + SID + ":revoke"),
    ("GET", ADMIN + "/audit"), ("GET", ADMIN + "/audit/{0}"), ("GET", ADMIN),
    ("GET", ADMIN + "/{0}"),
    # everything else in API-only mode
    ("GET", "/"), ("GET", "/{0}"), ("GET", "/{0}/{1}"), ("GET", "/healthz"),
    ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/_gatekeeper/healthz"),
    ("GET", "/_gatekeeper/{0}"),
]  # fmt: skip
BODY_ROUTES = [r for r in ROUTES if r[0] in ("POST", "PATCH")]
JOIN = [("POST", API + "/sessions")]
NO_SURROGATE = st.characters(exclude_categories=("Cs",))
LONE = st.integers(0xD800, 0xDFFF).map(chr)
segments = st.one_of(
    st.sampled_from(NASTY),
    repeat("x", 5000),
    repeat("\ud800", 100, "x" * 22 + "."),
    st.text(NO_SURROGATE, max_size=12),
    st.text(st.one_of(NO_SURROGATE, LONE), max_size=12),
)
actions = st.one_of(st.sampled_from(ACTIONS), segments)

# --- methods, queries, headers ---------------------------------------------------------------

COMMON = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
methods = st.one_of(
    st.sampled_from(COMMON),
    st.sampled_from(["TRACE", "CONNECT", "BREW", "PROPFIND", "get", "Post", "X-Y"]),
)
raw_methods = st.one_of(methods, st.text(min_size=1, max_size=10))
lengths = st.one_of(st.sampled_from([19, 20, 21, 4300, 4301, 5000]), st.integers(1, 6000))
digits = lengths.map(lambda n: "9" * n)
queries = st.one_of(
    st.just(""),
    st.builds(lambda d: "limit=" + d, digits),
    st.sampled_from(
        ["limit=0", "limit=1", "limit=-1", "limit=1e3", "limit=%31", "limit=", "limit",
         "limit=5&limit=x", "limit=\uff11", "a=b&&=&limit=3"]
    ),
    repeat("0", 5000, "limit=", "7"),
    repeat("9", 60_000, "limit="),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
)  # fmt: skip
auth_headers = st.sampled_from(
    [[AUTH]] * 6 + [[], [(b"authorization", b"Bearer wrong")], [(b"authorization", b"\xff" * 9)]]
)

# --- bodies ----------------------------------------------------------------------------------

FIELDS = ["eventId", "userId", "mode", "capacity", "batchSize", "newVisitorsPerMinute", "rateMs"]
texts = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["E1", "default", "open", "paused", "queue-all", "passthrough", "closed"]),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=4), LONE, st.text(max_size=4)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.integers(),
    st.floats(),  # NaN and ±Infinity included: json.dumps writes them as NaN/Infinity
    texts,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
keys = st.one_of(st.sampled_from(FIELDS), texts)
objects = st.dictionaries(keys, values, max_size=5)
depths = st.one_of(st.sampled_from([31, 32, 33, 999, 1000, 2040, 4000]), st.integers(1, 5000))
# JSON text that is valid (or nearly) but must not get past the reader, or must be refused by
# the route: deep nesting, numbers out of range, non-finite constants, lone surrogates, and
# values of the wrong type for any field.
poisons = st.one_of(
    depths.map(lambda n: "[" * n + "]" * n),
    depths.map(lambda n: '{"a":' * n + "0" + "}" * n),
    digits,
    digits.map(lambda d: "-" + d),
    digits.map(lambda d: "0." + d),
    digits.map(lambda d: "1e" + d),
    st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "1.5e308", "-0"]),
    st.sampled_from(['"\\ud800"', '"a\\udfffb"', '"\\ud83d"', '"\\ude00\\ud83d"', '"\\udbff"']),
    st.sampled_from(["[]", "{}", "[[]]", '{"":{}}', "true", "false", "null", "0", "-1", "1.5",
                     '""', '"x"', '"open"', '"OPEN"', "1e2", "10000001", "60001"]),
)  # fmt: skip
wrappers = st.sampled_from(["{}", "[{}]", '{{"k":{}}}', "[0,{}]"])


def poisoned(obj: dict[str, object], key: str, wrap: str, poison: str) -> bytes:
    """`obj` with `key: poison` (wrapped once, maybe) added at its end, as JSON text."""
    head = json.dumps(obj)[:-1] + (", " if obj else "")
    return (head + json.dumps(key) + ":" + wrap.format(poison) + "}").encode()


encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
poisoned_bodies = st.builds(poisoned, objects, keys, wrappers, poisons)
bodies = st.one_of(
    poisoned_bodies,
    poisoned_bodies,
    poisons.map(str.encode),  # as the whole body: mostly not an object
    st.just(b""),
    objects.map(lambda o: json.dumps(o).encode()),
    st.builds(lambda o, e: json.dumps(o, ensure_ascii=False).encode(e, "surrogatepass"),
              objects, encodings),
    values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from(
        [b'{"userId":"\xff"}', b'{"eventId":"\xc0\xaf"}', b"\xef\xbb\xbf{}", b"\xef\xbb\xbf",
         b'{"x":"\\', b'{"a":"\\u12"}', b'{"a":1,}', b"{}{}", b'{"a":1}x']
    ),
    repeat(" ", 9000).map(str.encode),
    repeat(" ", 8190, "{", "}").map(str.encode),
)  # fmt: skip


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: bytes


@st.composite
def requests(
    draw: st.DrawFn,
    routes: list[tuple[str, str]] = ROUTES,
    any_method: st.SearchStrategy[str] = methods,
    any_body: st.SearchStrategy[bytes] = bodies,
) -> Request:
    """A route, its method mostly (else any), nasty segments, a query, maybe the token, a body."""
    method, template = draw(st.sampled_from(routes))
    if draw(st.integers(0, 3)) == 0:
        method = draw(any_method)
    path = template.format(draw(segments), draw(segments), draw(actions))
    return Request(method, path, draw(queries), draw(auth_headers), draw(any_body))


length_headers = st.one_of(
    st.sampled_from([None, None, None, None, b"-1", b"abc", b"0", b" 5 "]),
    repeat("9", 5000).map(str.encode),
)


# --- the run ---------------------------------------------------------------------------------


class Rig:
    """One app and one event loop for every example of a run (state carries over, as it would
    for a live process), and a real session id for the routes that take one."""

    def __init__(self, runner: asyncio.Runner, store: Store, clock: FakeClock) -> None:
        self.runner = runner
        self.app = api_only_app(store, clock)
        joined = self.run(call(self.app, "POST", f"{API}/sessions", body=b'{"eventId":"E1"}'))
        self.sid = json.loads(joined.body)["sessionId"]
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gk", trust_env=False
        )

    def run(self, coro: Coroutine[object, object, T]) -> T:
        return self.runner.run(coro)

    def path(self, request: Request) -> str:
        return request.path.replace(SID, self.sid)

    def over_httpx(self, request: Request) -> None:
        path = self.path(request)
        # What a client can put in a URL: percent-encoded UTF-8 (a lone surrogate as its
        # surrogatepass bytes, which no decoder turns back into one); `%` passes as is, so the
        # pre-encoded segments reach the app decoded (`%3F` → `?`).
        url = "http://gk" + quote(path, safe="/%:;@!$&'()*+,=", errors="surrogatepass")
        url += "?" + quote(request.query, safe="=&%+") if request.query else ""
        assume(len(url) <= MAX_URL)  # httpx refuses longer (the raw ASGI run sends them)
        r = self.run(
            self.client.request(request.method, url, headers=request.headers, content=request.body)
        )
        head = request.method.upper() == "HEAD"  # httpx drops the body of a HEAD answer
        content_type = r.headers.get("content-type", "")
        assert_sane(r.status_code, content_type, r.content, r.url.path, head=head)

    def over_asgi(self, request: Request, length: bytes | None) -> None:
        path = self.path(request)
        headers = list(request.headers)
        if length is not None:
            headers.append((b"content-length", length))
        reply = self.run(
            call(
                self.app,
                request.method,
                path,
                query=request.query.encode("utf-8", "surrogatepass"),
                headers=headers,
                body=request.body,
            )
        )
        content_type = reply.headers.get(b"content-type", b"").decode()
        assert_sane(reply.status, content_type, reply.body, path)

    def close(self) -> None:
        self.run(self.client.aclose())


@contextmanager
def rig(store: Callable[[FakeClock], Store]) -> Iterator[Rig]:
    clock = FakeClock()
    with asyncio.Runner() as runner:
        opened = store(clock)
        the_rig = Rig(runner, opened, clock)
        try:
            yield the_rig
        finally:
            the_rig.close()
            runner.run(opened.aclose())


def memory(clock: FakeClock) -> Store:
    return MemoryStore(clock)


def _known(method: str, path: str, body: bytes = b"", query: str = "") -> Request:
    return Request(method, path, query, [AUTH], body)


# The cases that answered 500 before web/json_body.py: always run, before the generated ones.
KNOWN = [
    _known("POST", API + "/sessions", b"[" * 4000 + b"]" * 4000),
    _known("POST", API + "/sessions", b'{"n":' + b"1" * 5000 + b"}"),
    _known("POST", API + "/sessions", b'{"userId":"\\ud800"}'),
    _known("PATCH", ADMIN + "/rooms/E1", b'{"mode":[]}'),
    _known("PATCH", ADMIN + "/rooms/E1", b'{"mode":{}}'),
    _known("PATCH", ADMIN + "/rooms/E1", b"[" * 2040 + b"]" * 2040),
    _known("GET", ADMIN + "/audit", query="limit=" + "9" * 5000),
]


def known(test: Callable[..., None]) -> Callable[..., None]:
    for request in reversed(KNOWN):
        test = example(request)(test)
    return test


def test_every_route_over_httpx() -> None:
    with rig(memory) as r:

        @FUZZ
        @given(requests())
        @known
        def check(request: Request) -> None:
            r.over_httpx(request)

        check()


def test_body_routes_over_httpx() -> None:
    with rig(memory) as r:

        @FUZZ
        @given(requests(BODY_ROUTES))
        def check(request: Request) -> None:
            r.over_httpx(request)

        check()


def test_every_route_over_raw_asgi() -> None:
    # Lone surrogates reach the decoded path, methods are any text, Content-Length is bogus.
    with rig(memory) as r:

        @FUZZ
        @given(requests(ROUTES, raw_methods), length_headers)
        def check(request: Request, length: bytes | None) -> None:
            r.over_asgi(request, length)

        check()


# Lone surrogates against Redis (fewer examples: a round trip each): a string that reached it
# could not be encoded to UTF-8.
surrogate_bodies = st.one_of(
    st.builds(
        lambda key, a, s, b: json.dumps({"eventId": "E1", key: a + s + b}).encode(),
        st.sampled_from(["userId"] * 4 + [*FIELDS, "x"]),  # userId is the one stored
        st.text(max_size=4),
        LONE,
        st.text(max_size=4),
    ),
    st.builds(lambda s: json.dumps({s: "E1"}).encode(), LONE),
    poisoned_bodies,
)


@pytest.mark.redis
def test_no_5xx_with_redis_on_lone_surrogates(redis_url: str) -> None:
    def redis(clock: FakeClock) -> Store:
        return RedisStore.open(
            RedisSettings(url=redis_url, key_prefix=unique_prefix()), clock=clock
        )

    with rig(redis) as r:

        @settings(FUZZ, max_examples=60)
        @given(requests(JOIN * 4 + BODY_ROUTES, raw_methods, surrogate_bodies))
        @known
        def check(request: Request) -> None:
            r.over_asgi(request, None)

        check()
