"""Protocol-aware gates: STARTTLS terminated at the front, and access denial at login.

A gate is sans-IO: client bytes in, actions out (forward to the backend,
reply to the client, start TLS); server bytes in, rewritten bytes out. The
session does the I/O. With a gate the front can offer STARTTLS in front of a
backend's *plain* port (fake or Dovecot) with any pinned TLS version:

- IMAP: ``<tag> STARTTLS`` is answered ``<tag> OK Begin TLS negotiation now.``;
  CAPABILITY gains STARTTLS before TLS and loses STARTTLS and LOGINDISABLED
  after it (the backend sees a plain connection and would advertise them).
- SMTP: ``STARTTLS`` is answered ``220 2.0.0 Ready to start TLS``; the EHLO
  reply gains ``250-STARTTLS`` before TLS and loses it after.

Assumes clients do not pipeline past an intercepted command (RFC 3207 and
RFC 3501 forbid it for STARTTLS; bytes after it are discarded, as they came
in the clear: CVE-2011-0411).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

from mailharness.servers.faults import replies
from mailharness.servers.faults.framing import LineFramer, literal_announced

Deny = Literal["login", "rcpt"] | None


@dataclass(frozen=True, slots=True)
class Forward:
    """Client bytes for the backend."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """Bytes for the client, written by the front instead of the backend."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Write ``reply`` in the clear, then handshake; later client bytes are TLS."""

    reply: bytes


Action = Forward | Reply | StartTLS


class Gate(Protocol):
    tls_active: bool

    def from_client(self, data: bytes) -> list[Action]: ...

    def from_server(self, data: bytes) -> bytes: ...


def _merge(actions: list[Action], data: bytes) -> None:
    if actions and isinstance(actions[-1], Forward):
        actions[-1] = Forward(actions[-1].data + data)
    else:
        actions.append(Forward(data))


def _words(line: bytes, count: int) -> list[bytes]:
    return line.rstrip(b"\r\n").split(None, count)


_GONE_AFTER_TLS = (b"STARTTLS", b"LOGINDISABLED")
_CAPABILITY = re.compile(rb"^(\* CAPABILITY |.*?\[CAPABILITY )([^\]\r\n]*)", re.IGNORECASE)


class IMAPGate:
    """See the module docstring; ``deny="login"`` fails LOGIN/AUTHENTICATE (Dovecot allow_nets)."""

    def __init__(self, *, starttls: bool, tls_active: bool, deny: Deny, client_ip: str) -> None:
        self.starttls = starttls
        self.tls_active = tls_active
        self.deny = deny
        self.client_ip = client_ip
        self._client = LineFramer(literals=True)
        self._server = LineFramer(literals=True)
        self._discarding = False  # rest of a refused command that had non-synchronizing literals

    def from_client(self, data: bytes) -> list[Action]:
        actions: list[Action] = []
        for unit in self._client.feed(data):
            if self._discarding:
                if unit.is_line and literal_announced(unit.data) is None:
                    self._discarding = False
                continue
            if not unit.is_line:
                _merge(actions, unit.data)
                continue
            words = _words(unit.data, 2)
            tag = words[0].decode("ascii", "replace") if words else "*"
            command = words[1].upper() if len(words) > 1 else b""
            if command == b"STARTTLS" and self.starttls and not self.tls_active:
                self._client.discard()
                actions.append(StartTLS(replies.line(replies.STARTTLS_OK["imap"], tag=tag)))
                return actions
            if self.deny == "login" and command in (b"LOGIN", b"AUTHENTICATE"):
                self._refuse_rest(unit.data)
                text = replies.ACCESS_DENIED_LOGIN["imap"]
                actions.append(Reply(replies.line(text, tag=tag)))
                continue
            _merge(actions, unit.data)
        return actions

    def _refuse_rest(self, line: bytes) -> None:
        announced = literal_announced(line)
        if announced is None:
            return
        _size, synchronizing = announced
        if synchronizing:
            self._client.cancel_literal()  # the client waits for "+", which never comes
        else:
            self._discarding = True

    def from_server(self, data: bytes) -> bytes:
        out = bytearray()
        for unit in self._server.feed(data):
            out += self._rewrite(unit.data) if unit.is_line else unit.data
        return bytes(out)

    def _rewrite(self, line: bytes) -> bytes:
        match = _CAPABILITY.match(line)
        if match is None:
            return line
        caps = match.group(2).split()
        names = [c.upper() for c in caps]
        if self.tls_active:
            caps = [c for c, n in zip(caps, names, strict=True) if n not in _GONE_AFTER_TLS]
        elif self.starttls and b"STARTTLS" not in names:
            pre_login = [
                i for i, n in enumerate(names) if n.startswith(b"AUTH=") or n in _GONE_AFTER_TLS
            ]
            if pre_login:  # after login the list has no AUTH=: no STARTTLS there either
                caps.insert(pre_login[0], b"STARTTLS")
        return line[: match.start(2)] + b" ".join(caps) + line[match.end(2) :]


_REPLY_END = re.compile(rb"^\d{3}(?: |\r?\n)")


class SMTPGate:
    """See the module docstring; ``deny`` fails AUTH ("login") or RCPT ("rcpt")."""

    def __init__(self, *, starttls: bool, tls_active: bool, deny: Deny, client_ip: str) -> None:
        self.starttls = starttls
        self.tls_active = tls_active
        self.deny = deny
        self.client_ip = client_ip
        self._client = LineFramer(literals=False)
        self._server = LineFramer(literals=False)
        self._reply: list[bytes] = []
        self._ehlo_pending = 0
        self._data_pending = False
        self._in_data = False

    def from_client(self, data: bytes) -> list[Action]:
        actions: list[Action] = []
        for unit in self._client.feed(data):
            if self._in_data or not unit.is_line:
                if unit.data in (b".\r\n", b".\n"):
                    self._in_data = False
                _merge(actions, unit.data)
                continue
            words = _words(unit.data, 1)
            command = words[0].upper() if words else b""
            if command == b"STARTTLS" and self.starttls and not self.tls_active:
                self._client.discard()
                actions.append(StartTLS(replies.line(replies.STARTTLS_OK["smtp"])))
                return actions
            if self.deny == "login" and command == b"AUTH":
                actions.append(Reply(replies.line(replies.ACCESS_DENIED_LOGIN["smtp"])))
                continue
            if self.deny == "rcpt" and command == b"RCPT":
                actions.append(Reply(replies.line(replies.ACCESS_DENIED_RCPT, ip=self.client_ip)))
                continue
            if command == b"EHLO":
                self._ehlo_pending += 1
            elif command == b"DATA":
                self._data_pending = True
            _merge(actions, unit.data)
        return actions

    def from_server(self, data: bytes) -> bytes:
        out = bytearray()
        for unit in self._server.feed(data):
            self._reply.append(unit.data)
            if unit.is_line and _REPLY_END.match(unit.data):
                out += self._finish(self._reply)
                self._reply = []
        return bytes(out)

    def _finish(self, lines: list[bytes]) -> bytes:
        code = lines[-1][:3]
        if self._data_pending:
            self._data_pending = False
            self._in_data = code == b"354"
        if self._ehlo_pending:
            self._ehlo_pending -= 1
            if code == b"250":
                return self._rewrite_ehlo(lines)
        return b"".join(lines)

    def _rewrite_ehlo(self, lines: list[bytes]) -> bytes:
        texts = [line[4:].rstrip(b"\r\n") for line in lines]
        greeting, extensions = texts[0], texts[1:]
        present = any(e.upper() == b"STARTTLS" for e in extensions)
        if self.tls_active:
            extensions = [e for e in extensions if e.upper() != b"STARTTLS"]
        elif self.starttls and not present:
            extensions.append(b"STARTTLS")
        texts = [greeting, *extensions]
        body = [b"250-" + t + b"\r\n" for t in texts[:-1]]
        return b"".join([*body, b"250 " + texts[-1] + b"\r\n"])


def make_gate(
    protocol: replies.Protocol, *, starttls: bool, tls_active: bool, deny: Deny, client_ip: str
) -> Gate:
    cls: type[IMAPGate] | type[SMTPGate] = IMAPGate if protocol == "imap" else SMTPGate
    return cls(starttls=starttls, tls_active=tls_active, deny=deny, client_ip=client_ip)
