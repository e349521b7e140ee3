"""The return-path bounce: a cookie-less form POST re-posted once from our own page."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatekeeper.app import Runtime, WaitingRoom
from gatekeeper.asgi import Message, Receive, Scope, Send
from gatekeeper.gate.bounce import MAX_FIELDS, form_fields, marked, unmark
from gatekeeper.gate.proof import verify_proof
from tests.gate.harness import PROOF, Harness, enter, gate_settings

RETURN = "/pay/return"
FORM = {"content-type": "application/x-www-form-urlencoded"}
FIELDS = [
    ("cres", "eyJhY3NUcmFuc0lEIjoiMSJ9"),
    ("MD", "<b>&\"'x</b>"),
    ("PaRes", "line one\r\nline two"),
    ("threeDSSessionData", ""),
    ("MD", "second MD, same name"),
    ("naïve ☃", "é + %"),
]


class BodyOrigin:
    """A site that records each request's path, query and body, and answers them as JSON."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        seen = {
            "method": scope["method"],
            "path": scope["path"],
            "headers": headers,
            "query": scope["query_string"].decode(),
            "body": body.decode("latin-1"),
        }
        self.seen.append(seen)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


def harness(**overrides: object) -> tuple[Harness, BodyOrigin]:
    """A gate with return paths in front of a recording origin."""
    overrides.setdefault("gate.return-paths", [RETURN, "/3ds/*/done"])
    h = Harness(gate_settings(**overrides))
    origin = BodyOrigin()
    runtime = Runtime(h.settings, store=h.store, clock=h.clock)
    h.gate = WaitingRoom(origin, runtime=runtime, clock=h.clock)
    return h, origin


class Inputs(HTMLParser):
    """The form's action and hidden fields, as a browser's parser reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.action = ""
        self.fields: list[tuple[str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.action = a["action"] or ""
        elif tag == "input" and a.get("type") == "hidden":
            self.fields.append((a["name"] or "", a["value"] or ""))
        self._in_script = tag == "script"

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def read_page(r: httpx.Response) -> Inputs:
    page = Inputs()
    page.feed(r.text)
    return page


async def test_a_cookieless_form_post_gets_the_bounce_page_and_nothing_else() -> None:
    h, origin = harness()
    async with h.client() as buyer:
        r = await buyer.post(f"{RETURN}?order=7&x=%2F", content=urlencode(FIELDS), headers=FORM)
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"].startswith("no-store")
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "set-cookie" not in r.headers  # the visitor's own cookie must survive
    page = read_page(r)
    assert page.action == f"{RETURN}?order=7&x=%2F&gk-bounced=1"
    assert page.fields == FIELDS  # every field, in order, duplicates too
    assert 'type="submit"' in r.text  # the no-JS way on
    assert "<b>" not in r.text and "&lt;b&gt;&amp;&quot;&#x27;x" in r.text
    # One inline script, allowed by its hash and nothing else.
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "base-uri 'none'" in csp
    [script] = page.scripts
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert re.search(r"script-src 'sha256-([^']+)'", csp)[1] == digest  # type: ignore[index]
    assert "unsafe-inline" not in csp
    assert origin.seen == [] and h.store.calls == 0  # no session made, no place taken


async def test_the_re_post_reaches_the_origin_with_the_place_and_without_the_marker() -> None:
    h, origin = harness()
    async with h.client() as buyer:
        await enter(buyer, "/seats")
        sid = _session(h, origin.seen[-1])
        assert sid is not None
        buyer.cookies.set("theme", "dark", domain="shop.test")
        # What the page posts back, with the cookie (twice: the full path, then the hot path).
        for _ in range(2):
            r = await buyer.post(f"{RETURN}?order=7&gk-bounced=1", data=dict(FIELDS[:3]))
            assert r.status_code == 200
            seen = origin.seen[-1]
            assert seen["query"] == "order=7"
            assert parse_qsl(seen["body"], keep_blank_values=True) == FIELDS[:3]
            assert _session(h, seen) == sid
            assert seen["headers"]["cookie"] == "theme=dark"


async def test_a_marked_post_without_the_cookie_is_not_bounced_again() -> None:
    h, origin = harness()
    async with h.client() as buyer:
        r = await buyer.post(f"{RETURN}?gk-bounced=1", data={"cres": "x"})
    # Cookies blocked, say: it goes through the gate as any newcomer (a free place here).
    assert r.status_code == 200 and r.json()["path"] == RETURN
    assert origin.seen[-1]["query"] == "" and origin.seen[-1]["body"] == "cres=x"


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"),
    [
        (
            "POST",
            RETURN,
            {"content-type": "multipart/form-data; boundary=b"},
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b--\r\n",
        ),
        ("POST", RETURN, {"content-type": "application/json"}, b'{"cres": "x"}'),
        (
            "POST",
            RETURN,
            {"content-type": "application/x-www-form-urlencoded; charset=latin-1"},
            b"a=%E9",
        ),
        ("POST", RETURN, FORM, b"cres=" + b"x" * 70_000),  # over return-max-body-bytes
        ("POST", "/pay/other", FORM, b"cres=x"),  # not a return path
        ("PUT", RETURN, FORM, b"cres=x"),
        ("POST", RETURN, FORM, b"a=%FF"),  # not UTF-8
        ("POST", RETURN, FORM, b"a=%ED%A0%80"),  # a lone surrogate
        ("POST", RETURN, FORM, b"a=1&&b=2"),  # not strict form encoding
        ("POST", RETURN, FORM, b"_charset_=x"),  # a browser would post "UTF-8"
        ("POST", RETURN, FORM, b"a=1%0Ab"),  # a browser would post CRLF
        ("POST", RETURN, FORM, b"a=%00"),
        ("POST", RETURN, FORM, b"=1"),  # no name: a browser posts nothing
        ("POST", RETURN, FORM, b"&".join(b"f%d=1" % i for i in range(MAX_FIELDS + 1))),
    ],
)
async def test_what_is_not_bounced_reaches_the_origin_whole(
    method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    h, origin = harness()
    async with h.client() as buyer:
        r = await buyer.request(method, path, content=body, headers=headers)
    assert r.status_code == 200 and r.json()["path"] == path  # a free place: let in
    assert origin.seen[-1]["body"].encode("latin-1") == body


async def test_a_visitor_with_the_cookie_or_a_get_is_not_bounced() -> None:
    h, origin = harness()
    async with h.client() as buyer:
        await enter(buyer, "/seats")
        r = await buyer.post(RETURN, data={"cres": "x"})
        assert r.json()["path"] == RETURN and origin.seen[-1]["body"] == "cres=x"
    async with h.client() as other:
        r = await other.get(RETURN, headers={"accept": "application/json"})
        assert r.json()["status"] == "WAITING"  # the room is full: a GET waits as always


async def test_a_busy_room_bounces_rather_than_queue_the_return() -> None:
    h, origin = harness()
    async with h.client() as buyer, h.client() as stranger:
        await enter(buyer, "/seats")
        calls = h.store.calls
        r = await stranger.post("/3ds/abc/done", data={"cres": "x"})
        assert read_page(r).action == "/3ds/abc/done?gk-bounced=1"
        assert h.store.calls == calls  # the bounce asks the store nothing
        r = await stranger.post("/3ds/abc/done?gk-bounced=1", data={"cres": "x"})
        assert "gk-room" in r.text  # no place of its own: the waiting page, once bounced
    assert len(origin.seen) == 2  # the buyer's two requests only


async def test_without_return_paths_nothing_is_bounced_or_stripped() -> None:
    h, origin = harness(**{"gate.return-paths": []})
    async with h.client() as buyer:
        r = await buyer.post(f"{RETURN}?gk-bounced=1", data={"cres": "x"})
    assert r.json()["path"] == RETURN and origin.seen[-1]["query"] == "gk-bounced=1"


@pytest.mark.parametrize(
    "raw_path",
    [
        b"/pay/return%3F.css",
        b"/pay/return%23x",
        b"/pay;x/return",
        b"/pay/%2E%2E/pay/return",
        b"/pay%2Freturn",
        b"/pay/return%5C",
        b"//evil.test/pay/return",
        b"/pay/./return",
        b"/x/../pay/return",
        b"/pay\\return",
        b"/pay/return\xff",
        b"/pay/re turn",
    ],
)
async def test_odd_paths_never_fail_and_never_leave_the_site(raw_path: bytes) -> None:
    h, _ = harness(**{"gate.return-paths": ["**/return", "/pay/**"]})
    status, sent = await _post(h, raw_path, b"cres=x&MD=%ED%A0%80y")
    assert status < 500
    status, sent = await _post(h, raw_path, b"cres=x")
    assert status < 500
    page = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if b"gk-bounce" in page:  # bounced: to this very path, on this site
        action = re.search(rb'action="([^"]*)"', page)[1]  # type: ignore[index]
        assert action.startswith(b"/") and not action.startswith((b"//", b"/\\"))
        assert action.split(b"?")[0] == raw_path


async def test_hostile_bodies_never_fail() -> None:
    h, _ = harness()
    cases = [
        b"&".join(b"f%d=%d" % (i, i) for i in range(10_000)),  # 10k fields
        b"n" * 60_000 + b"=v",  # a huge name, within the limit
        b"a=" + b"%3C%22" * 10_000,  # 20k characters to escape
        b"a=\xff\xfe",  # not even ASCII
        b"%F0%9F%98%80=%F0%9F%98%80",  # a valid pair: bounced
        b"a=%D8%00",
    ]
    for body in cases:
        status, sent = await _post(h, b"/pay/return", body)
        assert status == 200, body[:40]
    page = await _post(h, b"/pay/return", b"n" * 60_000 + b"=v")
    assert b'name="' + b"n" * 60_000 + b'"' in page[1][1]["body"]


async def test_the_body_is_replayed_in_its_chunks() -> None:
    h, origin = harness(**{"gate.return-max-body-bytes": 1024})
    chunks = [b"a=" + b"x" * 600, b"y" * 600, b"z" * 10]  # no Content-Length, over the limit
    status, _ = await _post(h, b"/pay/return", chunks, length=False)
    assert status == 200 and origin.seen[-1]["body"] == b"".join(chunks).decode()


async def test_a_client_gone_mid_body_is_passed_on() -> None:
    h, origin = harness()
    messages: list[Message] = [
        {"type": "http.request", "body": b"a=1", "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await h.gate(_scope(b"/pay/return", 3), receive, send)  # the origin reads the disconnect
    assert origin.seen[-1]["body"] == "a=1"


@settings(max_examples=60, deadline=None)
@given(fields=st.lists(st.tuples(st.text(min_size=1), st.text()), max_size=6))
def test_form_fields_round_trip_through_the_page_or_are_refused(
    fields: list[tuple[str, str]],
) -> None:
    from gatekeeper.gate.bounce import bounce_page

    body = urlencode(fields, errors="surrogatepass").encode()
    parsed = form_fields(body)
    if parsed is None:  # only what a browser could not re-post as it came
        assert any(
            "\x00" in n + v
            or re.search(r"\r(?!\n)|(?<!\r)\n", n + " " + v)
            or n.lower() == "_charset_"
            or any(0xD800 <= ord(c) <= 0xDFFF for c in n + v)
            for n, v in fields
        )
        return
    assert parsed == fields
    page = Inputs()
    page.feed(bounce_page("/r", parsed).decode())
    assert page.fields == fields


def test_the_marker_is_one_parameter_and_taken_off_alone() -> None:
    assert marked(b"gk-bounced=1") and marked(b"a=1&gk-bounced=1") and marked(b"gk-bounced")
    assert not marked(b"xgk-bounced=1") and not marked(b"a=gk-bounced") and not marked(b"")
    assert unmark(b"a=1&gk-bounced=1") == b"a=1"
    assert unmark(b"gk-bounced=1&a=1&b=gk-bounced") == b"a=1&b=gk-bounced"
    assert unmark(b"a=%2F&b=") == b"a=%2F&b="


def _session(h: Harness, seen: dict[str, Any]) -> str | None:
    proof = seen["headers"]["x-gatekeeper-proof"]
    return verify_proof(PROOF.encode(), proof, now_s=h.clock.now // 1000)


def _scope(raw_path: bytes, length: int | None) -> Scope:
    headers = [(b"host", b"shop.test"), (b"content-type", FORM["content-type"].encode())]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return {
        "type": "http",
        "method": "POST",
        "scheme": "https",
        "http_version": "1.1",
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": b"",
        "headers": headers,
        "client": ("10.0.0.1", 1),
    }


async def _post(
    h: Harness, raw_path: bytes, body: bytes | list[bytes], length: bool = True
) -> tuple[int, list[Message]]:
    """One POST straight through the ASGI interface; the status and every message sent."""
    chunks = body if isinstance(body, list) else [body]
    total = sum(len(c) for c in chunks)
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await h.gate(_scope(raw_path, total if length else None), receive, send)
    return sent[0]["status"], sent
