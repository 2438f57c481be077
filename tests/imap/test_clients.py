"""Real-world clients beyond imaplib: they must all accept our server.

Each one parses the server in its own way (curl's and fetchmail's C parsers,
mbsync's UIDPLUS/CONDSTORE use, aioimaplib's asyncio parser), so each catches
a different kind of wire mistake.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.imap.conftest import RunningIMAP

ALICE = ("alice@example.test", "alice-password")
MESSAGE = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: tools\r\n\r\nHi!\r\n"
TIMEOUT = 60


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def seed(imap: RunningIMAP, count: int = 2) -> None:
    for _ in range(count):
        imap.store.deliver(ALICE[0], MESSAGE)


@pytest.mark.parametrize("mode", ["implicit", "starttls"])
def test_curl_fetches_a_message(imap: RunningIMAP, mode: str) -> None:
    seed(imap)
    endpoint = imap.implicit if mode == "implicit" else imap.starttls
    url = f"{endpoint.url}/INBOX;UID=2"
    extra = ["--ssl-reqd"] if mode == "starttls" else []
    user = "{}:{}".format(*ALICE)
    proc = subprocess.run(
        [tool("curl"), "-sS", "--cacert", imap.certs.ca_path, "-u", user, *extra, url],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == MESSAGE
    assert imap.errors == []


def test_openssl_s_client_starttls(imap: RunningIMAP) -> None:
    proc = subprocess.run(
        [
            tool("openssl"),
            "s_client",
            "-connect",
            "{}:{}".format(*imap.starttls.address),
            "-starttls",
            "imap",
            "-CAfile",
            imap.certs.ca_path,
            "-verify_return_error",
            "-quiet",
        ],
        input=b'a LOGIN alice@example.test "alice-password"\r\nb LOGOUT\r\n',
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert b"a OK [CAPABILITY" in proc.stdout, proc.stderr
    assert b"* BYE Logging out" in proc.stdout


def test_fetchmail_check(imap: RunningIMAP, tmp_path: Path) -> None:
    seed(imap, 3)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll {imap.implicit.host} service {imap.implicit.port} protocol IMAP\n"
        f'  user "{ALICE[0]}" password "{ALICE[1]}"\n'
        f"  ssl sslcertck sslcertfile {imap.certs.ca_path} sslcommonname localhost\n"
    )
    rc.chmod(0o600)
    proc = subprocess.run(
        [tool("fetchmail"), "--check", "-f", str(rc), "--nosyslog"],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)},
    )
    out = proc.stdout + proc.stderr
    assert b"3 messages" in out, out


def test_mbsync_pulls_the_mailbox(imap: RunningIMAP, tmp_path: Path) -> None:
    seed(imap, 3)
    mail = tmp_path / "mail"
    mail.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(
        # mbsync matches DNS names only; localhost also resolves to 127.0.0.1.
        f"IMAPAccount test\nHost localhost\nPort {imap.implicit.port}\n"
        f"User {ALICE[0]}\nPass {ALICE[1]}\nSSLType IMAPS\n"
        f"CertificateFile {imap.certs.ca_path}\n\n"
        "IMAPStore remote\nAccount test\n\n"
        f"MaildirStore local\nPath {mail}/\nInbox {mail}/INBOX\n\n"
        "Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\n"
        f"SyncState *\n"
    )
    proc = subprocess.run(
        [tool("mbsync"), "-c", str(config), "-a"],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        len(list((mail / "INBOX" / "new").iterdir()))
        + len(list((mail / "INBOX" / "cur").iterdir()))
        == 3
    )


def test_aioimaplib(imap: RunningIMAP) -> None:
    aioimaplib = pytest.importorskip("aioimaplib")
    seed(imap)

    async def session() -> None:
        ctx = imap.certs.client()
        client = aioimaplib.IMAP4_SSL(*imap.implicit.address, ssl_context=ctx, timeout=TIMEOUT)
        await client.wait_hello_from_server()
        assert (await client.login(*ALICE)).result == "OK"
        assert (await client.select("INBOX")).result == "OK"
        response = await client.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        assert response.result == "OK"
        assert bytes(response.lines[1]) == MESSAGE
        idle = await client.idle_start(timeout=TIMEOUT)
        await asyncio.get_running_loop().run_in_executor(None, seed, imap, 1)
        pushed = await client.wait_server_push()
        assert b"3 EXISTS" in pushed
        client.idle_done()
        await asyncio.wait_for(idle, TIMEOUT)
        await client.logout()

    asyncio.run(session())
    assert imap.errors == []


def test_imap_tools(imap: RunningIMAP) -> None:
    imap_tools = pytest.importorskip("imap_tools")
    seed(imap)
    ctx: ssl.SSLContext = imap.certs.client()
    with imap_tools.MailBoxStartTls(*imap.starttls.address, ssl_context=ctx).login(
        *ALICE
    ) as mailbox:
        messages = list(mailbox.fetch(mark_seen=False))
        assert [m.subject for m in messages] == ["tools", "tools"]
        mailbox.flag([m.uid for m in messages], imap_tools.MailMessageFlags.FLAGGED, True)
        mailbox.move(messages[0].uid, "Archive")
        assert mailbox.folder.status("Archive")["MESSAGES"] == 1
    assert imap.errors == []
