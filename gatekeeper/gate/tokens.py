"""Signing and verifying the visitor cookie value (itsdangerous, HMAC-SHA256, key rotation)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from itsdangerous import BadData, TimestampSigner
from itsdangerous.encoding import want_bytes

from gatekeeper.errors import ConfigError
from gatekeeper.ids import room_of

VERSION = "1"
"""The payload format version written by `CookieCodec.dumps`."""

MAX_COOKIE_LEN = 512
"""Longer cookie values are refused before any parsing or crypto."""

MIN_KEY_LEN = 16
"""Shortest accepted signing key, in characters (str) or bytes."""

TAG_LEN = 16
"""Hex digits of a binding tag (8 bytes of HMAC-SHA256)."""

_MAX_PASS_MS = 10**16
_TAG = re.compile(f"[0-9a-f]{{{TAG_LEN}}}")
_BIND_LABEL = b"gatekeeper.bind-pass"

# `1~<session_id>~<pass_until_ms>[~<tag>].<timestamp>.<signature>`, with a binding tag (16
# lowercase hex digits, see `CookieCodec.tags`) only in rooms that bind the cookie to the
# client's address. Everything but the signature is covered by the HMAC, so the tag cannot be
# changed and only the signature needs to be canonical: 32 digest bytes are 43
# base64 characters whose last one carries 4 data bits and 2 padding bits, and the decoder
# ignores the padding bits. Accepting only zero padding bits means one digest has one spelling,
# so no tampered string can verify and the cache holds one entry per cookie.
_SHAPE = re.compile(
    r"1~([^~]{1,87})~(0|[1-9][0-9]{0,15})(?:~([0-9a-f]{16}))?"
    r"\.[A-Za-z0-9_-]{2,11}\.[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]"
)


@dataclass(frozen=True, slots=True)
class Visitor:
    """What a valid cookie says: the session, until when (epoch ms) it may skip the store, and
    the binding tag of the client address it was issued to ("" when not bound)."""

    session_id: str
    pass_until_ms: int
    bound: str = ""


class _ClockedSigner(TimestampSigner):
    """A `TimestampSigner` that reads an injectable clock, so expiry is testable and consistent."""

    def __init__(self, keys: list[bytes], salt: str, clock: Callable[[], float]) -> None:
        super().__init__(keys, salt=salt, key_derivation="hmac", digest_method=hashlib.sha256)
        self._clock = clock
        # itsdangerous derives a key from the secret and salt on every sign and check: one
        # HMAC per call that gives the same answer for the life of the keys.
        self._derived = {key: super(_ClockedSigner, self).derive_key(key) for key in keys}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        """The key derived from `secret_key` (default: the newest), worked out once."""
        key = self.secret_keys[-1] if secret_key is None else want_bytes(secret_key)
        found = self._derived.get(key)
        return found if found is not None else super().derive_key(key)

    def get_timestamp(self) -> int:
        """Whole seconds from the injected clock."""
        return int(self._clock())


def _check_keys(keys: Sequence[str | bytes]) -> list[bytes]:
    # A bare string is a Sequence too; iterating it would make one-character keys.
    if isinstance(keys, str | bytes):
        raise ConfigError("cookie keys: expected a list of keys, got a single string")
    out: list[bytes] = []
    for i, key in enumerate(keys):
        if not isinstance(key, str | bytes):
            raise ConfigError(f"cookie keys: key #{i} is not a string")
        if len(key) < MIN_KEY_LEN:
            # Never echo the key itself: this message may end up in logs.
            raise ConfigError(
                f"cookie keys: key #{i} is {len(key)} long, at least {MIN_KEY_LEN} required"
            )
        out.append(key.encode() if isinstance(key, str) else key)
    if not out:
        raise ConfigError("cookie keys: at least one key is required")
    return out


class CookieCodec:
    """Signs and verifies visitor cookie values; the newest key signs, every key verifies.

    `keys` are ordered oldest to newest. Successful verifications are cached by raw value
    until the signature expires, so each distinct cookie is verified at most once.
    """

    __slots__ = ("_bind_keys", "_cache", "_cache_size", "_clock", "_max_age", "_signer")

    def __init__(
        self,
        keys: Sequence[str | bytes],
        *,
        max_age_s: int,
        salt: str = "gatekeeper.cookie",
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_age_s <= 0:
            raise ConfigError(f"cookie max_age_s: must be positive, got {max_age_s}")
        if cache_size < 0:
            raise ConfigError(f"cookie cache_size: must be >= 0, got {cache_size}")
        checked = _check_keys(keys)
        self._signer = _ClockedSigner(checked, salt, clock)
        # Binding tags use keys of their own, derived from each signing key, newest first.
        self._bind_keys = [hmac.digest(k, _BIND_LABEL, hashlib.sha256) for k in reversed(checked)]
        self._max_age = max_age_s
        self._cache_size = cache_size
        self._clock = clock
        # raw cookie -> (visitor, epoch seconds from which the signature is too old)
        self._cache: dict[str, tuple[Visitor, float]] = {}

    def dumps(self, session_id: str, pass_until_ms: int, bound: str = "") -> str:
        """A signed, timestamped, cookie-safe value naming `session_id`, its pass deadline and,
        when not "", the binding tag `bound` (one of `tags`)."""
        if room_of(session_id) is None:
            raise ValueError(f"malformed session id: {session_id!r}")
        if not 0 <= pass_until_ms < _MAX_PASS_MS:
            raise ValueError(f"pass_until_ms out of range: {pass_until_ms}")
        if bound and not _TAG.fullmatch(bound):
            raise ValueError(f"malformed binding tag: {bound!r}")
        payload = f"{VERSION}~{session_id}~{pass_until_ms}"
        if bound:
            payload += f"~{bound}"
        return self._signer.sign(payload).decode("ascii")

    def tags(self, binding: str) -> tuple[str, ...]:
        """The binding tags of `binding` (an address or network), one per key, newest first.

        A cookie issued in a bound room carries the first; one carrying any of them is bound
        to `binding` (a key rotation keeps bound visitors). Keyed, so the cookie does not tell
        the address; signed with the rest of the cookie, so it cannot be changed."""
        data = binding.encode()
        return tuple(
            hmac.digest(key, data, hashlib.sha256)[: TAG_LEN // 2].hex() for key in self._bind_keys
        )

    def loads(self, raw: str) -> Visitor | None:
        """The visitor a cookie value names, or None when it is not a valid, fresh cookie."""
        if len(raw) > MAX_COOKIE_LEN:
            return None
        hit = self._cache.get(raw)
        if hit is not None:
            if self._clock() < hit[1]:
                return hit[0]
            self._cache.pop(raw, None)
            return None
        return self._verify(raw)

    def _verify(self, raw: str) -> Visitor | None:
        # Cheap structural checks first: garbage never reaches the HMAC.
        if not raw.isascii():
            return None
        shape = _SHAPE.fullmatch(raw)
        if shape is None:
            return None
        session_id = shape.group(1)
        if room_of(session_id) is None:
            return None
        try:
            _, signed_at = self._signer.unsign(raw, max_age=self._max_age, return_timestamp=True)
        except (BadData, ValueError, OverflowError, OSError):
            return None
        visitor = Visitor(session_id, int(shape.group(2)), shape.group(3) or "")
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                # Evict the oldest insertion: keeps hits free of reordering work.
                self._cache.pop(next(iter(self._cache)), None)
            # itsdangerous accepts while int(now) - signed_at <= max_age.
            self._cache[raw] = (visitor, signed_at.timestamp() + self._max_age + 1)
        return visitor
