"""Sentinel URLs: parsed without a Redis client, checked by the config."""

from __future__ import annotations

import pytest

from gatekeeper.config import load_config
from gatekeeper.config.redis_url import SentinelURL, parse_sentinel_url
from gatekeeper.config.values import redis_url
from gatekeeper.errors import ConfigError


def test_a_sentinel_url_names_sentinels_service_database_and_credentials() -> None:
    parsed = parse_sentinel_url(
        "redis+sentinel://u:p%40ss@s1:26379,[::1]:26380,s3/my%2Dmaster/2"
        "?sentinel_password=s%26p&sentinel_username=watch"
    )
    assert parsed == SentinelURL(
        sentinels=(("s1", 26379), ("::1", 26380), ("s3", 26379)),
        service="my-master",
        db=2,
        ssl=False,
        username="u",
        password="p@ss",
        sentinel_username="watch",
        sentinel_password="s&p",
    )


def test_defaults_and_tls() -> None:
    plain = parse_sentinel_url("redis+sentinel://h/mymaster")
    assert (plain.sentinels, plain.db, plain.ssl, plain.password) == (
        (("h", 26379),),
        0,
        False,
        None,
    )
    assert plain.sentinel_password is None
    assert parse_sentinel_url("redis+sentinel://:secret@h/m/").password == "secret"
    tls = parse_sentinel_url(
        "rediss+sentinel://h:1/m/0?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem&ssl_check_hostname=false"
    )
    assert tls.ssl
    assert dict(tls.tls) == {
        "ssl_cert_reqs": "none",
        "ssl_ca_certs": "/ca.pem",
        "ssl_check_hostname": "false",
    }


@pytest.mark.parametrize(
    "bad",
    [
        "redis+sentinel://h",  # no service
        "redis+sentinel://h/",  # no service
        "redis+sentinel://h/m/x",  # database not a number
        "redis+sentinel://h/m/0/1",
        "redis+sentinel://h:0/m",
        "redis+sentinel://h:70000/m",
        "redis+sentinel://h,,i/m",
        "redis+sentinel:///m",
        "redis+sentinel://h/m?db=1",  # unknown option
        "redis+sentinel://h/m?sentinel_password=a&sentinel_password=b",
        "redis+sentinel://h/m?ssl_cert_reqs=none",  # TLS options need rediss+sentinel
        "rediss+sentinel://h/m?ssl_cert_reqs=maybe",
        "rediss+sentinel://h/m?ssl_check_hostname=perhaps",
        "redis+sentinel://h/m#frag",
        "redis+cluster://h/m",
    ],
)
def test_malformed_sentinel_urls_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_sentinel_url(bad)
    if bad.startswith("redis+sentinel") or bad.startswith("rediss+sentinel"):
        assert not redis_url(bad)


def test_the_config_accepts_sentinel_urls_and_names_the_problem_otherwise() -> None:
    good = "rediss+sentinel://:pw@a:26379,b:26380/mymaster/1?sentinel_password=x"
    assert redis_url(good)
    assert redis_url("redis+sentinel://a/mymaster")
    settings = load_config(environ={"WAITINGROOM_REDIS_URL": good})
    assert settings.redis.url == good
    with pytest.raises(ConfigError, match="redis.url"):
        load_config(environ={"WAITINGROOM_REDIS_URL": "redis+sentinel://a"})
