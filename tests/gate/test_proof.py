"""Tests for the origin proof header: round trip, tampering, freshness, garbage."""

from __future__ import annotations

import ast
import hmac
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gatekeeper.gate.proof
from gatekeeper.gate.proof import make_proof, verify_proof

SECRET = b"origin-proof-secret-0123456789"
SID = "AAAAAAAAAAAAAAAAAAAAAA.my.room-1"
NOW = 1_700_000_000


def test_round_trip_and_format() -> None:
    value = make_proof(SECRET, SID, NOW)
    prefix = f"v1.{NOW}.{SID}"
    assert value.startswith(prefix + ".")
    expected = hmac.new(SECRET, prefix.encode(), "sha256").hexdigest()
    assert value == f"{prefix}.{expected}"
    assert verify_proof(SECRET, value, now_s=NOW) == SID


def test_every_single_character_change_is_refused() -> None:
    value = make_proof(SECRET, SID, NOW)
    for i, ch in enumerate(value):
        for repl in "0aF.v-_ ":
            if repl != ch:
                tampered = value[:i] + repl + value[i + 1 :]
                assert verify_proof(SECRET, tampered, now_s=NOW) is None, (i, repl)


def test_truncated_extended_and_foreign_are_refused() -> None:
    value = make_proof(SECRET, SID, NOW)
    for i in range(len(value)):
        assert verify_proof(SECRET, value[:i], now_s=NOW) is None
    assert verify_proof(SECRET, value + "0", now_s=NOW) is None
    assert verify_proof(SECRET, value.upper(), now_s=NOW) is None
    assert verify_proof(b"another-secret-0123456789", value, now_s=NOW) is None
    assert verify_proof(b"", value, now_s=NOW) is None


def test_session_substitution_is_refused() -> None:
    value = make_proof(SECRET, SID, NOW)
    other = value.replace(SID, "BBBBBBBBBBBBBBBBBBBBBB.my.room-1")
    assert verify_proof(SECRET, other, now_s=NOW) is None


@pytest.mark.parametrize("offset", [-30, -1, 0, 1, 30])
def test_fresh_within_skew(offset: int) -> None:
    assert verify_proof(SECRET, make_proof(SECRET, SID, NOW + offset), now_s=NOW) == SID


@pytest.mark.parametrize("offset", [-31, 31, -10_000, 10_000])
def test_stale_and_future_are_refused(offset: int) -> None:
    assert verify_proof(SECRET, make_proof(SECRET, SID, NOW + offset), now_s=NOW) is None


def test_custom_skew() -> None:
    value = make_proof(SECRET, SID, NOW - 100)
    assert verify_proof(SECRET, value, now_s=NOW, max_skew_s=100) == SID
    assert verify_proof(SECRET, value, now_s=NOW, max_skew_s=99) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "v1",
        "v1.",
        "v1..",
        "v1...",
        "v2.1.a.b",
        "v1.x.sid." + "0" * 64,
        "v1.-5.sid." + "0" * 64,
        "v1.1700000000.." + "0" * 64,
        "v1.1700000000.sid.zz",
        "v1.\u0661\u0667." + "0" * 64,
        "v1." + "9" * 5000 + ".s." + "0" * 64,
        "é" * 10,
    ],
)
def test_garbage_is_refused(value: str) -> None:
    assert verify_proof(SECRET, value, now_s=NOW) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_garbage_never_raises(value: str) -> None:
    assert verify_proof(SECRET, value, now_s=NOW) is None


def test_non_string_never_raises() -> None:
    bad: Any = b"v1.1.x.y"
    assert verify_proof(SECRET, bad, now_s=NOW) is None


def test_make_proof_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        make_proof(b"short", SID, NOW)
    for sid in ["", "a b", "a\nb", "é"]:
        with pytest.raises(ValueError):
            make_proof(SECRET, sid, NOW)


def test_verify_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert verify_proof(SECRET, make_proof(SECRET, SID, NOW), now_s=NOW) == SID
    assert len(calls) == 1


def test_module_is_stdlib_only() -> None:
    source = Path(gatekeeper.gate.proof.__file__).read_text()
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "hashlib", "hmac"}
