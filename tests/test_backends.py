"""`MailServer` hands the mail to one backend (harness/backends.py): our fakes or Dovecot.

What every backend must do the same is proven by the suite that runs on both
(tests/dovecot/test_backend.py, tests/test_differential.py); here, what the
interface itself promises, with no Dovecot needed.
"""

from __future__ import annotations

import imaplib
import smtplib

import pytest
from mailharness.backends import DovecotMailBackend, FakeMailBackend, MailBackend
from mailharness.certs import MailCA
from mailharness.server import MailConfig, MailServer, NotApplicable
from mailharness.servers.errors import ConfigError

from tests.helpers import submission

ALICE = ("alice@example.test", "alice-password")


@pytest.mark.parametrize(
    ("backend", "kind"),
    [("fake", FakeMailBackend), ("dovecot", DovecotMailBackend), ("docker", DovecotMailBackend)],
)
def test_the_config_names_the_backend(
    backend: str, kind: type[MailBackend], mail_ca: MailCA
) -> None:
    server = MailServer(MailConfig(backend=backend), ca=mail_ca)
    assert type(server._backend) is kind


@pytest.mark.parametrize("backend", ["dovecot", "docker"])
def test_dovecot_says_why_it_cannot_switch_before_it_runs(backend: str, mail_ca: MailCA) -> None:
    """The capability is the backend's, not the running state's: no Dovecot needed to ask."""
    server = MailServer(MailConfig(backend=backend), ca=mail_ca)
    with pytest.raises(
        NotApplicable,
        match=r"^not applicable: set_maintenance\(\) on backend='.*': Dovecot's behaviour is fixed",
    ):
        server.set_maintenance()


def test_seeding_a_dovecot_that_is_not_running_is_an_error(mail_ca: MailCA) -> None:
    """Not a message in an in-memory store that Dovecot never serves."""
    server = MailServer(MailConfig(backend="dovecot"), ca=mail_ca)
    with pytest.raises(ConfigError, match="Dovecot is not running"):
        server.deliver(ALICE[0], b"Subject: x\r\n\r\nx\r\n")


def test_the_fake_switches_only_what_it_serves(mail_ca: MailCA) -> None:
    with MailServer(MailConfig(imap=None), ca=mail_ca) as server:
        with pytest.raises(ConfigError, match="does not serve IMAP"):
            server.switch_imap(maintenance=True)
        assert server.switch_smtp(starttls_broken=True).starttls_broken


def test_seeded_and_smtp_mail_meet_in_the_fake_mailbox(mail_ca: MailCA) -> None:
    """One backend holds both: `deliver` seeds the store, SMTP to a local user lands beside it."""
    with MailServer(MailConfig(), ca=mail_ca) as server:
        assert server.deliver(ALICE[0], b"Subject: seeded\r\n\r\nx\r\n") == 1
        with submission(server) as smtp:
            smtp.login(*ALICE)
            smtp.sendmail(ALICE[0], [ALICE[0]], b"Subject: sent\r\n\r\ny\r\n")
        assert len(server.wait_for_appends(ALICE[0], 2)) == 2
        imap = imaplib.IMAP4_SSL(
            *server.imap.implicit.address, ssl_context=server.ca.client_context()
        )
        with imap:
            imap.login(*ALICE)
            imap.select("INBOX")
            _, data = imap.fetch("1:2", "(BODY[HEADER.FIELDS (SUBJECT)])")
        subjects = [part[1] for part in data if isinstance(part, tuple)]
        assert [s.strip() for s in subjects] == [b"Subject: seeded", b"Subject: sent"]


def test_smtp_to_a_full_mailbox_is_refused_at_rcpt(mail_ca: MailCA) -> None:
    with MailServer(MailConfig(), ca=mail_ca) as server:
        server.set_quota(ALICE[0], messages=1)
        server.deliver(ALICE[0], b"Subject: fills it\r\n\r\nx\r\n")
        with submission(server) as smtp:
            smtp.login(*ALICE)
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                smtp.sendmail(ALICE[0], [ALICE[0]], b"Subject: over\r\n\r\ny\r\n")
        assert refused.value.recipients[ALICE[0]][0] == 552
