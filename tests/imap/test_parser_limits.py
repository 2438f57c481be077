"""The message-parser limits are settings: each server parses with its own, over the wire.

``max_mime_depth``, ``max_mime_parts`` and ``max_header_bytes`` (Dovecot's message-parser
limits and imap_max_line_length) bound what one FETCH costs; a scenario may lower them.
Two servers on one event loop, with different limits, answer the same message
differently, in any order: the parse caches key on the limits as well as the message.
"""

from __future__ import annotations

import dataclasses
import imaplib

import pytest
from mailharness.servers.errors import ConfigError
from mailharness.servers.imap.settings import IMAPSettings

from tests.imap.conftest import MakeIMAP, RunningIMAP


def nested(levels: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nleaf"
    for i in range(levels):
        b = b"b%d" % i
        inner = b"Content-Type: multipart/mixed; boundary=%s\r\n\r\n--%s\r\n%s\r\n--%s--\r\n" % (
            b,
            b,
            inner,
            b,
        )
    return b"From: a@example.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n" + inner


def many_parts(count: int) -> bytes:
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\np%d\r\n" % i for i in range(count))
    return (
        b"From: a@example.test\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n" + parts + b"--B--\r\n"
    )


def fetch(server: RunningIMAP, message: bytes, item: str) -> bytes:
    """APPEND ``message`` to a fresh INBOX state, FETCH ``item`` of it, as imaplib sees it."""
    client = imaplib.IMAP4(server.none.host, server.none.port, timeout=10)
    try:
        client.login("alice@example.test", "alice-password")
        client.append("INBOX", None, None, message)
        client.select("INBOX")
        typ, data = client.fetch(b"*", f"({item})")
        assert typ == "OK", data
        first = data[0]
        return first if isinstance(first, bytes) else b"".join(first)
    finally:
        client.logout()


def test_mime_depth_is_per_server_and_the_cache_keys_on_it(make_imap: MakeIMAP) -> None:
    shallow = make_imap(IMAPSettings(max_mime_depth=3))
    default = make_imap()
    raw = nested(5)
    for _ in range(2):  # interleaved: neither server's cached tree leaks into the other
        cut = fetch(shallow, raw, "BODYSTRUCTURE")
        whole = fetch(default, raw, "BODYSTRUCTURE")
        # Level 3 can no longer hold parts: Dovecot shows it as application/octet-stream.
        assert b'BODYSTRUCTURE ((("application" "octet-stream" ("boundary" "b2")' in cut, cut
        assert cut.count(b'"mixed"') == 2 and b'"text" "plain"' not in cut
        assert whole.count(b'"mixed"') == 5 and b'"text" "plain"' in whole, whole


def test_mime_parts_limit_stops_looking_for_boundaries(make_imap: MakeIMAP) -> None:
    limited = make_imap(IMAPSettings(max_mime_parts=3))
    structure = fetch(limited, many_parts(5), "BODYSTRUCTURE")
    assert structure.count(b'("text" "plain"') == 2, structure  # the root is part 3
    last = fetch(limited, many_parts(5), "BODY.PEEK[2]")
    assert b"p1\r\n--B\r\n" in last and b"p4\r\n--B--" in last  # the last part runs on


def test_header_bytes_limit_bounds_what_envelope_reads(make_imap: MakeIMAP) -> None:
    limited = make_imap(IMAPSettings(max_header_bytes=64))
    default = make_imap()
    far = b"x" * 60 + b"@example.test"
    raw = b"From: first@example.test, " + far + b"\r\nSubject: s\r\n\r\nbody\r\n"
    cut = fetch(limited, raw, "ENVELOPE")
    whole = fetch(default, raw, "ENVELOPE")
    # The second address is cut inside its local part: Dovecot's parser fills the domain in.
    assert b'(NIL NIL "first" "example.test")' in cut and b'"MISSING_DOMAIN"' in cut, cut
    assert b"x" * 60 + b'" "example.test")' in whole and b"MISSING_DOMAIN" not in whole


def test_limits_switched_at_run_time_apply_to_the_next_message_fetched(make_imap: MakeIMAP) -> None:
    server = make_imap()
    raw = nested(5)
    assert b'"text" "plain"' in fetch(server, raw, "BODYSTRUCTURE")
    server.server.settings = dataclasses.replace(server.server.settings, max_mime_depth=2)
    assert b'"text" "plain"' not in fetch(server, raw, "BODYSTRUCTURE")


@pytest.mark.parametrize("name", ["max_mime_depth", "max_mime_parts", "max_header_bytes"])
def test_a_limit_below_one_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}=0: expected >= 1"):
        IMAPSettings(**{name: 0})
