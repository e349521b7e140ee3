"""The challenge a busy room puts before a join counts: proof of work, or an external verifier.

A newcomer to a busy room gets a cookie and the waiting page, and its place is taken when it
comes back with the cookie (the lazy join, see `gate.admission`). In a room with a challenge the
page first solves it and leaves the answer in a short-lived cookie (`<session cookie>~answer`);
the comeback counts only with an answer that is bound to the cookie's session:

- proof of work: a decimal nonce such that SHA-256(`<session id>:<nonce>`) starts with
  `difficulty` zero bits. Checking it is one hash (O(1)); it is single use because it names
  the session, and joining with a session twice never makes a second place.
- verifier: the token of a Turnstile/hCaptcha-style widget, checked at its siteverify URL
  (POST secret, response, remoteip → {"success": true}); such tokens are single use at the
  provider, and one is taken only on the comeback of the session whose page solved it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from urllib.parse import urlencode

import aiohttp

from gatekeeper.asgi import HeaderSeq
from gatekeeper.config.settings import ChallengeKind, Settings
from gatekeeper.gate.cookies import read_cookie
from gatekeeper.web.views import ChallengeView

log = logging.getLogger("gatekeeper.gate.challenge")

ANSWER_SUFFIX = "~answer"
"""The answer cookie is the room's session cookie name with this suffix (no room id has `~`)."""

_NONCE = re.compile(r"[0-9]{1,20}")
_TOKEN = re.compile(r"[A-Za-z0-9._:-]{1,2048}")
_VERDICT_BYTES = 65_536


def solves(session_id: str, nonce: str, difficulty: int) -> bool:
    """True when `nonce` is a proof of work of `difficulty` bits for `session_id`."""
    if not _NONCE.fullmatch(nonce):
        return False
    digest = hashlib.sha256(f"{session_id}:{nonce}".encode()).digest()
    return int.from_bytes(digest, "big") >> (256 - difficulty) == 0


def solve(session_id: str, difficulty: int) -> str:
    """A proof of work for `session_id` (what the page's JavaScript does; for tests and tools)."""
    nonce = 0
    while not solves(session_id, str(nonce), difficulty):
        nonce += 1
    return str(nonce)


class Challenges:
    """The challenge of each room, and the check of an answer (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.gate.challenge
        self._secret = settings.challenge_secret
        self._kinds = settings.rooms.overridden(lambda o: o.challenge)
        self._session: aiohttp.ClientSession | None = None

    def kind(self, room: str) -> ChallengeKind:
        """The room's challenge (its override, else the gate's)."""
        return self._kinds.get(room, self._settings.kind)

    def view(self, room: str, cookie_name: str) -> ChallengeView | None:
        """The challenge the page of `room` puts to the browser, or None."""
        kind, s = self.kind(room), self._settings
        if kind is ChallengeKind.NONE:
            return None
        answer = cookie_name + ANSWER_SUFFIX
        if kind is ChallengeKind.PROOF_OF_WORK:
            return ChallengeView(kind.value, answer, difficulty=s.difficulty)
        return ChallengeView(kind.value, answer, 0, s.site_key, s.script_url, s.widget_class)

    async def passed(self, room: str, session_id: str, answer: str | None, ip: str) -> bool:
        """True when `answer` (the answer cookie's value) meets the room's challenge for
        `session_id`; a room without a challenge passes everyone."""
        kind = self.kind(room)
        if kind is ChallengeKind.NONE:
            return True
        if not answer:
            return False
        if kind is ChallengeKind.PROOF_OF_WORK:
            return solves(session_id, answer, self._settings.difficulty)
        return await self._verify(answer, ip)

    def answer(self, headers: HeaderSeq, cookie_name: str) -> str | None:
        """The answer cookie's value in the request's headers."""
        return read_cookie(headers, cookie_name + ANSWER_SUFFIX)

    async def _verify(self, token: str, ip: str) -> bool:
        if not _TOKEN.fullmatch(token) or not self._settings.verify_url:
            return False
        form = {"secret": self._secret, "response": token}
        if ip:
            form["remoteip"] = ip
        try:
            async with self._client().post(
                self._settings.verify_url,
                data=urlencode(form),
                headers={"content-type": "application/x-www-form-urlencoded"},
            ) as r:
                body = await r.content.read(_VERDICT_BYTES)
            verdict = json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # The verifier failing is not the visitor's fault, but nor is it a pass: they see
            # the page again and the widget tries again.
            log.warning("challenge verifier did not answer: %s", exc)
            return False
        return isinstance(verdict, dict) and verdict.get("success") is True

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=self._settings.timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    async def aclose(self) -> None:
        """Close the verifier's connections (at shutdown)."""
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)
