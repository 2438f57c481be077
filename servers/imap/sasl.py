"""SASL message decoding for AUTHENTICATE: PLAIN, LOGIN and XOAUTH2.

Pure functions over the client's bytes; the session drives the exchange.
A malformed message returns None so the caller answers it like Dovecot does
(``BAD`` for bad base64, ``NO`` for unusable credentials).
"""

from __future__ import annotations

import base64
import binascii

from mailharness.servers.records import lazy_dataclass

__all__ = [
    "LOGIN_PASSWORD_PROMPT",
    "LOGIN_USERNAME_PROMPT",
    "Credentials",
    "decode_response",
    "parse_plain",
    "parse_xoauth2",
]

#: base64 of "Username:" and "Password:", as Dovecot and most servers send them.
LOGIN_USERNAME_PROMPT = "VXNlcm5hbWU6"
LOGIN_PASSWORD_PROMPT = "UGFzc3dvcmQ6"


@lazy_dataclass(frozen=True, slots=True)
class Credentials:
    """A login and its secret (password or token) as a mechanism decoded them."""

    login: str
    secret: str


class Base64Error(ValueError):
    """The client's response is not base64 (answered with BAD)."""


def decode_response(data: bytes) -> bytes:
    """Decode one SASL response; ``=`` is the empty response (RFC 4959)."""
    data = data.strip()
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Base64Error(str(exc)) from None


def parse_plain(message: bytes) -> Credentials | None:
    """``authzid NUL authcid NUL passwd`` (RFC 4616)."""
    parts = message.split(b"\0")
    if len(parts) != 3:
        return None
    authz, login, secret = (p.decode("utf-8", "replace") for p in parts)
    if not login or (authz and authz != login):
        return None
    return Credentials(login, secret)


def parse_xoauth2(message: bytes) -> Credentials | None:
    """``user=<u>^Aauth=Bearer <token>^A^A`` (Google's XOAUTH2)."""
    fields: dict[str, str] = {}
    for item in message.decode("utf-8", "replace").split("\x01"):
        key, sep, value = item.partition("=")
        if sep:
            fields[key.lower()] = value
    user = fields.get("user", "")
    scheme, _, token = fields.get("auth", "").partition(" ")
    if not user or scheme.lower() != "bearer" or not token:
        return None
    return Credentials(user, token.strip())
