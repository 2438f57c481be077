"""What every command handler shares: effects, the failure exception, wire helpers.

A handler is a generator: it yields output bytes and :data:`Effect` requests
and returns its tagged completion. Handlers live in the module of their
concern (session and login in ``session``, mailboxes in ``mailbox_commands``,
messages in ``message_commands``) and are found through one registry.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

from mailharness.servers.imap import mutf7
from mailharness.servers.imap.protocol import Command
from mailharness.servers.imap.responses import Status, Tagged
from mailharness.servers.records import lazy_dataclass

if TYPE_CHECKING:
    from mailharness.servers.imap.session import Session

__all__ = [
    "SYSTEM_FLAGS",
    "CommandHandler",
    "Delay",
    "Disconnect",
    "Effect",
    "Fail",
    "Handler",
    "Output",
    "ReadLine",
    "StartTLS",
    "mailbox_wire",
]


@lazy_dataclass(frozen=True, slots=True)
class Delay:
    """Wait this long before going on (auth failure delay)."""

    seconds: float


@lazy_dataclass(frozen=True, slots=True)
class StartTLS:
    """Upgrade the connection now; the tagged OK has been sent."""


@lazy_dataclass(frozen=True, slots=True)
class ReadLine:
    """Send the next bare client line (SASL response, DONE) back into the generator."""


@lazy_dataclass(frozen=True, slots=True)
class Disconnect:
    """Close the connection after what was sent, and after `farewell` (an untagged BYE)."""

    farewell: bytes = b""


Effect = Delay | StartTLS | ReadLine | Disconnect
Output = Generator[bytes | Effect, bytes | None, None]
Handler = Generator[bytes | Effect, bytes | None, Tagged]
CommandHandler = Callable[["Session", Command, list[Effect]], Handler]

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


class Fail(Exception):
    """A handler's early exit with its tagged reply (BAD for syntax, NO for refusals)."""

    def __init__(self, status: Status, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.code = code


_ATOM_SAFE = frozenset(string.ascii_letters + string.digits + "-_./&+,:;!?=@'")


def mailbox_wire(name: str) -> bytes:
    """A (UTF-8) mailbox name in modified UTF-7, as an atom when it can be one, else quoted.

    As Dovecot does (imap_append_astring).
    """
    wire = mutf7.encode(name)
    if wire and all(c in _ATOM_SAFE for c in wire):
        return wire.encode()
    from mailharness.servers.imap import message as mime  # the MIME parser: after login

    return mime.quote(wire)
