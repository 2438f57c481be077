"""Fault values ("toxics"): small frozen descriptions of what the front does wrong.

A fault is data, like Toxiproxy's toxics: building one validates it, equal
values are interchangeable, and the front decides *when* to apply it. Faults
whose class has ``live = True`` (latency, bandwidth, drops) also act on
connections that are already open when they are switched on; every other
fault is decided once, when a connection is accepted.

    front.set(Latency(ms=50), Bandwidth(bytes_per_second=200_000))
    front.set(DropOnCommand(pattern=rb"FETCH", reply_bytes=100))
    front.set(Allowlist(networks=("127.0.0.1/32",), mode="greeting"))
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from typing import ClassVar, Literal

from mailharness.servers.errors import ConfigError, choice_error
from mailharness.servers.records import record
from mailharness.servers.tlsversions import TLS_VERSIONS, TLSVersionName

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
    "FirewallDrop",
    "Hang",
    "Latency",
    "Refuse",
    "Reset",
    "SlowGreeting",
    "TLSVersion",
]

Direction = Literal["downstream", "upstream", "both"]
#: downstream = server to client (replies, greeting, FETCH data); upstream = client to server.
DIRECTIONS: tuple[Direction, ...] = ("downstream", "upstream", "both")

DenyMode = Literal["close", "reset", "hang", "greeting", "login", "rcpt"]
#: What a refused client meets. "close": EOF before any greeting (tcpwrap); "reset": RST;
#: "hang": accepted, never greeted; "greeting": a protocol rejection greeting, then close;
#: "login": everything works but LOGIN/AUTHENTICATE/AUTH fail (Dovecot allow_nets);
#: "rcpt": SMTP RCPT is refused with Postfix's "Client host rejected" (smtpd_client_restrictions).
DENY_MODES: tuple[DenyMode, ...] = ("close", "reset", "hang", "greeting", "login", "rcpt")
#: Modes that need the front to know its protocol (it writes protocol replies).
PROTOCOL_DENY_MODES = ("greeting", "login", "rcpt")
#: What ConnectionCap may do with an excess connection (a callable is also allowed).
CAP_MODES = ("close", "reset", "hang", "greeting")

TLSSecurity = Literal["implicit", "starttls"]
TLS_SECURITIES: tuple[TLSSecurity, ...] = ("implicit", "starttls")

# Beyond this a "slow" fault is a typo (ms for seconds) rather than a scenario.
MAX_DELAY_SECONDS = 3600.0


def _probability(value: float) -> None:
    if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"probability={value!r}: expected a number from 0.0 to 1.0")


def _choice(field: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise choice_error(field, value, allowed)


def _number(field: str, value: object, *, minimum: float, maximum: float = math.inf) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not minimum <= value <= maximum:  # type: ignore[operator]
        upper = "" if maximum == math.inf else f" and <= {maximum:g}"
        raise ConfigError(f"{field}={value!r}: expected a number >= {minimum:g}{upper}")


def _count(field: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{field}={value!r}: expected an integer >= {minimum}")


# --- faults on the byte stream (live: they also act on open connections) -------------


@record
class Latency:
    """Delay every chunk by ``ms`` (± uniform ``jitter_ms``) from the moment it arrived.

    Chunks are delayed independently, not queued behind each other, so a
    100 ms latency adds 100 ms to each reply rather than throttling a stream.
    ``probability`` is rolled per chunk.
    """

    live: ClassVar[bool] = True
    #: Delay added to each chunk, in milliseconds.
    ms: float
    #: Random extra delay, uniform in ± this many milliseconds.
    jitter_ms: float = 0.0
    #: Which stream it acts on: downstream (server to client), upstream or both.
    direction: Direction = "downstream"
    #: Chance (0 to 1) that a chunk is delayed.
    probability: float = 1.0

    def __post_init__(self) -> None:
        _number("ms", self.ms, minimum=0, maximum=MAX_DELAY_SECONDS * 1000)
        _number("jitter_ms", self.jitter_ms, minimum=0, maximum=MAX_DELAY_SECONDS * 1000)
        _choice("direction", self.direction, DIRECTIONS)
        _probability(self.probability)


@record
class Bandwidth:
    """Cap throughput at ``bytes_per_second`` per connection and direction.

    Written in slices of 1/20 s worth of data on an absolute schedule, so the
    rate holds over a transfer of any length without bursts. No probability:
    a cap that applies sometimes is not a cap.
    """

    live: ClassVar[bool] = True
    #: Throughput cap per connection and direction.
    bytes_per_second: int
    #: Which stream it acts on: downstream, upstream or both.
    direction: Direction = "downstream"

    def __post_init__(self) -> None:
        _count("bytes_per_second", self.bytes_per_second, minimum=1)
        _choice("direction", self.direction, DIRECTIONS)


@record
class DropAfter:
    """Forward ``bytes`` more bytes, then close both sides with a FIN.

    Counted per connection and direction from the moment the connection first
    sees this fault (at accept for a fault set beforehand; on an open
    connection, from its next chunk), so a value of 1000 set after SELECT
    lands inside the FETCH literal that follows. The close happens when the
    count is reached by data, so ``bytes=0`` closes at the next chunk.
    ``probability`` is rolled once per connection.
    """

    live: ClassVar[bool] = True
    #: Bytes forwarded before the FIN (0: at the next chunk).
    bytes: int
    #: Which stream is counted: downstream, upstream or both.
    direction: Direction = "downstream"
    #: Chance (0 to 1), rolled once per connection.
    probability: float = 1.0

    def __post_init__(self) -> None:
        _count("bytes", self.bytes, minimum=0)
        _choice("direction", self.direction, DIRECTIONS)
        _probability(self.probability)


@record
class DropOnCommand:
    """Close the connection when a client line matches ``pattern`` (a bytes regex).

    ``reply_bytes=0``: close at once, the command never reaches the server.
    ``reply_bytes=N``: forward the command, let N bytes of what the server
    sends next through, then close (FIN mid-reply). ``probability`` is
    rolled per matching line.
    """

    live: ClassVar[bool] = True
    #: A regular expression a client line is matched against (e.g. FETCH).
    pattern: bytes
    #: Bytes of the server's reply let through before the close (0: the command never reaches
    #: the server).
    reply_bytes: int = 0
    #: Chance (0 to 1), rolled per matching line.
    probability: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, bytes) or not self.pattern:
            raise ConfigError(f"pattern={self.pattern!r}: expected non-empty bytes, e.g. b'FETCH'")
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ConfigError(
                f"pattern={self.pattern!r}: not a regular expression ({exc})"
            ) from None
        _count("reply_bytes", self.reply_bytes, minimum=0)
        _probability(self.probability)

    def matches(self, line: bytes) -> bool:
        return re.search(self.pattern, line) is not None


# --- faults decided when a connection is accepted ------------------------------------


@record
class Reset:
    """Accept, then close with SO_LINGER 0: the client reads ECONNRESET (errno 104).

    ``after_seconds`` waits before the RST. With 0 the RST can reach a client
    that is still completing a non-blocking connect, so it sees the reset in
    ``connect()`` instead of at its first read; a few milliseconds make the
    outcome the same every run.
    """

    live: ClassVar[bool] = False
    #: Chance (0 to 1) that a connection is reset.
    probability: float = 1.0
    #: Seconds after accept before the RST.
    after_seconds: float = 0.0

    def __post_init__(self) -> None:
        _probability(self.probability)
        _number("after_seconds", self.after_seconds, minimum=0.0)


@record
class Hang:
    """Accept and never greet: the client's read times out (a wedged server)."""

    live: ClassVar[bool] = False
    #: Chance (0 to 1) that a connection is never greeted.
    probability: float = 1.0

    def __post_init__(self) -> None:
        _probability(self.probability)


@record
class SlowGreeting:
    """Hold the server's first bytes until ``seconds`` after accept (after any TLS handshake)."""

    live: ClassVar[bool] = False
    #: Seconds after accept before the server's first bytes.
    seconds: float
    #: Chance (0 to 1) that a connection is slowed.
    probability: float = 1.0

    def __post_init__(self) -> None:
        _number("seconds", self.seconds, minimum=0, maximum=MAX_DELAY_SECONDS)
        _probability(self.probability)


@record
class Refuse:
    """Nothing listens: ``ConnectionRefusedError`` at once.

    The port stays bound (not listening), so no other process can take it and
    switching the fault off serves on the same port again.
    """

    live: ClassVar[bool] = False


@record
class FirewallDrop:
    """SYNs go unanswered: the client's connect times out, as behind a dropping firewall.

    Done without root or iptables: the front listens with backlog 0 and keeps
    that one-slot accept queue full with a connection of its own that it
    never accepts. Linux drops a SYN for a listener whose accept queue is full
    (``tcp_conn_request``: ``sk_acceptq_is_full`` → drop, even with syncookies),
    so the client sees no SYN-ACK and retries until its own timeout.
    """

    live: ClassVar[bool] = False


def _parse_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=False)
    except (ValueError, TypeError):
        raise ConfigError(
            f"networks: {value!r} is not a network; expected e.g. '127.0.0.1/32' or '::1/128'"
        ) from None


@record
class Allowlist:
    """Only clients whose source address is in ``networks`` are served normally.

    Others meet ``mode`` (see ``DENY_MODES``). Test it by connecting from a
    second loopback address (``source_address=("127.0.0.2", 0)``).
    """

    live: ClassVar[bool] = False
    #: Source networks served normally (e.g. 127.0.0.1/32).
    networks: tuple[str, ...] = ("127.0.0.1/32",)
    #: What the others meet: close, reset, hang, greeting, login or rcpt.
    mode: DenyMode = "close"

    def __post_init__(self) -> None:
        if isinstance(self.networks, str):
            raise ConfigError(
                f"networks={self.networks!r}: expected a tuple of networks, e.g. ('127.0.0.1/32',)"
            )
        parsed = tuple(str(_parse_network(n)) for n in self.networks)
        object.__setattr__(self, "networks", parsed)
        _choice("mode", self.mode, DENY_MODES)

    def allows(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return any(ip in ipaddress.ip_network(n) for n in self.networks)


#: An excess connection's reply: given the client's address, the bytes to send before closing.
ExcessReply = Callable[[str], bytes]


@record
class ConnectionCap:
    """At most ``max_total`` open connections, and ``per_source`` per client address.

    ``on_excess``: "close", "reset", "hang", "greeting" (the protocol's
    too-many-connections greeting) or a callable ``(client_ip) -> bytes``
    whose result is sent before closing.
    """

    live: ClassVar[bool] = False
    #: Open connections at once through this front (none: no cap).
    max_total: int | None = None
    #: Open connections at once per client address (none: no cap).
    per_source: int | None = None
    #: What a connection over the cap meets: close, reset, hang or greeting (the protocol's
    #: too-many-connections greeting).
    on_excess: str | ExcessReply = "close"

    def __post_init__(self) -> None:
        if self.max_total is None and self.per_source is None:
            raise ConfigError("ConnectionCap: set max_total, per_source or both")
        if self.max_total is not None:
            _count("max_total", self.max_total, minimum=0)
        if self.per_source is not None:
            _count("per_source", self.per_source, minimum=0)
        if not callable(self.on_excess):
            _choice("on_excess", self.on_excess, CAP_MODES)


@record
class TLSVersion:
    """Terminate TLS at the front, offering exactly one protocol version.

    ``security="implicit"``: TLS from the first byte (993/465 style).
    ``security="starttls"``: plaintext until the client's STARTTLS, which the
    front answers itself (the front must know its protocol). ``cert`` names
    a ``MailCA`` certificate variant; None serves the server's own (a
    ``MailConfig`` fills in its ``cert``; a bare front serves "trusted"), so a
    scenario's certificate is never silently swapped by a fault. SSL 3.0 is
    served by tlslite-ng, because OpenSSL 3 cannot.
    """

    live: ClassVar[bool] = False
    #: The one protocol version offered: sslv3, tls1.0, tls1.1, tls1.2, tls1.3 or modern (1.2
    #: and 1.3).
    version: TLSVersionName = "modern"
    #: implicit (TLS from the first byte) or starttls (plaintext until STARTTLS).
    security: TLSSecurity = "implicit"
    #: The certificate variant served; none: the scenario's own `cert`.
    cert: str | None = None

    def __post_init__(self) -> None:
        _choice("version", self.version, TLS_VERSIONS)
        _choice("security", self.security, TLS_SECURITIES)
        if self.cert is not None and not isinstance(self.cert, str):
            raise ConfigError(f"cert={self.cert!r}: expected a certificate variant name")

    @property
    def variant(self) -> str:
        """The certificate variant served: `cert`, or "trusted" when none is set."""
        return self.cert or "trusted"


Fault = (
    Latency
    | Bandwidth
    | DropAfter
    | DropOnCommand
    | Reset
    | Hang
    | SlowGreeting
    | Refuse
    | FirewallDrop
    | Allowlist
    | ConnectionCap
    | TLSVersion
)
#: The one list of faults, each by the kind name a TOML file gives it (``kind = "drop-after"``).
#: The TOML loader and the front's checks read it; the package exports and the README's lists
#: are checked against it (tests/faults/test_toxics.py).
FAULT_KINDS: dict[str, type[Fault]] = {
    "latency": Latency,
    "bandwidth": Bandwidth,
    "drop-after": DropAfter,
    "drop-on-command": DropOnCommand,
    "reset": Reset,
    "hang": Hang,
    "slow-greeting": SlowGreeting,
    "refuse": Refuse,
    "firewall-drop": FirewallDrop,
    "allowlist": Allowlist,
    "connection-cap": ConnectionCap,
    "tls-version": TLSVersion,
}
FAULT_TYPES: tuple[type[Fault], ...] = tuple(FAULT_KINDS.values())
#: Kinds a front holds at most one of: two would contradict each other.
SINGLETON_TYPES: tuple[type, ...] = (
    Reset,
    Hang,
    SlowGreeting,
    Allowlist,
    ConnectionCap,
    TLSVersion,
)


def applies(direction: Direction, wanted: Literal["downstream", "upstream"]) -> bool:
    """Whether a fault with ``direction`` acts on the ``wanted`` stream."""
    return direction == "both" or direction == wanted
