"""The one request-header rewrite: the hot path and the full path forward the same headers."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.app import Runtime, WaitingRoom
from gatekeeper.asgi import Receive, Scope, Send
from gatekeeper.gate.admission import STRIP, Admitted
from gatekeeper.gate.cookies import strip_cookie
from gatekeeper.gate.forwarding import REQUEST_ID
from gatekeeper.gate.proof import verify_proof
from tests.gate.harness import PROOF, Harness, admitted_cookie, enter, raw_get

SID = "A" * 22 + ".default"


def _without_request_id(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    ids = [v for k, v in headers if k == REQUEST_ID]
    assert len(ids) == 1  # one per request, made by the gate
    return [(k, v) for k, v in headers if k != REQUEST_ID]


async def test_hot_path_and_full_path_forward_the_same_headers() -> None:
    h = Harness()
    async with h.client() as alice:
        alice.cookies.set("theme", "dark")
        alice.cookies.set("gk_session-events", "other-room")
        fake_proof = {"x-gatekeeper-proof": "v1.forged"}
        assert (await enter(alice, "/seats")).status_code == 200  # admitted at once, claimed
        request = alice.build_request("GET", "/seats", headers=fake_proof)
        scope = {"headers": [(k.lower(), v) for k, v in request.headers.raw]}
        admission = h.gate.admission
        assert admission.quick_pass("default", scope) is None  # not seen yet: full path
        full = await alice.send(request)
        assert admission.quick_pass("default", scope) is not None  # remembered: hot path
        hot = await alice.send(alice.build_request("GET", "/seats", headers=fake_proof))
    assert full.status_code == hot.status_code == 200
    seen = [list(scope["headers"]) for scope in h.origin.seen[-2:]]
    assert _without_request_id(seen[0]) == _without_request_id(seen[1])
    forwarded = dict(seen[1])
    assert forwarded[b"cookie"] == b"theme=dark"
    assert forwarded[b"x-gatekeeper-proof"] != b"v1.forged"


_COOKIE_NAME = st.sampled_from(["gk_session", "gk_session-a", "theme", "gk", "sid", "gk_sessionx"])


_PAIRS = st.lists(st.tuples(_COOKIE_NAME, st.from_regex(r"[a-z0-9]{0,6}", fullmatch=True)))


@given(pairs=_PAIRS, before=st.booleans(), with_id=st.booleans())
def test_known_cookie_and_stripping_rewrite_alike(
    pairs: list[tuple[str, str]], before: bool, with_id: bool
) -> None:
    forwarding = Harness().gate._forwarding
    cookie = "; ".join(f"{k}={v}" for k, v in pairs).encode()
    headers = [(b"host", b"shop.test"), (b"x-gatekeeper-proof", b"forged")]
    if with_id:
        headers.append((REQUEST_ID, b"client-id"))
    headers.insert(0 if before else len(headers), (b"cookie", cookie))
    stripped = strip_cookie([(b"cookie", cookie)], "gk_session", family=True)
    known = stripped[0][1] if stripped else None
    full = forwarding.headers(headers, Admitted("default", SID, cookie=STRIP))
    hot = forwarding.headers(headers, Admitted("default", SID, cookie=known))
    if with_id:
        assert full == hot
    else:
        assert _without_request_id(full) == _without_request_id(hot)
    assert all(k != b"cookie" or b"gk_session=" not in v for k, v in full)
    assert sum(k == b"x-gatekeeper-proof" for k, _ in full) == 1


async def test_origin_never_sees_the_gate_cookie(h: Harness, alice: httpx.AsyncClient):
    await alice.get("/seats")
    alice.cookies.set("a", "1", domain="shop.test")
    alice.cookies.set("gk_session-other", "x", domain="shop.test")
    r = await alice.get("/seats")
    assert r.json()["headers"]["cookie"] == "a=1"


async def test_done_path_frees_the_place_for_the_next_visitor(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await enter(alice, "/seats")
    assert "text/html" in (await enter(bob, "/seats")).headers["content-type"]
    r = await alice.post("/checkout/complete")
    assert r.status_code == 303
    assert (await h.store.counts("default")).active == 1, "a redirect is not the end yet"
    r = await alice.get("/checkout/complete")
    assert r.status_code == 200 and r.json()["path"] == "/checkout/complete"
    assert (await h.store.counts("default")).active == 0
    # The pass ended with the place: the next request starts over in the queue.
    r = await alice.get("/seats", headers={"accept": "application/json"})
    assert r.json()["status"] == "WAITING"
    await h.tick()
    r = await bob.get("/seats", headers={"accept": "application/json"})
    assert r.json()["path"] == "/seats"


async def test_failed_done_path_keeps_the_place(h: Harness, alice: httpx.AsyncClient):
    await alice.get("/")
    await alice.get("/checkout/complete/../complete-not")
    assert (await h.store.counts("default")).active == 1


async def test_leave_command_header_frees_the_place_and_is_stripped(
    h: Harness, alice: httpx.AsyncClient
):
    await alice.get("/")
    r = await alice.get("/signal-leave")
    assert "x-gatekeeper-command" not in r.headers
    assert (await h.store.counts("default")).active == 0
    cookie = h.gate.codec.loads(r.cookies["gk_session"])
    assert cookie is not None and cookie.pass_until_ms == 0


async def test_origin_gets_a_verifiable_proof_and_never_a_forged_one(
    h: Harness, alice: httpx.AsyncClient
):
    r = await alice.get("/", headers={"x-gatekeeper-proof": "forged"})
    forwarded = r.json()["headers"]
    proof = forwarded["x-gatekeeper-proof"]
    assert proof != "forged"
    sid = verify_proof(PROOF.encode(), proof, now_s=h.clock.now // 1000)
    assert sid is not None and sid.endswith(".default")


async def test_a_known_cookie_header_is_stripped_and_proved_every_time(
    h: Harness, alice: httpx.AsyncClient
):
    ours = await admitted_cookie(h, alice)
    header = f"a=1; {ours}; gk_session-other=x; b=2".encode()
    for _ in range(3):
        status, body = await raw_get(
            h.gate, [(b"cookie", header), (b"x-gatekeeper-proof", b"forged")]
        )
        forwarded = body["headers"]
        assert status == 200 and forwarded["cookie"] == "a=1; b=2"
        sid = verify_proof(PROOF.encode(), forwarded["x-gatekeeper-proof"],
                           now_s=h.clock.now // 1000)  # fmt: skip
        assert sid is not None and sid.endswith(".default")
    only_ours = ours.encode()
    for _ in range(2):
        status, body = await raw_get(h.gate, [(b"cookie", only_ours)])
        assert status == 200 and "cookie" not in body["headers"]
    assert h.store.calls == 2  # the join and the claim


async def test_every_cookie_header_is_stripped_whatever_its_case(
    h: Harness, alice: httpx.AsyncClient
):
    ours = (await admitted_cookie(h, alice)).encode()
    for headers in (
        [(b"cookie", ours), (b"cookie", b"a=1; " + ours)],
        [(b"cookie", ours), (b"Cookie", b"a=1; " + ours)],
        [(b"Cookie", b"a=1; " + ours)],
    ):
        for _ in range(2):
            status, body = await raw_get(h.gate, headers)
            assert status == 200
            assert "gk_session" not in json.dumps(body["headers"])


class _CacheOrigin:
    """A site answering with the given Cache-Control, and a Set-Cookie of its own."""

    def __init__(self, cache_control: bytes | None) -> None:
        self.cache_control = cache_control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/plain"), (b"set-cookie", b"cart=1; Path=/")]
        if self.cache_control is not None:
            headers.append((b"cache-control", self.cache_control))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})


def _shared_cacheable(cache_control: str) -> bool:
    names = {d.strip().partition("=")[0].lower() for d in cache_control.split(",")}
    return "private" not in names and "no-store" not in names


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (None, ["private"]),
        (b"public, max-age=600", ["private", "max-age=600"]),
        (b"s-maxage=60", ["private"]),
        (b"max-age=60, s-maxage=600, public", ["private", "max-age=60"]),
        (b"private, no-store", ["private", "no-store"]),
        (b"no-store", ["private", "no-store"]),
        (b"no-cache, must-revalidate", ["private", "no-cache", "must-revalidate"]),
    ],
)
async def test_an_answer_with_our_cookie_is_never_stored_by_a_shared_cache(
    sent: bytes | None, kept: list[str]
) -> None:
    h = Harness()
    runtime = Runtime(h.settings, store=h.store, clock=h.clock)
    gate = WaitingRoom(_CacheOrigin(sent), runtime=runtime, clock=h.clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gate), base_url="https://shop.test"
    ) as alice:
        r = await alice.get("/seats")  # a new pass: our Set-Cookie beside the origin's
        ours = [c for c in r.headers.get_list("set-cookie") if c.startswith("gk_session=")]
        assert ours and "cart=1; Path=/" in r.headers.get_list("set-cookie")
        [cache_control] = r.headers.get_list("cache-control")
        assert not _shared_cacheable(cache_control)
        directives = [d.strip() for d in cache_control.split(",")]
        assert all(k in directives for k in kept)
        assert "public" not in cache_control and "s-maxage" not in cache_control
        await alice.get("/seats")  # the claim (a renewed pass)
        r = await alice.get("/seats")  # the hot path: no cookie of ours, the origin's say
        assert all(not c.startswith("gk_session=") for c in r.headers.get_list("set-cookie"))
        assert r.headers.get_list("cache-control") == ([] if sent is None else [sent.decode()])
