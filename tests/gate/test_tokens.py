"""Tests for the visitor cookie codec: signing, rotation, expiry, tamper resistance, caching."""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner

from gatekeeper.errors import ConfigError
from gatekeeper.gate.tokens import MAX_COOKIE_LEN, TAG_LEN, CookieCodec, Visitor
from gatekeeper.ids import new_session_id

K1 = "first-secret-key-0123456789"
K2 = b"second-secret-key-abcdefghij"
T0 = 1_700_000_000.0
MAX_AGE = 3600
SID = "AAAAAAAAAAAAAAAAAAAAAA.my.room-1"
COOKIE_SAFE = set(string.ascii_letters + string.digits + "-_.~!#$%&'()*+/:<=>?@[]^`{|}")


class Clock:
    """A settable clock that counts how often it is read."""

    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def codec(
    keys: list[str | bytes] | None = None, clock: Callable[[], float] | None = None, **kw: Any
) -> CookieCodec:
    return CookieCodec(keys or [K1], max_age_s=MAX_AGE, clock=clock or Clock(), **kw)


@pytest.fixture
def unsign_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = TimestampSigner.unsign

    def spy(self: TimestampSigner, signed_value: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(signed_value)
        return original(self, signed_value, *args, **kwargs)

    monkeypatch.setattr(TimestampSigner, "unsign", spy)
    return calls


def raw_signer() -> TimestampSigner:
    """A signer set up like the codec's, to sign hand-made payloads."""
    signer = TimestampSigner(
        [K1], salt="gatekeeper.cookie", key_derivation="hmac", digest_method=hashlib.sha256
    )
    signer.get_timestamp = lambda: int(T0)  # type: ignore[method-assign]
    return signer


GOOD = codec().dumps(SID, 1_700_000_123_456)
TAG = codec().tags("192.0.2.7")[0]
BOUND = codec().dumps(SID, 1_700_000_123_456, TAG)


def test_round_trip() -> None:
    c = codec()
    sid = new_session_id("shop")
    assert c.loads(c.dumps(sid, 0)) == Visitor(sid, 0)
    assert c.loads(c.dumps(sid, 1_700_000_999_999)) == Visitor(sid, 1_700_000_999_999)


def test_value_is_cookie_safe_and_versioned() -> None:
    raw = codec().dumps(SID, 42)
    assert raw.startswith(f"1~{SID}~42.")
    assert not set(raw) & set(' ,;"\\')
    assert raw.isascii() and raw.isprintable()


def test_dumps_rejects_bad_input() -> None:
    c = codec()
    for bad in ["", "short.room", "AAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAA.ro om"]:
        with pytest.raises(ValueError):
            c.dumps(bad, 0)
    with pytest.raises(ValueError):
        c.dumps(SID, -1)


@pytest.mark.parametrize(
    "keys",
    [[], ["short"], [K1, b"0123456789abcde"], K1, [123]],
    ids=["empty", "short", "one-short", "bare-string", "not-a-string"],
)
def test_bad_keys_are_config_errors(keys: Any) -> None:
    with pytest.raises(ConfigError):
        CookieCodec(keys, max_age_s=MAX_AGE)


def test_bad_numbers_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        CookieCodec([K1], max_age_s=0)
    with pytest.raises(ConfigError):
        CookieCodec([K1], max_age_s=10, cache_size=-1)


def test_config_error_does_not_leak_key() -> None:
    with pytest.raises(ConfigError) as info:
        CookieCodec([K1, "hunter2-secret"], max_age_s=MAX_AGE)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("good", [GOOD, BOUND], ids=["unbound", "bound"])
def test_every_single_character_change_is_refused(good: str) -> None:
    c = codec()
    for i, ch in enumerate(good):
        for repl in sorted(COOKIE_SAFE - {ch}):
            assert c.loads(good[:i] + repl + good[i + 1 :]) is None, (i, repl)


@pytest.mark.parametrize("good", [GOOD, BOUND], ids=["unbound", "bound"])
def test_every_truncation_and_extension_is_refused(good: str) -> None:
    c = codec()
    for i in range(len(good)):
        assert c.loads(good[:i]) is None, i
        assert c.loads(good[i:]) is None or i == 0
    for extra in ["A", "=", ".", "~", "0", " ", "=="]:
        assert c.loads(good + extra) is None
        assert c.loads(extra + good) is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_bit_flips_are_refused(data: st.DataObject) -> None:
    raw = bytearray(data.draw(st.sampled_from([GOOD, BOUND])).encode())
    positions = data.draw(st.sets(st.integers(0, len(raw) * 8 - 1), min_size=1, max_size=4))
    for p in positions:
        raw[p // 8] ^= 1 << (p % 8)
    assert codec().loads(raw.decode("latin-1")) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_garbage_never_raises(raw: str) -> None:
    assert codec().loads(raw) is None


def test_foreign_key_and_salt_are_refused() -> None:
    assert codec([K2]).loads(GOOD) is None
    assert codec(salt="other.salt").loads(GOOD) is None


def test_wrong_version_is_refused() -> None:
    signer = raw_signer()
    good = signer.sign(f"1~{SID}~0").decode()
    assert codec().loads(good) == Visitor(SID, 0)  # the hand-made envelope is right...
    for payload in [f"2~{SID}~0", f"{SID}~0", f"1~{SID}~00", f"1~{SID}~-1", f"1~{SID}~0~x"]:
        assert codec().loads(signer.sign(payload).decode()) is None, payload


def test_rotation() -> None:
    old = codec([K1]).dumps(SID, 0)
    assert codec([K1, K2]).loads(old) == Visitor(SID, 0)
    new = codec([K1, K2]).dumps(SID, 0)
    assert codec([K2]).loads(new) == Visitor(SID, 0)  # the newest key signs
    assert codec([K1]).loads(new) is None
    assert codec([K2]).loads(old) is None  # a retired key no longer verifies
    assert codec([K1.encode(), K2]).loads(old) == Visitor(SID, 0)  # str and bytes agree


def test_expiry_with_injected_clock() -> None:
    raw = codec().dumps(SID, 0)
    assert codec(clock=Clock(T0 + MAX_AGE + 0.999)).loads(raw) == Visitor(SID, 0)
    assert codec(clock=Clock(T0 + MAX_AGE + 1)).loads(raw) is None
    assert codec(clock=Clock(T0 + 10 * MAX_AGE)).loads(raw) is None


def test_future_timestamp_is_refused() -> None:
    raw = codec(clock=Clock(T0 + 5)).dumps(SID, 0)
    assert codec(clock=Clock(T0)).loads(raw) is None
    assert codec(clock=Clock(T0 + 5)).loads(raw) == Visitor(SID, 0)


def test_oversized_is_refused_before_crypto(unsign_calls: list[str]) -> None:
    c = codec()
    assert c.loads(GOOD + "A" * (MAX_COOKIE_LEN - len(GOOD) + 1)) is None
    assert c.loads("x" * 100_000) is None
    assert unsign_calls == []


def test_non_ascii_is_refused(unsign_calls: list[str]) -> None:
    c = codec()
    assert c.loads(GOOD[:-1] + "é") is None
    assert c.loads(GOOD.replace("~", "\uff5e", 1)) is None
    assert c.loads(GOOD + "\x00") is None
    assert unsign_calls == []


def test_malformed_session_id_is_refused() -> None:
    signer = raw_signer()
    for sid in [
        "short.room",
        "AAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAA.",
        "A" * 22 + ".r/m",
    ]:
        assert codec().loads(signer.sign(f"1~{sid}~0").decode()) is None, sid


def test_cache_verifies_each_raw_once(unsign_calls: list[str]) -> None:
    clock = Clock()
    c = codec(clock=clock)
    raw = c.dumps(SID, 7)
    assert c.loads(raw) == Visitor(SID, 7)
    assert len(unsign_calls) == 1
    clock.reads = 0
    for _ in range(5):
        assert c.loads(raw) == Visitor(SID, 7)
    assert len(unsign_calls) == 1
    assert clock.reads == 5  # hot path: one clock read per call


def test_cached_entry_still_expires(unsign_calls: list[str]) -> None:
    clock = Clock()
    c = codec(clock=clock)
    raw = c.dumps(SID, 0)
    assert c.loads(raw) is not None
    clock.now = T0 + MAX_AGE + 0.5
    assert c.loads(raw) is not None
    assert len(unsign_calls) == 1
    clock.now = T0 + MAX_AGE + 1
    assert c.loads(raw) is None
    assert c.loads(raw) is None  # not resurrected by re-verification either
    clock.now = T0  # and the expired entry was dropped, so this verifies afresh
    assert c.loads(raw) is not None
    assert len(unsign_calls) == 3


def test_failures_are_not_cached_and_cache_is_bounded(unsign_calls: list[str]) -> None:
    c = codec(cache_size=2)
    a, b, d = (c.dumps(new_session_id("r"), 0) for _ in range(3))
    assert c.loads(a) is not None
    for i in range(1000):  # a flood of well-shaped forgeries
        assert c.loads(a[:-43] + f"{i:042d}A") is None
    n = len(unsign_calls)
    assert c.loads(a) is not None and len(unsign_calls) == n  # still cached
    assert c.loads(b) is not None and c.loads(d) is not None  # evicts a
    n = len(unsign_calls)
    assert c.loads(a) is not None and len(unsign_calls) == n + 1


def test_cache_disabled(unsign_calls: list[str]) -> None:
    c = codec(cache_size=0)
    raw = c.dumps(SID, 0)
    assert c.loads(raw) is not None and c.loads(raw) is not None
    assert len(unsign_calls) == 2


def test_verify_uses_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        nonlocal calls
        calls += 1
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    c = codec()
    assert c.loads(GOOD) is not None
    assert calls >= 1
    calls = 0
    assert c.loads(GOOD[:-2] + ("AA" if GOOD[-2:] != "AA" else "BA")) is None
    assert calls >= 1


def test_a_bound_cookie_carries_its_tag_signed_with_the_rest() -> None:
    c = codec()
    assert BOUND.startswith(f"1~{SID}~1700000123456~{TAG}.")
    assert c.loads(BOUND) == Visitor(SID, 1_700_000_123_456, TAG)
    assert c.loads(GOOD) == Visitor(SID, 1_700_000_123_456, "")  # no tag: not bound
    other = c.tags("192.0.2.8")[0]
    assert c.loads(BOUND.replace(TAG, other)) is None  # a tag swapped in does not verify
    assert c.loads(BOUND.replace(f"~{TAG}", "")) is None  # nor one taken out


def test_only_a_canonical_tag_verifies() -> None:
    signer = raw_signer()
    assert codec().loads(signer.sign(f"1~{SID}~0~{TAG}").decode()) == Visitor(SID, 0, TAG)
    for tag in [TAG.upper(), TAG[:-1], TAG + "0", "g" * TAG_LEN, "", f"{TAG}~{TAG}"]:
        assert codec().loads(signer.sign(f"1~{SID}~0~{tag}").decode()) is None, tag


def test_dumps_rejects_a_malformed_tag() -> None:
    for bad in [TAG.upper(), TAG[:-1], TAG + "a", "x" * TAG_LEN, "192.0.2.7"]:
        with pytest.raises(ValueError):
            codec().dumps(SID, 0, bad)


def test_tags_are_keyed_per_binding_and_newest_key_first() -> None:
    old, both, new = codec([K1]), codec([K1, K2]), codec([K2])
    tags = both.tags("192.0.2.7")
    assert len(tags) == 2 and tags == (new.tags("192.0.2.7")[0], old.tags("192.0.2.7")[0])
    assert all(len(t) == TAG_LEN and int(t, 16) >= 0 for t in tags)
    assert old.tags("192.0.2.7") != old.tags("192.0.2.0/24") != old.tags("")
    assert old.tags("192.0.2.7") == codec([K1]).tags("192.0.2.7")  # deterministic
    assert TAG not in old.tags("192.0.2.8") and "192.0.2.7" not in BOUND  # the address is hidden
