"""Tests for PathRules: what is gated, what bypasses, which room, and path normalisation."""

from __future__ import annotations

import posixpath
import random
import re
import time
import unicodedata
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatekeeper.config.settings import GateRoute, GateSettings
from gatekeeper.gate.paths import PathRules, canonical, normalise

DEFAULT = "default"


def rules(**gate: Any) -> PathRules:
    return PathRules(GateSettings(**gate), DEFAULT)


def scope(
    path: str,
    raw: bytes | None = None,
    *,
    method: str = "GET",
    client: tuple[str, int] | None = ("203.0.113.9", 40000),
    agent: bytes | None = None,
    kind: str = "http",
) -> dict[str, Any]:
    headers = [(b"host", b"shop.example")]
    if agent is not None:
        headers.append((b"user-agent", agent))
    out: dict[str, Any] = {"type": kind, "path": path, "headers": headers, "client": client}
    if kind == "http":
        out["method"] = method
    if raw is not None:
        out["raw_path"] = raw
    return out


DEFAULTS = rules()
ASSETS = rules(bypass=("/static/**", "*.css", "/healthz"))


# --- examples: default config -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/static/app.css", "/app.js", "/img/logo.png", "/favicon.ico", "/robots.txt", "/a.map"],
)
def test_default_config_lets_assets_through(path: str) -> None:
    assert DEFAULTS.room_for(scope(path, path.encode())) is None


@pytest.mark.parametrize("path", ["/", "/seats", "/seats/A1", "/checkout", "/static/", "/x.cs"])
def test_default_config_gates_everything_else(path: str) -> None:
    assert DEFAULTS.room_for(scope(path, path.encode())) == DEFAULT


TRICKS = [
    ("/Seats", None),
    ("/SEATS", None),
    ("//seats", None),
    ("/seats/../seats", None),
    ("/static/../seats", None),
    ("/static/../seats", b"/static/..%2Fseats"),
    ("/static/../seats", b"/static/%2e%2e/seats"),
    ("/seats;.css", None),
    ("/seats;.css", b"/seats%3b.css"),
    ("/seats;.css", b"/seats%3B.css"),
    ("/static/..;/seats", None),
    ("/static\\..\\seats", None),
    ("/static/x\\..\\..\\seats", None),
    ("/static/x\\..\\..\\seats", b"/static/x%5c..%5C..%5cseats"),
    ("/./seats", None),
    ("/x/..", None),
    ("/x/.", None),
    ("/static/.", None),
    ("/static/..", None),
    ("/static/.../seats", None),
    ("/static/.. /seats", None),
    ("/static/%2e%2e/seats", b"/static/%252e%252e/seats"),  # double encoding
    ("/static/%2e%2e/seats", None),
    ("/static/%2F../seats", None),
    ("/app.css", b"/app%2ecss"),  # an encoded dot in an otherwise bypassed path
    ("/static/x\x00.css", None),
    ("/static/x\n.css", None),
    ("/static/app.css", b"/seats"),  # raw_path (what is forwarded) disagrees with path
    ("/static/app.css", b"/static/app.css?x=1"),
    ("/static/café.css", b"/static/caf%C3%A9.css"),  # non-ASCII never bypasses
    ("/static/café.css", "/static/café.css".encode()),  # raw UTF-8 is not what path says
    ("/static/..／seats", None),  # a fullwidth solidus, `/` to an NFKC-folding origin
    ("/ｓeats.css", None),
    ("static/app.css", None),  # no leading slash
    ("", None),
    ("*", None),
]


@pytest.mark.parametrize(("path", "raw"), TRICKS)
def test_path_tricks_are_gated(path: str, raw: bytes | None) -> None:
    assert DEFAULTS.room_for(scope(path, raw)) == DEFAULT
    assert ASSETS.room_for(scope(path, raw)) == DEFAULT


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
def test_every_method_is_gated_alike(method: str) -> None:
    assert DEFAULTS.room_for(scope("/seats", method=method)) == DEFAULT
    assert DEFAULTS.room_for(scope("/app.css", method=method)) is None


def test_websocket_scopes_follow_the_same_rules() -> None:
    assert DEFAULTS.room_for(scope("/live", kind="websocket")) == DEFAULT
    assert DEFAULTS.room_for(scope("/live.js", kind="websocket")) is None


def test_bypass_is_case_sensitive() -> None:
    assert ASSETS.room_for(scope("/healthz")) is None
    assert ASSETS.room_for(scope("/static")) is None  # `/**` matches the empty remainder
    for path in ("/HEALTHZ", "/Static/x", "/app.CSS", "/healthz/", "/healthzz"):
        assert ASSETS.room_for(scope(path)) == DEFAULT, path


# --- narrow protect lists ------------------------------------------------------------------


NARROW = rules(protect=("/seats/**", "/checkout"), bypass=("*.css",))


@pytest.mark.parametrize("path", ["/", "/about", "/seat", "/seatsx", "/checkout/x", "/café"])
def test_unprotected_paths_pass(path: str) -> None:
    assert NARROW.room_for(scope(path)) is None


@pytest.mark.parametrize(
    "path",
    [
        "/seats",
        "/seats/A1",
        "/SEATS/a1",
        "/Checkout",
        "/about/../seats",
        "/about/..;/seats",
        "/about;/x",  # ambiguous: gated even though no reading is protected
        "/ｓｅａｔｓ/A1",  # fullwidth letters fold to /seats/A1
        "/about/..／seats",  # folds to a traversal
        "/ſeats/A1",  # long s: the same letter as s when case is ignored
    ],
)
def test_protected_and_ambiguous_paths_are_gated(path: str) -> None:
    assert NARROW.room_for(scope(path)) == DEFAULT


def test_a_clean_bypass_path_wins_over_protect() -> None:
    assert NARROW.room_for(scope("/seats/A1.css")) is None
    assert NARROW.room_for(scope("/seats/A1;.css")) == DEFAULT


def test_empty_protect_list_gates_only_ambiguous_paths() -> None:
    r = rules(protect=(), bypass=())
    assert r.room_for(scope("/seats")) is None
    assert r.room_for(scope("//seats")) == DEFAULT


# --- globs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "path", "hit"),
    [
        ("/a/*", "/a/b", True),
        ("/a/*", "/a/", True),
        ("/a/*", "/a/b/c", False),
        ("/a/**", "/a", True),
        ("/a/**", "/a/b/c", True),
        ("/a/**", "/ab", False),
        ("/a/**/z", "/a/z", True),
        ("/a/**/z", "/a/b/c/z", True),
        ("/a/**/b/**/c", "/a/bx/b/y/c", True),
        ("/a/**/b/**/c", "/a/bx/c", False),
        ("/**/b", "/b/x/b", True),
        ("/**/b", "/b/x", False),
        ("/a/*b*c", "/a/xbbyc", True),
        ("/a/*b*c", "/a/xbbcy", False),
        ("/a**", "/abc/d", True),
        ("/a?c", "/abc", True),
        ("/a?c", "/a/c", False),
        ("/a.b", "/aXb", False),  # `.` is literal
        ("/a+(b)", "/a+(b)", True),
        ("*.css", "/x/y/app.css", True),
        ("*.css", "/app.css/x", False),
        ("app.css", "/deep/app.css", True),
        ("app.css", "/deep/myapp.css", False),
        ("x/*.css", "/a/x/b.css", True),
    ],
)
def test_glob_semantics(glob: str, path: str, hit: bool) -> None:
    r = rules(protect=("/**",), bypass=(glob,))
    assert (r.room_for(scope(path)) is None) is hit


def _reference(glob: str) -> re.Pattern[str]:
    """The obvious backtracking translation of a glob: fine for short paths only."""
    glob = glob if glob.startswith("/") else "/**/" + glob  # the last segment(s)
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("/**", i) and glob[i + 3 : i + 4] in ("", "/"):
            out, i = out + "(?:/.*)?", i + 3
        elif glob.startswith("**", i):  # across segments at a segment's start or end
            edge = glob[i - 1 : i] in ("", "/") or glob[i + 2 : i + 3] in ("", "/")
            out, i = out + (".*" if edge else "[^/]*"), i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(glob[i], re.escape(glob[i]))
            i += 1
    return re.compile(out, re.IGNORECASE | re.DOTALL)


_GLOBS = st.lists(st.sampled_from(["/", "/", "a", "b", "*", "**", "?", "/**", "."]), max_size=7)
_SUBJECTS = st.lists(st.sampled_from(["/", "a", "b", "A", "ab", "."]), max_size=8)


@settings(max_examples=300)
@given(_GLOBS, st.lists(_SUBJECTS, min_size=1, max_size=10))
def test_globs_match_like_the_plain_translation(glob: list[str], paths: list[list[str]]) -> None:
    pattern = "".join(glob)
    if "***" in pattern:
        return
    r, reference = rules(done_paths=(pattern,)), _reference(pattern)
    for parts in paths:
        path = normalise("/" + "".join(parts))
        assert r.is_done(path) == bool(reference.fullmatch(path)), (pattern, path)


@pytest.mark.parametrize(
    "glob", ["/a/**/b/**/b/**/c", "/a/*b*b*b*c", "**b*b*c", "/**/*/*/*/x", "/**/a/**"]
)
def test_globs_take_linear_time(glob: str) -> None:
    r = rules(protect=(glob,), bypass=(glob,), done_paths=(glob,), routes=(GateRoute(glob, "x"),))
    start = time.perf_counter()
    for path in ("/a/" + "b/" * 8000 + "x/y", "/a/" + "b" * 16000, "/a/" + "ab/" * 5000):
        r.room_for(scope(path))
        r.is_done(path)
    assert time.perf_counter() - start < 1.0  # a backtracking translation takes hours


# --- client bypass -------------------------------------------------------------------------


IPS = rules(bypass_ips=("198.51.100.7", "10.0.0.0/8", "2001:db8::/32", "::ffff:192.0.2.0/120"))


@pytest.mark.parametrize(
    ("host", "passes"),
    [
        ("198.51.100.7", True),
        ("198.51.100.8", False),
        ("10.200.3.4", True),
        ("11.0.0.1", False),
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("::ffff:10.1.2.3", True),  # IPv4-mapped client
        ("::ffff:11.1.2.3", False),
        ("192.0.2.55", True),  # IPv4-mapped network in the config
        ("not-an-ip", False),
        ("/run/gate.sock", False),
        ("", False),
    ],
)
def test_bypass_ips(host: str, passes: bool) -> None:
    room = IPS.room_for(scope("/seats", client=(host, 1)))
    assert room == (None if passes else DEFAULT)


def test_bypass_ips_without_a_client() -> None:
    assert IPS.room_for(scope("/seats", client=None)) == DEFAULT


def test_bypass_ip_lets_even_ambiguous_paths_through() -> None:
    assert IPS.room_for(scope("/static/../seats", client=("10.0.0.1", 1))) is None


@pytest.mark.parametrize(
    ("agent", "passes"),
    [
        (b"UptimeRobot/2.0", True),
        (b"Mozilla/5.0 (compatible; Pingdom.com_bot_version_1.4)", True),
        (b"Mozilla/5.0 uptimerobot", False),  # the regex is case-sensitive as written
        (b"Mozilla/5.0", False),
        (b"\xff\xfe", False),
        (None, False),
    ],
)
def test_bypass_user_agents(agent: bytes | None, passes: bool) -> None:
    r = rules(bypass_user_agents=("^UptimeRobot/", "Pingdom"))
    assert r.room_for(scope("/seats", agent=agent)) == (None if passes else DEFAULT)


# --- routes --------------------------------------------------------------------------------


ROUTED = rules(
    routes=(
        GateRoute("/events/{room}/**"),
        GateRoute("/checkout/**", "checkout"),
        GateRoute("/shop/{room}"),
        GateRoute("/shop/**", "shop"),
    )
)


@pytest.mark.parametrize(
    ("path", "room"),
    [
        ("/events/E1/seats", "E1"),
        ("/events/E1", "E1"),
        ("/events/E1/", "E1"),
        ("/EVENTS/E1/seats", "E1"),  # the pattern ignores case, the room keeps it
        ("/events/black-friday_2.0/x", "black-friday_2.0"),
        ("/events/x/../E2/seats", "E2"),  # rooms come from the normalised path
        ("/events/E1;jsessionid=1/seats", "E1"),
        ("//events//E1//seats", "E1"),
        ("/events/Ｅ１/seats", "E1"),  # fullwidth folds to ASCII
        ("/events/E!1/seats", DEFAULT),  # not a room id: the route does not match
        ("/events/" + "e" * 65 + "/x", DEFAULT),
        ("/events/\u212a1/x", "K1"),  # the Kelvin sign folds to K
        ("/events/É1/x", DEFAULT),
        ("/events", DEFAULT),
        ("/checkout", "checkout"),
        ("/checkout/pay", "checkout"),
        ("/shop/s1", "s1"),  # first match wins
        ("/shop/s!1", "shop"),  # ...and a non-room segment falls through to the next
        ("/shop/s1/x", "shop"),
        ("/elsewhere", DEFAULT),
    ],
)
def test_routes(path: str, room: str) -> None:
    assert ROUTED.room_for(scope(path)) == room


def test_routes_only_choose_rooms_of_gated_requests() -> None:
    r = rules(protect=("/seats/**",), routes=(GateRoute("/events/{room}/**"),))
    assert r.room_for(scope("/events/E1/info")) is None
    assert r.room_for(scope("/seats/events/E1/info")) == DEFAULT


# --- done paths ----------------------------------------------------------------------------


def test_done_paths() -> None:
    r = rules(done_paths=("/checkout/done", "/events/*/thanks", "receipt.html"))
    for path in ("/checkout/done", "/Checkout/DONE", "/x/../checkout/done", "//checkout/done"):
        assert r.is_done(path), path
    assert r.is_done("/events/E1/thanks")
    assert r.is_done("/a/b/receipt.html")
    for path in ("/checkout", "/checkout/done/x", "/events/E1/x/thanks", "/receipt.htm"):
        assert not r.is_done(path), path
    assert not DEFAULTS.is_done("/anything")


# --- normalise -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("", "/"),
        ("/", "/"),
        ("a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("//a///b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/a/../../..", "/"),
        ("/../a", "/a"),
        ("\\a\\..\\b", "/b"),
        ("/a;x=1/b;y", "/a/b"),
        ("/a/..;/b", "/b"),
        ("/;x/b", "/b"),
        ("/seats;.css", "/seats"),
        ("/Seats", "/Seats"),  # case is kept: matching ignores it where it should
        ("/a/.../b", "/a/.../b"),
    ],
)
def test_normalise(path: str, normal: str) -> None:
    assert normalise(path) == normal


@given(st.text())
def test_normalise_is_a_total_idempotent_canonical_form(path: str) -> None:
    normal = normalise(path)
    assert normal.startswith("/")
    assert "//" not in normal and "\\" not in normal and ";" not in normal
    assert all(segment not in (".", "..") for segment in normal.split("/"))
    assert normalise(normal) == normal


@given(st.lists(st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", fullmatch=True), max_size=5))
def test_normalise_keeps_clean_paths(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    assert normalise(path) == path
    if segments:
        assert normalise(path + "/") == path + "/"


# --- properties ----------------------------------------------------------------------------

PROPERTY = rules(
    protect=("/**",),
    bypass=("/static/**", "*.css", "/healthz"),
    routes=(GateRoute("/events/{room}/**"),),
)


_RATES = st.sampled_from([0.0, 0.0, 0.1, 0.5])  # often none: test the path alone
_SEEDS = st.integers(0, 2**32)


@st.composite
def encoded(draw: st.DrawFn, path: str) -> tuple[str, bytes]:
    """(path, raw_path) as a server hands them over: `raw` percent-encodes some characters."""
    rate, rnd = draw(_RATES), random.Random(draw(_SEEDS))  # one draw per path, not per char
    out = []
    for char in path:
        must = char in "%?# " or not char.isascii() or not char.isprintable()
        if must or rnd.random() < rate:
            for byte in char.encode("utf-8", "surrogatepass"):
                code = f"{byte:02X}"
                out.append("%" + (code.lower() if rnd.random() < 0.5 else code))
        else:
            out.append(char)
    raw = "".join(out)
    return unquote(raw), raw.encode("ascii")


_DETOURS = st.lists(
    st.sampled_from(
        ["", ".", "static/..", "x/..", "static/x.css/../..", "healthz/..", "static/..;"]
    ),
    max_size=2,
)
_PARAMS = st.one_of(
    st.none(),
    st.none(),
    st.sampled_from([".css", "x.css", "..", "x"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters="/\\")),
)
_SEPARATORS_OF_VARIANTS = st.sampled_from(["/", "/", "//", "\\", "/./"])
_ENDINGS = st.sampled_from(["", "/", "/.", "//", ";.css", "/;x.css", "\\"])


@st.composite
def variants(draw: st.DrawFn, base: str) -> tuple[str, bytes]:
    """A path a lenient origin reads as `base`: case, detours, `;params`, separators."""
    parts: list[str] = []
    for segment in base.strip("/").split("/"):
        parts += draw(_DETOURS)
        flips = draw(_SEEDS)  # one draw for the case of every letter
        segment = "".join(c.swapcase() if flips >> i & 1 else c for i, c in enumerate(segment))
        params = draw(_PARAMS)
        parts.append(segment if params is None else f"{segment};{params}")
    path = "".join(draw(_SEPARATORS_OF_VARIANTS) + part for part in parts)
    return draw(encoded(path + draw(_ENDINGS)))


@settings(max_examples=250, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_variants_of_protected_paths_are_always_gated(data: st.DataObject) -> None:
    path, raw = data.draw(variants("/seats/A1"))
    assert PROPERTY.room_for(scope(path, raw)) == DEFAULT, (path, raw)
    path, raw = data.draw(variants("/events/E1/checkout"))
    room = PROPERTY.room_for(scope(path, raw))
    assert room is not None and room.lower() == "e1", (path, raw, room)


def _readings(path: str) -> set[str]:
    """How assorted origins may read a request path: decoded once or twice, or NFKC-folded;
    `;params` kept, cut per segment or cut at the first `;`; Windows trailing dots/spaces
    trimmed; dot segments resolved or not; slashes collapsed; case ignored."""
    sources = {path, unquote(path), unicodedata.normalize("NFKC", path)}
    out = set()
    for source in sources:
        source = source.replace("\\", "/")
        per_segment = "/".join(s.split(";")[0] for s in source.split("/"))
        for text in (source, per_segment, source.split(";")[0]):
            for trim in (False, True):
                segments = text.split("/")
                if trim:
                    segments = [s if s in (".", "..") else s.rstrip(". ") for s in segments]
                collapsed = re.sub("/+", "/", "/" + "/".join(segments))
                out.add(collapsed.lower())
                out.add(posixpath.normpath(collapsed).lower())
    return out


def _bypass_reading(reading: str) -> bool:
    last = reading.rsplit("/", 1)[-1]
    static = reading == "/static" or reading.startswith("/static/")
    return static or reading == "/healthz" or last.endswith(".css")


_DOTS = st.sampled_from(["..", ".", "...", ".. ", ". ", "..;", "%2e%2e", "%2e", "．．"])
_NAMES = st.sampled_from(["static", "STATIC", "seats", "healthz", "app.css", "x.CSS", ".css", "x"])
_ODD = st.sampled_from(["", " ", ";x.css", "x;", "%2F"])
_PIECES = st.lists(
    st.tuples(
        st.sampled_from(["/", "/", "/", "/", "/", "\\", "//", "／"]),
        st.one_of(_DOTS, _DOTS, _NAMES, _ODD),
    ),
    min_size=1,
    max_size=3,
)
# Mostly below /static and not ending in .css: where an escape would be a real bypass.
_HEADS = st.sampled_from(["/static", "/static", "/static", "", "/healthz"])
_TAILS = st.sampled_from(["", "", "", "/seats", "/x", "/app.css", ".css", "/healthz"])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_HEADS, _PIECES, _TAILS, st.data())
def test_a_bypass_is_a_bypass_for_every_reading(
    head: str, pieces: list[tuple[str, str]], tail: str, data: st.DataObject
) -> None:
    path, raw = data.draw(encoded(head + "".join(a + b for a, b in pieces) + tail))
    if PROPERTY.room_for(scope(path, raw)) is None:
        readings = _readings(path)
        assert all(_bypass_reading(r) for r in readings), (path, raw, readings)


FULL = rules(
    bypass_ips=("10.0.0.0/8", "::ffff:192.0.2.0/120"),
    bypass_user_agents=("^Uptime",),
    routes=(GateRoute("/events/{room}/**"), GateRoute("/c/**", "c")),
    done_paths=("/done", "*.done"),
)


@given(
    path=st.text(),
    raw=st.one_of(st.none(), st.binary()),
    host=st.one_of(st.text(), st.sampled_from(["10.0.0.1", "::ffff:192.0.2.1", "::1"])),
    agent=st.one_of(st.none(), st.binary()),
)
def test_never_raises(path: str, raw: bytes | None, host: str, agent: bytes | None) -> None:
    room = FULL.room_for(scope(path, raw, client=(host, 1), agent=agent))
    assert room is None or isinstance(room, str)
    assert isinstance(FULL.is_done(path), bool)
    assert isinstance(normalise(path), str)


# --- canonical form: trailing slash, dots, spaces, encoded `?` and `#` ------------------------


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/seats/", "/seats"),
        ("/seats.", "/seats"),
        ("/seats. .", "/seats"),
        ("/checkout./pay ", "/checkout/pay"),
        ("/seats?.css", "/seats"),
        ("/seats#.css", "/seats"),
        ("/a;x?y/b", "/a/b"),  # `;params` go first, as in `normalise`
        ("/a/. /b", "/a/b"),
        ("/a/.. /b", "/b"),
        ("\\a\\b\\", "/a/b"),
        ("", "/"),
    ],
)
def test_canonical(path: str, form: str) -> None:
    assert canonical(path) == form


@given(st.text())
def test_canonical_is_idempotent(path: str) -> None:
    form = canonical(path)
    assert form.startswith("/") and canonical(form) == form
    assert form == "/" or not form.endswith("/")


@pytest.mark.parametrize(
    "path",
    ["/seats/", "/SEATS/", "/seats.", "/seats ", "/Seats. ", "/checkout./pay", "/checkout /pay",
     "/checkout/pay/", "/seats?.css", "/seats#.css"],
)  # fmt: skip
def test_variants_of_a_narrow_protect_list_are_gated(path: str) -> None:
    r = rules(protect=("/seats", "/checkout/**"), bypass=("*.css",))
    assert r.room_for(scope(path)) == DEFAULT, path
    raw = path.replace(" ", "%20").replace("?", "%3F").replace("#", "%23").encode()
    assert r.room_for(scope(path, raw)) == DEFAULT, raw


@pytest.mark.parametrize(
    "raw", [b"/seats%3F.css", b"/seats%3f.css", b"/seats%23.css", b"/static/x%3Fy.css"]
)
def test_encoded_query_and_fragment_marks_are_never_bypassed(raw: bytes) -> None:
    assert DEFAULTS.room_for(scope(unquote(raw.decode()), raw)) == DEFAULT
    assert ASSETS.room_for(scope(unquote(raw.decode()), raw)) == DEFAULT


@pytest.mark.parametrize(
    "path", ["/seats.php/x.css", "/static/x.jsp/a.css", "/static/v1.2/app.css", "/a./b.png"]
)
def test_a_dotted_segment_before_the_last_never_bypasses(path: str) -> None:
    assert DEFAULTS.room_for(scope(path, path.encode())) == DEFAULT
    assert ASSETS.room_for(scope(path, path.encode())) == DEFAULT


def test_a_script_with_path_info_is_protected_as_the_script() -> None:
    r = rules(protect=("/seats.php", "/pay"), bypass=("*.css",))
    for path in ("/seats.php/x.css", "/SEATS.PHP/x", "/seats.php/a/b", "/pay./x.css"):
        assert r.room_for(scope(path)) == DEFAULT, path
    for path in ("/about.php/x", "/seats.phpx/y", "/app.css", "/.well-known/a.css"):
        assert r.room_for(scope(path)) is None, path


def test_rooms_come_from_the_canonical_path() -> None:
    for path in ("/events/E1./seats", "/events/E1 /seats", "/events/E1?/x", "/events/E1/"):
        assert ROUTED.room_for(scope(path)) == "E1", path
    assert ROUTED.room_for(scope("/checkout./pay")) == "checkout"
