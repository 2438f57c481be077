"""The two error families of mailharness.

`ConfigError` is the test author's mistake: it names the field, the value and
what is allowed. Protocol errors made by a *client* are not exceptions that
reach the test; they are answered on the wire (BAD/NO/5xx) and recorded in the
server's `errors` list so the fixture can report them at teardown.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TypeVar

_E = TypeVar("_E", bound=enum.Enum)


class MailharnessError(Exception):
    """Base class of every error mailharness raises on purpose."""


class ConfigError(MailharnessError, ValueError):
    """A configuration value is wrong; the message says which field and what is allowed."""


def choice_error(field: str, value: object, allowed: Iterable[str]) -> ConfigError:
    """Build the one message shape used for every bad enumerated value.

    >>> str(choice_error("tls", "start", ["none", "starttls", "implicit"]))
    "tls='start': expected one of 'none', 'starttls', 'implicit'"
    """
    options = list(allowed)
    message = f"{field}={value!r}: expected one of " + ", ".join(repr(o) for o in options)
    if isinstance(value, str):
        import difflib  # only for a mistake's message: not worth its import at start-up

        close = difflib.get_close_matches(value, options, n=3, cutoff=0.6)
        if close:
            message += " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
    return ConfigError(message)


def parse_choice(cls: type[_E], value: str | _E, field: str) -> _E:
    """An enum member from itself or its value; anything else names the allowed values."""
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        raise choice_error(field, value, [member.value for member in cls]) from None


class ServerStartError(MailharnessError, RuntimeError):
    """A server could not be started; raised in the caller's thread."""


def forget_traceback(exc: BaseException | None) -> None:
    """Break ``exception -> traceback -> frame -> exception`` cycles.

    asyncio's ``sslproto`` re-raises a failed handshake's error from a frame that
    holds it, so every aborted TLS handshake (a client refusing our certificate)
    left its protocol, buffers and frames for the cycle collector. Without the
    traceback, reference counting frees them at once.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
