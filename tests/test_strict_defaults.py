"""The default fixtures are as strict as a well-run server: no credentials before TLS.

A connector that forgets STARTTLS must fail against `mail_server`, exactly as it
would against Dovecot's 143/587 (disable_plaintext_auth = yes, its default) or
Gmail's; and accepted mail carries the `Received:` header a real server writes.
"""

from __future__ import annotations

import imaplib
import re
import smtplib

import pytest
from mailharness import MailCA, MailConfig, MailServer
from mailharness.server import DEFAULT_SECURITIES, ProtocolEndpoints
from mailharness.servers.errors import ConfigError
from mailharness.servers.listeners import Endpoint, Security

from tests.helpers import require_backend

ALICE = ("alice@example.test", "alice-password")
PRIVACY_REQUIRED = (
    "b'[PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.'"
)


def test_the_defaults_are_a_real_servers_listeners(mail_server: MailServer) -> None:
    assert MailConfig().imap_listeners == MailConfig().smtp_listeners == DEFAULT_SECURITIES
    assert [e.security for e in mail_server.imap] == list(DEFAULT_SECURITIES)
    # No plaintext-only listener: asking for one says so and names those there are.
    with pytest.raises(Exception, match="no such listener; it has: starttls, implicit"):
        mail_server.imap.none  # noqa: B018


def test_imap_login_before_starttls_is_privacy_required(mail_server: MailServer) -> None:
    with imaplib.IMAP4(*mail_server.imap.starttls.address, timeout=5) as client:
        assert "LOGINDISABLED" in client.capabilities
        assert "STARTTLS" in client.capabilities
        with pytest.raises(imaplib.IMAP4.error) as caught:
            client.login(*ALICE)
        assert str(caught.value) == PRIVACY_REQUIRED
        client.starttls(ssl_context=mail_server.ca.client_context())
        assert "LOGINDISABLED" not in client.capabilities
        assert client.login(*ALICE)[0] == "OK"


def test_smtp_login_before_starttls_fails_as_dovecots_submission(
    mail_server: MailServer,
) -> None:
    with smtplib.SMTP(*mail_server.smtp.starttls.address, timeout=5) as client:
        client.ehlo()
        # Dovecot's submission advertises AUTH with no mechanism usable before TLS.
        assert client.esmtp_features["auth"].split() == []
        assert "starttls" in client.esmtp_features
        with pytest.raises(smtplib.SMTPException, match=r"^No suitable authentication method"):
            client.login(*ALICE)
        assert client.docmd("AUTH", "PLAIN") == (523, b"5.7.10 Plaintext authentication disabled.")
        assert client.docmd("MAIL", "FROM:<alice@example.test>") == (
            530,
            b"5.7.0 Authentication required.",
        )
        client.starttls(context=mail_server.ca.client_context())
        client.ehlo()
        assert client.login(*ALICE)[0] == 235
        client.sendmail(ALICE[0], ["bob@example.test"], b"Subject: s\r\n\r\nbody\r\n")
    assert len(mail_server.wait_for_messages(1)) == 1


# Dovecot's trace record (lib-smtp smtp_server_transaction_write_trace_record), ids masked.
RECEIVED = re.compile(
    rb"Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n"
    rb"\tby localhost with ESMTPSA\r\n"
    rb"\tid (?P<id>\S+)\r\n"
    rb"\t\(envelope-from <alice@example\.test>\)\r\n"
    rb"\tfor <bob@example\.test>; "
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    rb"\d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n"
    rb"Subject: traced\r\n"
)


def _send_traced(server: MailServer) -> bytes:
    endpoint = server.smtp.starttls
    with smtplib.SMTP(endpoint.host, endpoint.port, timeout=5) as client:
        client.starttls(context=server.ca.client_context())
        client.ehlo("client.example")
        client.login(*ALICE)
        client.sendmail(ALICE[0], ["bob@example.test"], b"Subject: traced\r\n\r\nhi\r\n")
    [captured] = server.wait_for_messages(1)
    return captured.data


@pytest.mark.parametrize("backend", ["fake", "dovecot"])
def test_accepted_mail_has_dovecots_received_header(backend: str, mail_ca: MailCA) -> None:
    if backend != "fake":
        require_backend(backend)
    with MailServer(MailConfig(backend=backend), ca=mail_ca) as server:
        data = _send_traced(server)
        assert RECEIVED.match(data), data[:300]
        if backend == "fake":
            # What is delivered to a local recipient carries it too.
            with imaplib.IMAP4_SSL(
                *server.imap.implicit.address, ssl_context=server.ca.client_context(), timeout=5
            ) as client:
                client.login("bob@example.test", "bob-password")
                client.select("INBOX")
                typ, fetched = client.fetch("1", "(BODY.PEEK[])")
                assert typ == "OK"
                body = fetched[0][1]
                assert isinstance(body, bytes) and RECEIVED.match(body), body[:300]


def test_only_plaintext_named_scenarios_take_plaintext_credentials() -> None:
    from mailharness.catalog import CATALOG

    lenient = [
        s.name
        for s in CATALOG.values()
        if (s.config.imap is not None and not s.config.imap.plaintext_auth_requires_tls)
        or (s.config.smtp is not None and not s.config.smtp.starttls_required)
    ]
    assert lenient == ["plaintext-only"]


def test_endpoint_attributes_are_named_like_the_security_values() -> None:
    """One name per concept: `.none` serves security 'none'; `.plain` is a deprecated alias."""
    endpoints = ProtocolEndpoints(
        "imap", tuple(Endpoint("imap", "127.0.0.1", 1 + i, s) for i, s in enumerate(Security))
    )
    for security in Security:
        assert getattr(endpoints, security.value) == endpoints.get(security.value)
    with pytest.warns(DeprecationWarning, match=r"use \.none"):
        assert endpoints.plain == endpoints.none
    with pytest.raises(ConfigError, match=r"^security='plain': .* \(did you mean 'none'\?\)$"):
        endpoints.get("plain")
