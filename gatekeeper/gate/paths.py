"""PathRules: which requests the gate holds back and in which room, the boundary against bypass."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import unquote

from gatekeeper.asgi import Scope
from gatekeeper.clients import ClientAddresses
from gatekeeper.config.settings import GateSettings
from gatekeeper.ids import ROOM_ID

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Paths an origin may read differently from us: Tomcat's `;params` (`/seats;.css` is /seats,
# `/static/..;/seats` is /seats), backslashes, `//`, dot segments (also `...` and `.. `, which
# Windows trims to `..`), a `%` left after decoding (double encoding), control characters, no
# leading slash, a `?` or `#` (only ever there decoded from `%3F`/`%23`: a decoding hop in front
# of the origin reads the rest as query or fragment). Such a path is always gated (into the room
# of its canonical form) and never bypassed, whatever the globs say.
_SUSPECT = re.compile(r"[;\\%?#\x00-\x1f\x7f]|//|/ *\.[. ]*(?:/|$)|^(?!/)")
# Encoded separators, dots, `%`, `;`, `?` and `#` in the raw path: origins disagree on them.
_RAW_SUSPECT = re.compile(rb"%(?:2[3eEfF5]|5[cC]|3[bBfF])")
# A dot in a segment before the last (`/seats.php/x.css`: PHP's PATH_INFO runs seats.php, and
# `/app.jsp/x.png` likewise): the path may name a script however it ends, so it never bypasses.
# A leading dot (`/.well-known/`) names a directory, not a script.
_DOTTED_DIR = re.compile(r"/[^/]+\.[^/]*(?=/)")
_QUERY = re.compile(r"[?#]")
# User-Agent patterns see only this many leading bytes: a search can be quadratic in the
# length of what it reads (`.*bot` retries from every position), and the header is as long as
# the client likes. Real User-Agents are a few hundred bytes and monitors name themselves
# first, so nothing a bypass list is for lies beyond the prefix.
_AGENT_PREFIX = 512
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_WILD = re.compile(r"\*+|\{room\}")


def normalise(path: str) -> str:
    """`path` as a lenient origin reads it: `\\` is `/`, `;params` dropped from each segment,
    `.`/`..` resolved (never above root), repeated slashes collapsed; always starts with `/`."""
    out: list[str] = []
    segment = ""
    for segment in path.replace("\\", "/").split("/"):
        segment = segment.partition(";")[0]
        if segment == "..":
            if out:
                out.pop()
        elif segment not in ("", "."):
            out.append(segment)
    # As in RFC 3986, a trailing empty or dot segment leaves the path ending in a slash.
    tail = "/" if out and segment in ("", ".", "..") else ""
    return "/" + "/".join(out) + tail


def canonical(path: str) -> str:
    """The form protect and route globs see: `path` as the most lenient origin reads it.

    Like `normalise`, and also cut at a `?` or `#` (decoded from `%3F`/`%23`), trailing dots
    and spaces trimmed from every segment (IIS does), and no trailing slash (many frameworks
    ignore it): `/seats/`, `/seats.`, `/seats%20` and `/seats%3F.css` are all `/seats`."""
    out: list[str] = []
    segments = [s.partition(";")[0] for s in path.replace("\\", "/").split("/")]
    joined = "/".join(segments)
    if cut := _QUERY.search(joined):
        segments = joined[: cut.start()].split("/")
    for segment in segments:
        segment = segment.rstrip(" ")
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            segment = segment.rstrip(". ")
            if segment:
                out.append(segment)
    return "/" + "/".join(out)


def _segment(glob: str, capture: bool) -> str:
    """The regex of one segment's glob, in time linear in the segment's length.

    Each wildcard but the last is atomic and takes the leftmost place where the text after
    it fits: the next wildcard absorbs whatever a later place would have left, so nothing is
    lost, and nothing is retried (a backtracking `*a*a*b` is cubic on a long segment)."""
    wilds = [w for w in _WILD.finditer(glob) if w.group() != "{room}" or capture]
    out = [_text(glob[: wilds[0].start()] if wilds else glob)]
    for i, wild in enumerate(wilds):
        room, capture = capture and wild.group() == "{room}", capture and wild.group() != "{room}"
        star = "(?P<room>[^/]*" if room else "(?:[^/]*"
        last = i == len(wilds) - 1
        text = _text(glob[wild.end() : len(glob) if last else wilds[i + 1].start()])
        out.append(f"{star}){text}" if last else f"(?>{star}?){text})")
    return "".join(out) + "(?![^/])"  # a whole segment, never part of one


def _text(text: str) -> str:
    return re.escape(text).replace(r"\?", "[^/]")


def _glob(pattern: str, room: bool = False) -> str:
    """The regex of a path glob, in time linear in the path's length (see `_segment`).

    `**` as a segment matches any number of segments (so `/a/**` matches `/a`), `*` and `?`
    stay within one; a pattern without a leading `/` matches the last segment(s)."""
    segments: list[str] = []
    for segment in (pattern if pattern.startswith("/") else "/**/" + pattern)[1:].split("/"):
        if segment != "**" and segment.startswith("**"):  # `/**x` is `/**/*x`
            segments.append("**")
            segment = segment[1:]
        tail = segment != "**" and segment.endswith("**")  # `/static**` is `/static*/**`
        segments += [segment[:-1], "**"] if tail else [segment]
    chunks: list[str] = [""]  # the segments between two `**`, each matched as a block
    for segment in segments:
        if segment == "**":
            chunks.append("")
        else:  # only the first `{room}` captures
            chunks[-1] += "/" + _segment(segment, room)
            room = room and "{room}" not in segment
    out = chunks[0]
    for i, chunk in enumerate(chunks[1:], 2):
        # A middle block takes its leftmost place, as a wildcard in `_segment`; the last must
        # end the path, so greedy `.*` finds it from the end.
        out += f"(?:/.*)?{chunk}" if i == len(chunks) else f"(?>(?:/.*?)??{chunk})"
    return out


def _any(patterns: Iterable[str], flags: int) -> re.Pattern[str] | None:
    """One regex matching any of the globs, or None when there are none."""
    joined = "|".join(f"(?:{_glob(p)})" for p in patterns)
    return re.compile(joined, flags | re.DOTALL) if joined else None


def _network(text: str) -> _Network:
    """The network of an IP or CIDR; an IPv4-mapped IPv6 one becomes plain IPv4."""
    net = ipaddress.ip_network(text.strip(), strict=False)
    if isinstance(net, ipaddress.IPv6Network) and net.prefixlen >= 96 and net.subnet_of(_MAPPED):
        bits = int(net.network_address) & 0xFFFFFFFF
        return ipaddress.IPv4Network((bits, net.prefixlen - 96))
    return net


def _fold(path: str) -> str:
    """NFKC of a non-ASCII path: some origins fold `／` to `/` and `ｓ` to `s`."""
    return path if path.isascii() else unicodedata.normalize("NFKC", path)


def _static(path: str) -> bool:
    """True when the clean `path` may bypass: ASCII, and no script before its last segment."""
    return path.isascii() and _DOTTED_DIR.search(path) is None


def _protected(protect: re.Pattern[str], path: str) -> bool:
    """True when `path`, as written or in canonical form, or a script it runs, is protected."""
    if protect.fullmatch(path) or protect.fullmatch(canonical(path)):
        return True
    # `/seats.php/x` runs the script `/seats.php` (PATH_INFO): protected when it is.
    for script in _DOTTED_DIR.finditer(path):
        prefix = path[: script.end()]
        if protect.fullmatch(prefix) or protect.fullmatch(canonical(prefix)):
            return True
    return False


class PathRules:
    """The gate's routing decision, compiled once from the gate settings."""

    def __init__(
        self, gate: GateSettings, default_room: str, addresses: ClientAddresses | None = None
    ) -> None:
        # Protection errs towards gating, so it ignores case; bypass errs towards gating too,
        # so it is case-sensitive: `/STATIC/x` is gated even if the origin ignores case.
        self._protect = _any(gate.protect, re.IGNORECASE)
        self._bypass = _any(gate.bypass, 0)
        self._done = _any(gate.done_paths, re.IGNORECASE)
        self._routes = [
            (re.compile(_glob(r.pattern, room=True), re.IGNORECASE | re.DOTALL), r.room)
            for r in gate.routes
        ]
        self._nets = tuple(_network(ip) for ip in gate.bypass_ips)
        self._agents = tuple(re.compile(agent) for agent in gate.bypass_user_agents)
        self._default = default_room
        self._addresses = addresses or ClientAddresses(())

    @property
    def per_client(self) -> bool:
        """True when the client's IP or User-Agent can change the decision, not only the path."""
        return bool(self._nets or self._agents)

    def room_for(self, scope: Scope) -> str | None:
        """The room gating this request, or None when the request bypasses the gate.

        A request is gated when its path, as written or in its canonical form, matches a
        `protect` glob (ignoring case) or looks ambiguous (see `_SUSPECT`); it bypasses the
        gate when the client IP or User-Agent is listed, or when its path is unambiguous,
        ASCII, names no script (see `_DOTTED_DIR`) and matches a `bypass` glob.
        """
        if self._trusted_client(scope):
            return None
        path = scope.get("path")
        path = path if isinstance(path, str) else ""
        if self._clean(path, scope.get("raw_path")):
            bypass = self._bypass
            if bypass is not None and _static(path) and bypass.fullmatch(path):
                return None
            if not self._protects(path):
                return None
        return self._route(canonical(_fold(path)))

    def is_done(self, path: str) -> bool:
        """True when `path` (scope["path"]) is a configured done path."""
        return self._done is not None and self._done.fullmatch(normalise(_fold(path))) is not None

    @staticmethod
    def _clean(path: str, raw: object) -> bool:
        """True when `path` reads the same to every origin, and `raw` (if any) decodes to it."""
        if _SUSPECT.search(path):
            return False
        if raw is None:
            return True
        if not isinstance(raw, bytes) or _RAW_SUSPECT.search(raw):
            return False
        # The proxy forwards raw_path, so a path that is not its decoding (a rewriting
        # middleware, a server quirk) must not decide for it. Decoding as uvicorn does.
        text = raw.decode("latin-1")
        return (unquote(text) if "%" in text else text) == path

    def _protects(self, path: str) -> bool:
        """True when the clean `path`, or its NFKC folding, is protected (see `_protected`)."""
        protect = self._protect
        if protect is None:
            return False
        if _protected(protect, path):
            return True
        folded = _fold(path)
        if folded == path:
            return False
        # Folding can create separators and dots (`..／seats`): gate those outright.
        return _SUSPECT.search(folded) is not None or _protected(protect, folded)

    def _route(self, path: str) -> str:
        """The room of the first route matching the canonical `path`, else the default."""
        for regex, fixed in self._routes:
            match = regex.fullmatch(path)
            if match is None:
                continue
            if fixed is not None:
                return fixed
            # Checked after matching: IGNORECASE would let `[A-Za-z]` match `K` (Kelvin sign).
            if ROOM_ID.fullmatch(match["room"]):
                return str(match["room"])
        return self._default

    def _trusted_client(self, scope: Scope) -> bool:
        """True when the client IP (see `ClientAddresses`) or User-Agent is on a bypass list."""
        if self._nets:
            ip = self._addresses.address(scope)
            if ip is not None and any(ip in net for net in self._nets):
                return True
        if self._agents:
            for name, value in scope.get("headers") or ():
                if name == b"user-agent":  # the first one, as the origin usually reads it
                    agent = bytes(value[:_AGENT_PREFIX]).decode("latin-1")
                    return any(regex.search(agent) for regex in self._agents)
        return False
