"""RFC 5322 address lists, parsed and written back exactly as Dovecot 2.3 does it.

ENVELOPE, SORT (FROM/TO/CC, DISPLAYFROM/DISPLAYTO) and SEARCH (FROM/TO/CC/BCC) all
see addresses through Dovecot's lib-mail/message-address.c and rfc822-parser.c, so
the odd cases a real mailbox holds (``<>``, a bare ``user``, ``a@b (Name)``, groups,
comments inside the address, broken quoting) come out as Dovecot's: missing parts
filled with ``MISSING_MAILBOX``/``MISSING_DOMAIN``, a bad route ``INVALID_ROUTE``,
a broken angle address ``SYNTAX_ERROR``. This is a port of that parser, by
character, returning codes as it does: -1 a syntax error, 0 the end of the input,
1 more input follows.
"""

from __future__ import annotations

from mailharness.servers.imap import parser_limits

__all__ = ["Address", "parse_addresses", "write_addresses"]


Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]
"""``(name, route, mailbox, domain)``, as ENVELOPE sends an address. A group starts with
``(None, None, group name, None)`` and ends with four ``None``."""

#: RFC 5322 atext, and 8-bit bytes, as Dovecot's rfc822_atext_chars table.
_ATEXT = frozenset(
    b"!#$%&'*+-/=?^_`{|}~"
    + bytes(range(0x30, 0x3A))
    + bytes(range(0x41, 0x5B))
    + bytes(range(0x61, 0x7B))
    + bytes(range(0x80, 0x100))
)
_ATEXT_DOT = _ATEXT | {0x2E}
_LWSP = frozenset(b" \t\r\n")
_DOT, _AT, _QUOTE, _BACKSLASH = 0x2E, 0x40, 0x22, 0x5C
_MISSING_MAILBOX = b"MISSING_MAILBOX"
_MISSING_DOMAIN = b"MISSING_DOMAIN"


class _Parser:
    """Dovecot's message_address_parser_context, with MESSAGE_ADDRESS_PARSE_FLAG_FILL_MISSING."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.comment = bytearray()  # the parser's last_comment
        self.str = bytearray()  # the shared scratch string (ctx->str)
        self.out: list[Address] = []
        self._clear()

    def _clear(self) -> None:
        self.name: bytes | None = None
        self.route: bytes | None = None
        self.mailbox: bytes | None = None
        self.domain: bytes | None = None
        self.invalid = False

    def _at(self, char: int) -> bool:
        return self.pos < self.end and self.data[self.pos] == char

    # -- rfc822-parser.c -------------------------------------------------------------

    def skip_comment(self) -> int:
        data, end = self.data, self.end
        self.comment.clear()
        level = 1
        self.pos += 1
        start = self.pos
        while self.pos < end:
            c = data[self.pos]
            if c == 0x28:
                level += 1
            elif c == 0x29:
                level -= 1
                if level == 0:
                    self.comment += data[start : self.pos]
                    self.pos += 1
                    return 1 if self.pos < end else 0
            elif c == 0x0A:  # folding: drop the (CR)LF
                start = self._unfold(self.comment, start)
            elif c == _BACKSLASH:
                self.pos += 1
                if self.pos >= end:
                    return -1
                if data[self.pos] in b"\r\n\0":
                    self.pos -= 1
                else:
                    self.comment += data[start : self.pos - 1]
                    start = self.pos
            self.pos += 1
        return -1  # missing ')'

    def skip_lwsp(self) -> int:
        data, end = self.data, self.end
        while self.pos < end:
            c = data[self.pos]
            if c in _LWSP:
                self.pos += 1
            elif c == 0x28:
                if self.skip_comment() < 0:
                    return -1
            else:
                break
        return 1 if self.pos < end else 0

    def _run(self, chars: frozenset[int]) -> bytes:
        """The bytes from here that are all in ``chars`` (moving past them)."""
        data, end, start = self.data, self.end, self.pos
        while self.pos < end and data[self.pos] in chars:
            self.pos += 1
        return data[start : self.pos]

    def _unfold(self, out: bytearray, start: int) -> int:
        """At a LF inside a quoted string, comment or literal: keep the text before the
        (CR)LF, and say where the text goes on."""
        stop = self.pos
        if stop > start and self.data[stop - 1] == 0x0D:
            stop -= 1
        out += self.data[start:stop]
        return self.pos + 1

    def parse_atom(self, out: bytearray) -> int:
        if self.pos >= self.end or self.data[self.pos] not in _ATEXT:
            return -1
        out += self._run(_ATEXT)
        return self.skip_lwsp()  # 0 at the end of the input, as Dovecot returns there

    def parse_dot_atom(self, out: bytearray) -> int:
        data = self.data
        if self.pos >= self.end or data[self.pos] not in _ATEXT:
            return -1
        while True:
            out += self._run(_ATEXT)
            ret = self.skip_lwsp()
            if ret <= 0:
                return ret
            if data[self.pos] != _DOT:
                return 1
            self.pos += 1
            out.append(_DOT)
            if self.skip_lwsp() <= 0 or data[self.pos] not in _ATEXT:
                return -1

    def parse_quoted_string(self, out: bytearray) -> int:
        data, end = self.data, self.end
        self.pos += 1
        start = self.pos
        while self.pos < end:
            c = data[self.pos]
            if c == _QUOTE:
                out += data[start : self.pos]
                self.pos += 1
                return self.skip_lwsp()
            if c == 0x0A:
                start = self._unfold(out, start)
            elif c == _BACKSLASH:
                self.pos += 1
                if self.pos >= end:
                    return -1
                if data[self.pos] in b"\r\n\0":
                    self.pos -= 1
                else:
                    out += data[start : self.pos - 1]
                    start = self.pos
            self.pos += 1
        return -1  # missing '"'

    def parse_atom_or_dot(self, out: bytearray) -> int:
        out += self._run(_ATEXT_DOT)
        return self.skip_lwsp()

    def parse_phrase(self, out: bytearray) -> int:
        data = self.data
        if self.pos >= self.end:
            return 0
        if data[self.pos] == _DOT:
            return -1
        while True:
            if data[self.pos] == _QUOTE:
                ret = self.parse_quoted_string(out)
            else:
                ret = self.parse_atom_or_dot(out)
            if ret <= 0:
                return ret
            c = data[self.pos]
            if c not in _ATEXT and c != _QUOTE and c != _DOT:
                break
            out.append(0x20)
        return self.skip_lwsp()

    def parse_domain_literal(self, out: bytearray) -> int:
        data, end = self.data, self.end
        start = self.pos
        self.pos += 1
        while self.pos < end:
            c = data[self.pos]
            if c == 0x5B:
                return -1
            if c == 0x5D:
                out += data[start : self.pos + 1]
                self.pos += 1
                return self.skip_lwsp()
            if c == 0x0A:
                start = self._unfold(out, start)
            elif c == _BACKSLASH:  # the backslash stays in the output
                self.pos += 1
                if self.pos >= end:
                    return -1
                if data[self.pos] in b"\r\n\0":
                    out += data[start : self.pos]
                    start = self.pos
                    self.pos -= 1
            self.pos += 1
        return -1  # missing ']'

    def parse_domain_into(self, out: bytearray) -> int:
        self.pos += 1  # the '@'
        if self.skip_lwsp() <= 0:
            return -1
        if self.data[self.pos] == 0x5B:
            return self.parse_domain_literal(out)
        return self.parse_dot_atom(out)

    # -- message-address.c -----------------------------------------------------------

    def add_address(self) -> None:
        self.out.append((self.name, self.route, self.mailbox, self.domain))
        self._clear()

    def add_fixed_address(self) -> None:
        if self.mailbox is None:
            self.mailbox = _MISSING_MAILBOX
        if not self.domain:
            self.domain = _MISSING_DOMAIN
        self.add_address()

    def parse_nonstrict_dot_atom(self, out: bytearray) -> int:
        data, end = self.data, self.end
        ret = -1
        while True:
            while self.pos < end and data[self.pos] == _DOT:
                out.append(_DOT)
                self.pos += 1
                if self.pos == end:
                    return 0  # the @domain is missing, the local part was read
                ret = 1
            if self._at(_AT):
                break
            ret = self.parse_atom(out)
            if not (ret > 0 and data[self.pos] == _DOT):
                break
        return ret

    def parse_local_part(self) -> int:
        self.str.clear()
        if self.data[self.pos] == _QUOTE:
            ret = self.parse_quoted_string(self.str)
        else:
            ret = self.parse_nonstrict_dot_atom(self.str)
        if ret < 0:
            return -1
        self.mailbox = bytes(self.str)
        return ret

    def parse_domain(self) -> int:
        self.str.clear()
        ret = self.parse_domain_into(self.str)
        if ret < 0:
            return -1
        self.domain = bytes(self.str)
        return ret

    def parse_domain_list(self) -> int:
        self.str.clear()
        while True:
            if self.pos >= self.end:
                return 0
            if self.data[self.pos] != _AT:
                break
            if self.str:
                self.str.append(0x2C)
            self.str.append(_AT)
            ret = self.parse_domain_into(self.str)
            if ret <= 0:
                return ret
            while self.skip_lwsp() > 0 and self.data[self.pos] == 0x2C:
                self.pos += 1
        self.route = bytes(self.str)
        return 1

    def parse_angle_addr(self) -> int:
        self.pos += 1  # the '<'
        if self.skip_lwsp() <= 0:
            return -1
        if self.data[self.pos] == _AT:
            if self.parse_domain_list() > 0 and self._at(0x3A):
                self.pos += 1
            else:
                self.route = b"INVALID_ROUTE"
                if self.pos >= self.end:
                    return -1
            if self.skip_lwsp() <= 0:
                return -1
        if self.data[self.pos] != 0x3E:  # else "<>": not a valid address
            if self.parse_local_part() <= 0:
                return -1
            if self.data[self.pos] == _AT and self.parse_domain() <= 0:
                return -1
        if not self._at(0x3E):
            return -1
        self.pos += 1
        return self.skip_lwsp()

    def parse_name_addr(self) -> int:
        self.str.clear()
        if self.parse_phrase(self.str) <= 0 or self.data[self.pos] != 0x3C:
            return -1
        self.name = bytes(self.str) or None  # "<address>" has no display name
        if self.parse_angle_addr() < 0:
            self.domain = b"SYNTAX_ERROR"
            self.invalid = True
        return 1 if self.pos < self.end else 0

    def parse_addr_spec(self) -> int:
        self.comment.clear()
        quoted = self.data[self.pos] == _QUOTE
        ret = self.parse_local_part()
        if ret <= 0:
            self.invalid = True
        ret2 = -2
        if ret != 0 and self._at(_AT):
            ret2 = self.parse_domain()
            if ret2 <= 0:
                ret = ret2
        if self.comment:
            self.name = bytes(self.comment)
        elif ret2 == -2:
            # A "user" alone is a mailbox, but followed by more it is a display name.
            self.str.append(0x20)
            before = len(self.str)
            self.parse_phrase(self.str)
            if len(self.str) != before:
                self.mailbox = None
                self.name = bytes(self.str)
            elif not quoted:
                self.domain = b""
            self.invalid = True
            ret = -1
        return ret

    def parse_mailbox(self) -> int:
        start = self.pos
        ret = self.parse_name_addr()
        if ret < 0:
            self.pos = start
            ret = self.parse_addr_spec()
            if (
                self.invalid
                and self.name is None
                and self.mailbox is not None
                and self.domain is None
            ):
                self.name, self.mailbox = self.mailbox, None
        if ret < 0:
            self.invalid = True
        self.add_fixed_address()
        return ret

    def parse_group(self) -> int:
        self.str.clear()
        if self.parse_phrase(self.str) <= 0 or self.data[self.pos] != 0x3A:
            return -1
        # From here on this is a group, whatever follows.
        self.pos += 1
        ret = self.skip_lwsp()
        if ret <= 0:
            self.invalid = True
        self.mailbox = bytes(self.str)
        self.add_address()
        if ret > 0 and self.data[self.pos] != 0x3B:
            while True:
                self.parse_mailbox()
                if not self._at(0x2C):
                    break
                self.pos += 1
                if self.skip_lwsp() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if not self._at(0x3B):
                ret = -1
            else:
                self.pos += 1
                ret = self.skip_lwsp()
        if ret < 0:
            self.invalid = True
        self.add_address()
        return 0 if ret == 0 else 1

    def parse_address(self) -> int:
        start = self.pos
        ret = self.parse_group()
        if ret < 0:
            self.pos = start
            ret = self.parse_mailbox()
        return ret

    def parse_address_list(self, limit: int) -> None:
        while limit > 0:
            limit -= 1
            if self.parse_address() == 0:
                break
            if not self._at(0x2C):
                break
            self.pos += 1
            ret = self.skip_lwsp()
            if ret <= 0:
                if ret < 0:  # ends with some garbage
                    self.add_fixed_address()
                break


def parse_addresses(value: bytes, limit: int = 1 << 31) -> list[Address]:
    """Dovecot's message_address_parse(..., FILL_MISSING) of a header value.

    ``limit`` is how many addresses (a group counts as one) to read, as Dovecot reads
    one for SORT.
    """
    # Only max_header_bytes are read: a hostile 2 MiB From: of commas would hold
    # the event loop (and every session) for seconds; see parser_limits.
    parser = _Parser(value[: parser_limits.current().max_header_bytes])
    if parser.skip_lwsp() > 0:
        parser.parse_address_list(limit)
    return parser.out


def _maybe_quoted(text: bytes, dot: bool) -> bytes:
    """str_append_maybe_escape: as is when atext (and dots unless ``dot``), else quoted."""
    if all(c in _ATEXT or (c == _DOT and not dot) for c in text):
        return text
    for c in b"\\\"'":
        text = text.replace(bytes((c,)), b"\\" + bytes((c,)))
    return b'"' + text + b'"'


def write_addresses(addrs: list[Address]) -> bytes:
    """Dovecot's message_address_write: ``name <mailbox@domain>, group: <a@b>;``."""
    out = bytearray()
    first, in_group = True, False
    for name, route, mailbox, domain in addrs:
        if not first:
            out += b", "
        first = False
        if domain is None:
            if not in_group:  # a group's start: its name
                if mailbox:
                    out += mailbox if b"=?" in mailbox else _maybe_quoted(mailbox, True)
                else:
                    out += b'""'
                out += b": "
                first = True
            else:  # its end
                del out[-1 if out.endswith(b": ") else -2 :]
                out += b";"
            in_group = not in_group
            continue
        if name is not None:
            out += name if b"=?" in name else _maybe_quoted(name, True)
        if route is not None or mailbox or domain:
            if name:
                out += b" "
            out += b"<"
            if route is not None:
                out += route + b":"
            out += _maybe_quoted(mailbox, False) if mailbox else b'""'
            if domain:
                out += b"@" + domain
            out += b">"
    return bytes(out)
