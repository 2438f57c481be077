"""One vocabulary for TLS versions: every spelling the project meets converts through it."""

from __future__ import annotations

import ssl
from typing import get_args

import pytest
from mailharness.servers.errors import ConfigError
from mailharness.servers.faults import TLS_VERSIONS, TLSVersion
from mailharness.servers.tlsversions import (
    MODERN,
    TLSProtocol,
    TLSVersionName,
    limit_versions,
    version_range,
)


def test_the_pin_names_are_the_versions_plus_modern() -> None:
    assert get_args(TLSVersionName) == TLS_VERSIONS
    assert (*(p.value for p in TLSProtocol), "modern") == TLS_VERSIONS


@pytest.mark.parametrize(
    ("protocol", "openssl", "stdlib", "wire"),
    [
        (TLSProtocol.SSLV3, "SSLv3", ssl.TLSVersion.SSLv3, (3, 0)),
        (TLSProtocol.TLS1_0, "TLSv1", ssl.TLSVersion.TLSv1, (3, 1)),
        (TLSProtocol.TLS1_1, "TLSv1.1", ssl.TLSVersion.TLSv1_1, (3, 2)),
        (TLSProtocol.TLS1_2, "TLSv1.2", ssl.TLSVersion.TLSv1_2, (3, 3)),
        (TLSProtocol.TLS1_3, "TLSv1.3", ssl.TLSVersion.TLSv1_3, (3, 4)),
    ],
)
def test_every_spelling_converts_both_ways(
    protocol: TLSProtocol, openssl: str, stdlib: ssl.TLSVersion, wire: tuple[int, int]
) -> None:
    assert (protocol.openssl, protocol.stdlib, protocol.wire) == (openssl, stdlib, wire)
    for spelling in (protocol, protocol.value, openssl, stdlib, wire):
        assert TLSProtocol.parse(spelling) is protocol
    assert protocol.legacy == (wire < (3, 3))


def test_an_unknown_spelling_names_ours() -> None:
    with pytest.raises(ConfigError, match=r"version='1\.0': expected one of 'sslv3', 'tls1\.0'"):
        TLSProtocol.parse("1.0")


def test_ranges_and_contexts() -> None:
    assert version_range("modern") == MODERN == (TLSProtocol.TLS1_2, TLSProtocol.TLS1_3)
    assert version_range(TLSVersion(version="tls1.1").version) == (TLSProtocol.TLS1_1,) * 2
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    limit_versions(ctx, TLSProtocol.TLS1_0, TLSProtocol.TLS1_1)
    assert (ctx.minimum_version, ctx.maximum_version) == (
        ssl.TLSVersion.TLSv1,
        ssl.TLSVersion.TLSv1_1,
    )
