"""The client address (through trusted proxies) and the key per-client limits count by."""

from __future__ import annotations

import pytest

from gatekeeper.asgi import Scope
from gatekeeper.clients import ClientAddresses, client_key, parse_address
from gatekeeper.errors import ConfigError


def scope(peer: str | None, *forwarded: str) -> Scope:
    headers = [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded]
    return {"type": "http", "client": None if peer is None else (peer, 1234), "headers": headers}


def test_the_peer_is_the_client_without_trusted_proxies() -> None:
    addresses = ClientAddresses(())
    assert addresses.key(scope("192.0.2.1", "198.51.100.7")) == "192.0.2.1"
    assert addresses.key(scope(None)) == ""
    assert addresses.key(scope("not an address")) == ""


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.0.0.5", ["192.0.2.1"], "192.0.2.1"),
        ("10.0.0.5", ["6.6.6.6, 192.0.2.1, 10.0.0.9"], "192.0.2.1"),  # right-most untrusted
        ("10.0.0.5", ["6.6.6.6", "192.0.2.1"], "192.0.2.1"),  # several headers, in order
        ("10.0.0.5", ["10.0.0.7, 10.0.0.8"], "10.0.0.7"),  # all trusted: the left-most
        ("10.0.0.5", ["garbage, 10.0.0.8"], "10.0.0.8"),  # no address: stop at its writer
        ("10.0.0.5", [], "10.0.0.5"),
        ("192.0.2.9", ["198.51.100.7"], "192.0.2.9"),  # an untrusted peer's claim is ignored
        ("::ffff:10.0.0.5", ["192.0.2.1"], "192.0.2.1"),  # an IPv4-mapped trusted peer
    ],
)
def test_forwarded_for_is_read_only_through_trusted_proxies(
    peer: str, forwarded: list[str], client: str
) -> None:
    addresses = ClientAddresses(("10.0.0.0/8",))
    assert addresses.key(scope(peer, *forwarded)) == client


def test_a_long_forwarded_chain_is_read_from_the_right_only() -> None:
    addresses = ClientAddresses(("10.0.0.0/8",))
    chain = ", ".join(["10.0.0.1"] * 100_000)
    assert addresses.key(scope("10.0.0.5", chain)) == "10.0.0.1"


def test_ipv6_clients_are_keyed_by_their_64() -> None:
    v6 = parse_address("2001:db8:1:2:3:4:5:6")
    assert v6 is not None and client_key(v6) == "2001:db8:1:2::/64"
    mapped = parse_address("::ffff:192.0.2.1")
    assert mapped is not None and client_key(mapped) == "192.0.2.1"


def test_a_bad_trusted_network_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ClientAddresses(("10.0.0.0/33",))
