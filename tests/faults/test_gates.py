"""The STARTTLS/deny gates as pure functions: bytes in, actions and bytes out."""

from __future__ import annotations

from mailharness.servers.faults.framing import LineFramer
from mailharness.servers.faults.starttls import Forward, IMAPGate, Reply, SMTPGate, StartTLS

GREETING = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN AUTH=LOGIN] Dovecot ready.\r\n"


def imap(**options: object) -> IMAPGate:
    settings: dict[str, object] = {
        "starttls": True,
        "tls_active": False,
        "deny": None,
        "client_ip": "127.0.0.2",
    }
    settings.update(options)
    return IMAPGate(**settings)  # type: ignore[arg-type]


def smtp(**options: object) -> SMTPGate:
    settings: dict[str, object] = {
        "starttls": True,
        "tls_active": False,
        "deny": None,
        "client_ip": "127.0.0.2",
    }
    settings.update(options)
    return SMTPGate(**settings)  # type: ignore[arg-type]


def test_framer_keeps_literals_whole_and_waits_for_partial_lines() -> None:
    framer = LineFramer(literals=True)
    units = framer.feed(b"* 1 FETCH (BODY[] {12}\r\nA STARTTLS\r\n)\r\na2 NO")
    assert [(u.data, u.is_line) for u in units] == [
        (b"* 1 FETCH (BODY[] {12}\r\n", True),
        (b"A STARTTLS\r\n", False),
        (b")\r\n", True),
    ]
    assert [u.data for u in framer.feed(b"OP\r\n")] == [b"a2 NOOP\r\n"]


def test_imap_capabilities_gain_starttls_before_tls_and_lose_it_after() -> None:
    gate = imap()
    assert gate.from_server(GREETING) == (
        b"* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ STARTTLS AUTH=PLAIN AUTH=LOGIN] "
        b"Dovecot ready.\r\n"
    )
    # After login there is no AUTH=: STARTTLS is not offered there.
    assert gate.from_server(b"a OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n") == (
        b"a OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n"
    )
    gate.tls_active = True
    assert gate.from_server(b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n") == (
        b"* CAPABILITY IMAP4rev1\r\n"
    )


def test_imap_capability_text_inside_a_literal_is_left_alone() -> None:
    gate = imap()
    body = b"* CAPABILITY AUTH=PLAIN\r\n"
    reply = b"* 1 FETCH (BODY[] {%d}\r\n" % len(body) + body + b")\r\n"
    assert gate.from_server(reply) == reply


def test_imap_starttls_is_answered_by_the_front_and_pipelined_bytes_dropped() -> None:
    gate = imap()
    actions = gate.from_client(b"a1 CAPABILITY\r\nA2 starttls\r\nA3 LOGIN sneaky pw\r\n")
    assert actions == [
        Forward(b"a1 CAPABILITY\r\n"),
        StartTLS(b"A2 OK Begin TLS negotiation now.\r\n"),
    ]
    gate.tls_active = True
    assert gate.from_client(b"a4 STARTTLS\r\n") == [Forward(b"a4 STARTTLS\r\n")]


def test_imap_deny_login_answers_like_dovecot_allow_nets() -> None:
    gate = imap(starttls=False, deny="login")
    assert gate.from_client(b"a LOGIN alice secret\r\nb NOOP\r\n") == [
        Reply(b"a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        Forward(b"b NOOP\r\n"),
    ]
    # Non-synchronizing literals of the refused command are swallowed, not forwarded.
    assert gate.from_client(b"c LOGIN {5+}\r\nalice {6+}\r\nsecret\r\nd NOOP\r\n") == [
        Reply(b"c NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"),
        Forward(b"d NOOP\r\n"),
    ]


def test_smtp_ehlo_gains_and_loses_starttls() -> None:
    gate = smtp()
    assert gate.from_client(b"EHLO me\r\n") == [Forward(b"EHLO me\r\n")]
    assert gate.from_server(b"250-localhost\r\n250-SIZE 100\r\n250 HELP\r\n") == (
        b"250-localhost\r\n250-SIZE 100\r\n250-HELP\r\n250 STARTTLS\r\n"
    )
    assert gate.from_client(b"STARTTLS\r\nMAIL FROM:<x>\r\n") == [
        StartTLS(b"220 2.0.0 Ready to start TLS\r\n")
    ]
    gate.tls_active = True
    gate.from_client(b"EHLO me\r\n")
    assert gate.from_server(b"250-localhost\r\n250 STARTTLS\r\n") == b"250 localhost\r\n"


def test_smtp_message_body_is_never_taken_for_commands() -> None:
    gate = smtp(deny="rcpt")
    gate.from_client(b"DATA\r\n")
    gate.from_server(b"354 End data with <CR><LF>.<CR><LF>\r\n")
    body = b"RCPT TO:<x>\r\nSTARTTLS\r\n.\r\n"
    assert gate.from_client(body) == [Forward(body)]
    assert gate.from_client(b"RCPT TO:<y>\r\n") == [
        Reply(b"554 5.7.1 <unknown[127.0.0.2]>: Client host rejected: Access denied\r\n")
    ]


def test_smtp_deny_login_fails_auth_at_once() -> None:
    gate = smtp(starttls=False, deny="login")
    assert gate.from_client(b"AUTH PLAIN AGFsaWNlAHB3\r\n") == [
        Reply(b"535 5.7.8 Authentication failed.\r\n")
    ]
