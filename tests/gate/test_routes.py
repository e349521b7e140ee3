"""Which requests are gated: bypass paths, path variants, rooms named by the path."""

from __future__ import annotations

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gate.harness import Harness, gate_settings


async def test_bypass_assets_pass_while_the_room_is_full(
    h: Harness, alice: httpx.AsyncClient, bob: httpx.AsyncClient
):
    await alice.get("/")
    r = await bob.get("/static/site.css")
    assert r.json()["path"] == "/static/site.css"
    assert "set-cookie" not in r.headers


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    variant=st.sampled_from(
        ["/seats", "/Seats", "//seats", "/seats/../seats", "/./seats", "/static/../seats",
         "/seats;.css", "/seats/", "/SEATS/A1", "/seats%2F..", "/static/..%2Fseats"]
    ),
    method=st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "PUT", "DELETE"]),
)  # fmt: skip
async def test_path_variants_never_reach_the_origin_while_full(variant: str, method: str):
    h = Harness()
    async with h.client() as a, h.client() as b:
        await a.get("/")
        before = len(h.origin.seen)
        r = await b.request(method, variant)
        assert r.status_code == 200
        assert len(h.origin.seen) == before


async def test_unlisted_room_from_the_path_is_queued_in_the_default_room():
    h = Harness(gate_settings(**{"rooms.allow-unlisted": False}))
    async with h.client() as c:
        r = await c.get("/events/RANDOM123/seats")
        assert "set-cookie" in r.headers and r.headers["set-cookie"].startswith("gk_session=")
        assert (await h.store.counts("default")).active == 1
        assert "RANDOM123" not in await h.store.rooms()
