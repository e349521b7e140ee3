"""Which joins need an enqueue token, and where a request carries one."""

from __future__ import annotations

import pytest

from gatekeeper.config import Settings, load_config
from gatekeeper.core.invitations import Invitations, token_of, without_token
from gatekeeper.enqueue import EnqueueClaim, TokenProblem, mint_enqueue_token
from gatekeeper.errors import ConfigError
from tests.conftest import FakeClock

KEY = "site-secret-0123456789"


def settings(tmp_path, body: str = "", environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "config.yaml"
    path.write_text(body or "waitingroom: {}\n", encoding="utf-8")
    env = {"WAITINGROOM_ENQUEUE_TOKEN_SECRET": KEY} if environ is None else environ
    return load_config(path, environ=env)


ROOMS = """
waitingroom:
  rooms:
    overrides:
      presale: {require-enqueue-token: true}
      open: {}
"""


def token(clock: FakeClock, room: str = "presale", **extra: object) -> str:
    expires = clock.now // 1000 + 60
    return mint_enqueue_token(KEY, EnqueueClaim(room, "u1", expires, **extra))  # type: ignore[arg-type]


def test_rooms_need_tokens_as_configured(tmp_path):
    clock = FakeClock()
    invitations = Invitations(settings(tmp_path, ROOMS), clock)
    assert invitations.required("presale") and not invitations.required("open")
    assert invitations.check("presale", None) is TokenProblem.REQUIRED
    assert invitations.check("presale", "v1.nonsense") is TokenProblem.INVALID
    assert invitations.check("presale", token(clock, "open")) is TokenProblem.INVALID
    assert invitations.check("presale", token(clock)) == EnqueueClaim(
        "presale", "u1", clock.now // 1000 + 60
    )
    clock.advance(61_000)
    assert invitations.check("presale", token(clock)) is not None
    # A room without the rule: no token and a bad one are both a plain join; a good one counts.
    assert invitations.check("open", None) is None
    assert invitations.check("open", "v1.nonsense") is None
    claim = invitations.check("open", token(clock, "open", priority=3))
    assert isinstance(claim, EnqueueClaim) and claim.priority == 3


def test_an_expired_token_is_invalid(tmp_path):
    clock = FakeClock()
    invitations = Invitations(settings(tmp_path, ROOMS), clock)
    old = token(clock)
    clock.advance(61_000)
    assert invitations.check("presale", old) is TokenProblem.INVALID


def test_the_rule_needs_the_sites_keys(tmp_path):
    with pytest.raises(ConfigError, match="rooms.overrides.presale.require-enqueue-token"):
        settings(tmp_path, ROOMS, environ={})
    body = "waitingroom:\n  gate:\n    require-enqueue-token: true\n"
    with pytest.raises(ConfigError, match="gate.require-enqueue-token: needs WAITINGROOM_ENQ"):
        settings(tmp_path, body, environ={})
    with pytest.raises(ConfigError, match="ENQUEUE_TOKEN_SECRET.*key 2 has 5 characters"):
        settings(tmp_path, ROOMS, environ={"WAITINGROOM_ENQUEUE_TOKEN_SECRET": f"{KEY},short"})


def scope(
    query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, object]:
    return {"type": "http", "query_string": query, "headers": headers or []}


def test_the_token_comes_from_the_query_first_then_the_header():
    assert token_of(scope(b"a=1&gk-enqueue=v1.abc.def&b=2")) == ("v1.abc.def", True)
    assert token_of(scope(b"gk-enqueue=v1%2Eabc")) == ("v1.abc", True)
    header = [(b"x-gatekeeper-enqueue", b"v1.hdr")]
    assert token_of(scope(b"x=gk-enqueue", header)) == ("v1.hdr", False)
    assert token_of(scope(b"gk-enqueue=v1.q", header)) == ("v1.q", True)
    assert token_of(scope()) == (None, False)
    # Not ASCII or too long: a bad token, refused without work.
    assert token_of(scope(b"gk-enqueue=%FF")) == ("?", True)
    assert token_of(scope(b"gk-enqueue=" + b"a" * 5000)) == ("?", True)


def test_without_token_keeps_every_other_parameter_as_it_was():
    assert without_token(b"a=1&gk-enqueue=x&b=%20&gk-enqueue=y") == b"a=1&b=%20"
    assert without_token(b"gk-enqueue=x") == b""
    assert without_token(b"gk-enqueue-not=1&c") == b"gk-enqueue-not=1&c"
