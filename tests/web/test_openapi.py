"""The OpenAPI 3.1 documents: valid, served where documented, the routes' own table, and the
schemas true of real answers in every state (pre-queue, time cap, message, ended...)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from gatekeeper.config.events import parse_instant
from gatekeeper.enqueue import TokenProblem
from gatekeeper.errors import Refusal
from gatekeeper.ids import new_session_id, room_of
from gatekeeper.web import admin_routes, api, api_routes
from gatekeeper.web.openapi import Router, Schema, Table, document
from tests.web.test_admin import ADMIN, AUTH, Site

API = "/api/waiting-room"
TABLES = {API: api_routes.TABLE, ADMIN: admin_routes.TABLE}
SID = new_session_id("default")
MINUTE = 60_000


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with Site().client() as c:
        yield c


def schema_of(table: Table, name: str) -> Draft202012Validator:
    """A validator of one named schema of the table's document (formats checked too)."""
    components = document(table, "/")["components"]
    root = {"$ref": f"#/components/schemas/{name}", "components": components}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def fits(table: Table, name: str, body: Any) -> None:
    errors = [e.message for e in schema_of(table, name).iter_errors(body)]
    assert not errors, (name, body, errors)


@pytest.mark.parametrize("prefix", list(TABLES))
def test_each_document_is_valid_openapi_3_1(prefix: str) -> None:
    validate(document(TABLES[prefix], prefix))


async def test_the_json_api_serves_its_document_to_anyone(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{API}/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json() == document(api_routes.TABLE, API)
    assert r.json()["servers"] == [{"url": API}]
    validate(r.json())


async def test_the_operator_document_is_behind_the_token(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{ADMIN}/openapi.json")).status_code == 401
    r = await client.get(f"{ADMIN}/openapi.json", headers=AUTH)
    assert r.status_code == 200 and r.json() == document(admin_routes.TABLE, ADMIN)
    assert r.json()["security"] == [{"bearer": []}]
    async with Site(token="").client() as off:
        assert (await off.get(f"{ADMIN}/openapi.json", headers=AUTH)).status_code == 404


def _url(prefix: str, path: str) -> str:
    return prefix + path.replace("{sessionId}", SID).replace("{room}", "default")


@pytest.mark.parametrize(
    ("prefix", "method", "path"),
    [(p, op.method, op.path) for p, t in TABLES.items() for op in t.operations],
)
async def test_every_operation_answers_one_of_its_documented_statuses(
    client: httpx.AsyncClient, prefix: str, method: str, path: str
) -> None:
    (op,) = [o for o in TABLES[prefix].operations if (o.method, o.path) == (method, path)]
    body = b'{"startsAt": 1900000000000}' if op.body_required else None
    r = await client.request(method, _url(prefix, path), headers=AUTH, content=body)
    assert r.status_code in op.replies, (method, path, r.status_code, r.text)
    assert r.status_code != 405


@pytest.mark.parametrize(
    ("prefix", "path"), sorted({(p, op.path) for p, t in TABLES.items() for op in t.operations})
)
async def test_a_method_the_table_lacks_is_405_with_its_allow(
    client: httpx.AsyncClient, prefix: str, path: str
) -> None:
    methods = [op.method for op in TABLES[prefix].operations if op.path == path]
    allow = [m for method in methods for m in ((method, "HEAD") if method == "GET" else (method,))]
    other = next(m for m in ("DELETE", "PUT", "POST") if m not in methods)
    r = await client.request(other, _url(prefix, path), headers=AUTH)
    assert r.status_code == 405
    assert r.headers["allow"] == ", ".join(allow)
    assert r.json()["error"]["code"] == "method_not_allowed"


async def test_a_room_may_be_named_like_a_suffix(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{ADMIN}/rooms/event", headers=AUTH)
    assert r.status_code == 200 and r.json()["room"] == "event"
    assert (await client.get(f"{ADMIN}/rooms/event:pause", headers=AUTH)).status_code == 405
    assert (await client.get(f"{ADMIN}/rooms/a/b/event", headers=AUTH)).status_code == 404
    assert (await client.post(f"{ADMIN}/rooms/default:nap", headers=AUTH)).status_code == 404


def test_a_table_and_its_handlers_must_agree() -> None:
    async def handler(*_: object) -> None:
        pass

    handlers = {op.operation_id: handler for op in api_routes.TABLE.operations}
    Router(api_routes.TABLE, handlers)
    with pytest.raises(ValueError, match="getEvent"):
        Router(api_routes.TABLE, {k: v for k, v in handlers.items() if k != "getEvent"})
    with pytest.raises(ValueError, match="extra"):
        Router(api_routes.TABLE, {**handlers, "extra": handler})


def _codes(reply: Any) -> list[str]:
    schema: Schema = reply.schema
    return list(schema["properties"]["error"]["properties"]["code"]["enum"])


def test_join_refusals_are_documented_with_their_status_and_code() -> None:
    (join,) = [op for op in api_routes.TABLE.operations if op.operation_id == "joinSession"]
    for refusal in Refusal:
        assert refusal.value in _codes(join.replies[api._REFUSED_STATUS[refusal]])
    assert set(_codes(join.replies[403])) == {p.value for p in TokenProblem}


def test_session_ids_and_event_instants_fit_their_schemas() -> None:
    pattern = Draft202012Validator(api_routes.SESSION_ID)
    for room in ("default", "E1", "a" * 64, "x.y-z_"):
        sid = new_session_id(room)
        assert pattern.is_valid(sid) and room_of(sid) == room
    assert not pattern.is_valid("x" * 22 + ".")
    lo, hi = admin_routes.EPOCH_MS
    assert parse_instant(lo) == lo and parse_instant(hi) == hi
    assert parse_instant(lo - 1) is None and parse_instant(hi + 1) is None


async def test_answers_in_every_state_fit_their_schemas() -> None:
    site = Site()
    async with site.client() as c:
        c.headers.update(AUTH)
        room = {"maxSessionSeconds": 600, "message": "Extra seats at 8 pm"}
        fits(
            admin_routes.TABLE, "Room", (await c.patch(f"{ADMIN}/rooms/default", json=room)).json()
        )
        schedule = {"prequeueOpensAt": site.clock.now, "startsAt": site.clock.now + 10 * MINUTE}
        fits(
            api_routes.TABLE,
            "Event",
            (await c.put(f"{ADMIN}/rooms/E1/event", json=schedule)).json(),
        )
        bodies = [(await c.post(f"{API}/sessions", json={})).json() for _ in range(3)]
        assert [b["status"] for b in bodies] == ["ACTIVE", "ACTIVE", "WAITING"]
        assert "endsAt" in bodies[0] and "message" in bodies[0]
        prequeue = (await c.post(f"{API}/sessions", json={"eventId": "E1"})).json()
        assert prequeue["position"] is None and "startsAt" in prequeue
        await c.post(f"{API}/sessions/{bodies[0]['sessionId']}:leave")
        left = (await c.get(f"{API}/sessions/{bodies[0]['sessionId']}")).json()
        assert left["status"] == "LEFT" and left["reason"] == "left"
        for body in [*bodies, prequeue, left]:
            fits(api_routes.TABLE, "Status", body)
        await c.post(f"{ADMIN}/rooms/default:close")
        await site.tick()
        closed = (await c.get(f"{API}/sessions/{bodies[2]['sessionId']}")).json()
        assert closed["reason"] == "closed"
        fits(api_routes.TABLE, "Status", closed)
        fits(api_routes.TABLE, "Event", (await c.get(f"{API}/events/E1")).json())
        fits(admin_routes.TABLE, "Draw", (await c.get(f"{ADMIN}/rooms/E1/draw")).json())
        fits(admin_routes.TABLE, "Settings", (await c.get(f"{ADMIN}/settings")).json())
        for entry in (await c.get(f"{ADMIN}/audit")).json()["entries"]:
            fits(admin_routes.TABLE, "AuditEntry", entry)
        for view in (await c.get(f"{ADMIN}/rooms")).json()["rooms"]:
            fits(admin_routes.TABLE, "Room", view)
