"""The ASGI helpers: content negotiation between the waiting page and its JSON."""

from __future__ import annotations

from gatekeeper import asgi
from gatekeeper.asgi import prefers_json


def test_json_wins_by_quality_then_by_position() -> None:
    assert prefers_json(b"application/json")
    assert not prefers_json(b"text/html,application/xhtml+xml,*/*;q=0.8")
    assert prefers_json(b"text/html;q=0.5, application/json")
    assert prefers_json(b"application/json, text/html")
    assert not prefers_json(b"text/html, application/json")
    assert prefers_json(b"application/json;q=0.9, text/html;q=0.8")
    assert not prefers_json(b"application/json;q=0, text/html;q=0")
    assert not prefers_json(b"application/json;q=abc")
    assert not prefers_json(b"")


def test_remembered_answers_stay_bounded_and_long_headers_are_not_kept() -> None:
    bound = asgi._ranked.cache_info().maxsize
    assert bound is not None
    for i in range(3 * bound):
        assert prefers_json(b"application/json, x/%d" % i)
        assert asgi._ranked.cache_info().currsize <= bound
    before = asgi._ranked.cache_info()
    giant = b"text/html," + b"x" * 1_000_000
    assert not prefers_json(giant) and not prefers_json(giant)
    after = asgi._ranked.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)  # never asked, never kept
