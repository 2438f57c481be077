"""The fault front: network and TLS faults before any IMAP/SMTP backend, fake or real.

One asyncio TCP proxy (`FaultFront`) on a loopback address forwards to a
backend address and applies fault values (`Latency`, `DropAfter`,
`TLSVersion`...) that a test switches at run time. See `front.py` for the
lifecycle, `toxics.py` for every fault, `tls.py`/`sslv3.py` for version
pinning and `starttls.py` for STARTTLS terminated at the front.
"""

from mailharness.servers.faults.front import FaultFront
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
