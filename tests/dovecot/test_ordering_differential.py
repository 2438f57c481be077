"""SORT, THREAD and address SEARCH: our fake server answers exactly as a native Dovecot.

The same corpus (tests/ordering_corpus.py: RFC 5256 subjects, groups and comments
in addresses, dates in several zones or none, reference chains, loops, dummies and
duplicate Message-IDs) is appended to both over IMAP with the same internal dates,
and every command's untagged replies are compared line by line. Seeded random
corpora (threads with loops, dummies, duplicate IDs and subject merges) follow, each
in a mailbox of its own.
"""

from __future__ import annotations

import dataclasses
import imaplib
from collections.abc import Iterator

import pytest
from mailharness.catalog import PLAINTEXT_ONLY
from mailharness.certs import MailCA
from mailharness.server import MailServer
from mailharness.servers.dovecot import DovecotConfig, DovecotProcess

from tests.helpers import require_backend
from tests.ordering_corpus import (
    ADDRESS_COMMANDS,
    COMMANDS,
    THREAD_COMMANDS,
    Message,
    append_corpus,
    random_addresses,
    random_corpus,
    untagged,
)

ALICE = ("alice@example.test", "alice-password")


def _client(host: str, port: int) -> imaplib.IMAP4:
    client = imaplib.IMAP4(host, port, timeout=30)
    client.login(*ALICE)
    append_corpus(client)
    assert client.select("INBOX")[0] == "OK"
    return client


@pytest.fixture(scope="module")
def dovecot_client(mail_ca: MailCA) -> Iterator[imaplib.IMAP4]:
    require_backend("dovecot")
    with DovecotProcess(DovecotConfig(cert=mail_ca.server_cert())) as process:
        client = _client(*process.endpoint("starttls").address)
        yield client
        client.logout()


@pytest.fixture(scope="module")
def fake_client() -> Iterator[imaplib.IMAP4]:
    # Dovecot above takes LOGIN from loopback (its own address counts as secured): so
    # does this fake, said so explicitly (the defaults refuse plaintext credentials).
    server = MailServer(dataclasses.replace(PLAINTEXT_ONLY, smtp=None)).start()
    try:
        client = _client(*server.imap.none.address)
        yield client
        client.logout()
    finally:
        server.stop()


def test_both_advertise_the_ordering_capabilities(
    dovecot_client: imaplib.IMAP4, fake_client: imaplib.IMAP4
) -> None:
    wanted = {"SORT", "SORT=DISPLAY", "THREAD=REFERENCES", "THREAD=REFS"}
    wanted |= {"THREAD=ORDEREDSUBJECT", "ESORT", "I18NLEVEL=1"}
    for client in (dovecot_client, fake_client):
        typ, data = client.capability()
        assert typ == "OK"
        assert wanted <= set(data[0].decode().split())


def test_same_replies_as_dovecot(dovecot_client: imaplib.IMAP4, fake_client: imaplib.IMAP4) -> None:
    """Every command, in one fixed order: Dovecot's answers depend on what its header cache
    already holds (a SORT after another SORT can order empty keys differently), so the
    commands run as one conversation, not as tests a random order could shuffle."""
    mismatches = []
    for command in COMMANDS:
        expected = untagged(dovecot_client, command)
        assert expected[-1] == b"OK", (command, expected)
        got = untagged(fake_client, command)
        if got != expected:
            mismatches.append(f"{command}\n  dovecot: {expected!r}\n  ours:    {got!r}")
    assert not mismatches, "\n".join(mismatches)


def _same_in_new_mailbox(
    name: str,
    corpus: list[Message],
    commands: list[str],
    clients: tuple[imaplib.IMAP4, imaplib.IMAP4],
) -> None:
    replies = []
    for client in clients:
        assert client.create(name)[0] == "OK"
        append_corpus(client, name, corpus)
        assert client.select(name)[0] == "OK"
        replies.append([untagged(client, command) for command in commands])
        assert client.select("INBOX")[0] == "OK"
    expected, got = replies
    assert all(lines[-1] == b"OK" for lines in expected)
    for command, want, have in zip(commands, expected, got, strict=True):
        assert have == want, command


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_threads_as_dovecot(
    seed: int, dovecot_client: imaplib.IMAP4, fake_client: imaplib.IMAP4
) -> None:
    clients = (dovecot_client, fake_client)
    _same_in_new_mailbox(f"Threads{seed}", random_corpus(seed, 80), THREAD_COMMANDS, clients)


@pytest.mark.parametrize("seed", [14, 18, 44])
def test_random_addresses_as_dovecot(
    seed: int, dovecot_client: imaplib.IMAP4, fake_client: imaplib.IMAP4
) -> None:
    clients = (dovecot_client, fake_client)
    _same_in_new_mailbox(f"Addresses{seed}", random_addresses(seed, 30), ADDRESS_COMMANDS, clients)
