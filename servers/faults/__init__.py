"""The fault front: network and TLS faults before any IMAP/SMTP backend, fake or real.

One asyncio TCP proxy (`FaultFront`) on a loopback address forwards to a
backend address and applies fault values (`Latency`, `DropAfter`,
`TLSVersion`...) that a test switches at run time. See `front.py` for the
lifecycle, `toxics.py` for every fault, `tls.py`/`sslv3.py` for version
pinning and `starttls.py` for STARTTLS terminated at the front.
"""

from typing import TYPE_CHECKING, Any

from mailharness.servers.faults.toxics import (
    DENY_MODES,
    DIRECTIONS,
    FAULT_KINDS,
    TLS_VERSIONS,
    Allowlist,
    Bandwidth,
    ConnectionCap,
    DropAfter,
    DropOnCommand,
    Fault,
    FirewallDrop,
    Hang,
    Latency,
    Refuse,
    Reset,
    SlowGreeting,
    TLSVersion,
)

if TYPE_CHECKING:
    from mailharness.servers.faults.front import FaultFront


def __getattr__(name: str) -> Any:
    # The front (asyncio proxy, TLS stacks) is imported when a listener first needs one:
    # the fault values above are all a scenario's data needs.
    if name == "FaultFront":
        from mailharness.servers.faults.front import FaultFront

        return FaultFront
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DENY_MODES",
    "DIRECTIONS",
    "FAULT_KINDS",
    "TLS_VERSIONS",
    "Allowlist",
    "Bandwidth",
    "ConnectionCap",
    "DropAfter",
    "DropOnCommand",
    "Fault",
    "FaultFront",
    "FirewallDrop",
    "Hang",
    "Latency",
    "Refuse",
    "Reset",
    "SlowGreeting",
    "TLSVersion",
]
