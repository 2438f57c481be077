"""Fault values validate themselves, and a fault set is checked as a whole."""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import mailharness
import pytest
from mailharness.certs import MailCA
from mailharness.servers import faults
from mailharness.servers.errors import ConfigError
from mailharness.servers.faults import (
    FAULT_KINDS,
    Allowlist,
    Bandwidth,
    ConnectionCap,
    DropAfter,
    DropOnCommand,
    FaultFront,
    FirewallDrop,
    Latency,
    Refuse,
    Reset,
    TLSVersion,
)
from mailharness.servers.faults.front import check_faults
from mailharness.servers.faults.shaping import Shaper

README = Path(__file__).resolve().parents[2] / "README.md"


def test_one_list_of_faults_exported_and_documented_as_is() -> None:
    """FAULT_KINDS is the list; the packages' exports and the README's two lists follow it."""
    names = [cls.__name__ for cls in FAULT_KINDS.values()]
    assert set(names) <= set(faults.__all__) & set(mailharness.__all__)
    assert all(getattr(mailharness, name) is getattr(faults, name) for name in names)
    text = README.read_text()
    classes = re.search(r"Faults:\n(.*?)\)\.?\n", text, re.S)
    assert classes is not None
    assert re.findall(r"`([A-Z]\w+)`", classes.group(1)) == names
    kinds = re.search(r'^kind = "latency" +# (.*)\n.* +# (.*)$', text, re.M)
    assert kinds is not None
    assert ", ".join(kinds.groups()).replace(",,", ",").split(", ") == list(FAULT_KINDS)


def test_faults_are_frozen_slotted_and_keyword_only() -> None:
    latency = Latency(ms=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        latency.ms = 20  # type: ignore[misc]
    assert not hasattr(latency, "__dict__")
    with pytest.raises(TypeError):
        Latency(10)  # type: ignore[call-arg]
    assert dataclasses.replace(latency, ms=20) == Latency(ms=20)
    assert Latency.live and not Reset.live


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Latency(ms=5, direction="down"),  # type: ignore[arg-type]
            "direction='down': expected one of 'downstream', 'upstream', 'both'",
        ),
        (lambda: Latency(ms=-1), "ms=-1: expected a number >= 0"),
        (lambda: Bandwidth(bytes_per_second=0), "bytes_per_second=0: expected an integer >= 1"),
        (lambda: DropAfter(bytes=-5), "bytes=-5: expected an integer >= 0"),
        (lambda: Reset(probability=1.5), "probability=1.5: expected a number from 0.0 to 1.0"),
        (lambda: DropOnCommand(pattern=b"("), "pattern=b'(': not a regular expression"),
        (lambda: DropOnCommand(pattern="FETCH"), "pattern='FETCH': expected non-empty bytes"),  # type: ignore[arg-type]
        (
            lambda: Allowlist(mode="deny"),  # type: ignore[arg-type]
            "mode='deny': expected one of 'close', 'reset', 'hang', 'greeting', 'login', 'rcpt'",
        ),
        (lambda: Allowlist(networks=("10.0.0.300/8",)), "'10.0.0.300/8' is not a network"),
        (lambda: Allowlist(networks="127.0.0.1/32"), "expected a tuple of networks"),  # type: ignore[arg-type]
        (lambda: ConnectionCap(), "set max_total, per_source or both"),
        (lambda: ConnectionCap(max_total=1, on_excess="bye"), "on_excess='bye': expected one of"),
        (
            lambda: TLSVersion(version="tls1.4"),  # type: ignore[arg-type]
            "version='tls1.4': expected one of 'sslv3', 'tls1.0', 'tls1.1', 'tls1.2', 'tls1.3', "
            "'modern' (did you mean 'tls1.3' or 'tls1.2' or 'tls1.1'?)",
        ),
    ],
)
def test_bad_values_name_field_value_and_allowed(build: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build()  # type: ignore[operator]
    assert message in str(info.value)


def test_allowlist_normalises_and_matches_sources() -> None:
    allow = Allowlist(networks=("127.0.0.1", "::1/128"))
    assert allow.networks == ("127.0.0.1/32", "::1/128")
    assert allow.allows("127.0.0.1") and allow.allows("::1")
    assert not allow.allows("127.0.0.2")


def test_a_fault_set_is_checked_as_a_whole() -> None:
    with pytest.raises(ConfigError, match="2 Reset values; at most one allowed"):
        check_faults([Reset(), Reset(probability=0.5)], "imap", None)
    with pytest.raises(ConfigError, match="Refuse and FirewallDrop together"):
        check_faults([Refuse(), FirewallDrop()], None, None)
    with pytest.raises(ConfigError, match="is not a fault"):
        check_faults(["latency"], None, None)
    with pytest.raises(ConfigError, match="needs certs="):
        check_faults([TLSVersion()], "imap", None)
    with pytest.raises(ConfigError, match="must know its protocol"):
        check_faults([Allowlist(mode="greeting")], None, None)
    with pytest.raises(ConfigError, match="mode='rcpt' is for SMTP"):
        check_faults([Allowlist(mode="rcpt")], "imap", None)
    # Two latencies (one per direction) are fine.
    both = check_faults([Latency(ms=1), Latency(ms=2, direction="upstream")], None, None)
    assert len(both) == 2


def test_unknown_certificate_variant_fails_when_set_not_at_first_client() -> None:
    with MailCA() as ca:
        front = FaultFront(("127.0.0.1", 1), protocol="imap", certs=ca)
        with pytest.raises(ConfigError, match="cert='expird': expected one of"):
            front.set(TLSVersion(cert="expird"))
        assert front.faults == ()


def test_front_refuses_non_loopback_backends_and_unknown_protocols() -> None:
    with pytest.raises(ConfigError, match="expected a loopback address"):
        FaultFront(("192.0.2.1", 143))
    with pytest.raises(ConfigError, match="protocol='pop3': expected one of 'imap', 'smtp'"):
        FaultFront(("127.0.0.1", 110), protocol="pop3")


def test_fault_set_edits_are_values() -> None:
    front = FaultFront(("127.0.0.1", 1))
    front.set(Latency(ms=5), Bandwidth(bytes_per_second=10))
    front.add(DropAfter(bytes=3))
    front.remove(Latency)
    front.remove(DropAfter(bytes=3))
    assert front.faults == (Bandwidth(bytes_per_second=10),)
    front.clear()
    assert not front.faults


def test_shaper_cuts_at_drop_points_and_counts_across_chunks() -> None:
    shaper = Shaper("downstream", random.Random(0))
    faults = (DropAfter(bytes=5), DropAfter(bytes=100, direction="upstream"))
    assert shaper.limit(faults, b"abc") == (b"abc", None)
    data, reason = shaper.limit(faults, b"defgh")
    assert data == b"de" and reason is not None and "DropAfter(bytes=5" in reason
    upstream = Shaper("upstream", random.Random(0))
    assert upstream.limit(faults, b"x" * 50) == (b"x" * 50, None)


def test_shaper_latency_jitter_stays_in_range_and_rate_takes_the_minimum() -> None:
    shaper = Shaper("upstream", random.Random(1))
    faults = (
        Latency(ms=50, jitter_ms=10, direction="both"),
        Latency(ms=1000),  # downstream only: not ours
        Bandwidth(bytes_per_second=500, direction="both"),
        Bandwidth(bytes_per_second=100, direction="upstream"),
    )
    delays = [shaper.delay(faults) for _ in range(200)]
    assert 0.040 <= min(delays) < 0.045 and 0.055 < max(delays) <= 0.060
    assert shaper.rate(faults) == 100
    assert shaper.delay((Latency(ms=50, probability=0.0),)) == 0.0
