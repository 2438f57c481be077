"""Real-world clients beyond imaplib: they must all accept our server.

Each one parses the server in its own way (curl's and fetchmail's C parsers,
mbsync's UIDPLUS/CONDSTORE use, aioimaplib's asyncio parser), so each catches
a different kind of wire mistake.
"""

from __future__ import annotations

import asyncio
import email
import os
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.imap.conftest import RunningIMAP

ALICE = ("alice@example.test", "alice-password")
MESSAGE = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: tools\r\n\r\nHi!\r\n"
TIMEOUT = 60
MODES = ["implicit", "starttls"]


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def seed(imap: RunningIMAP, count: int = 2) -> None:
    for _ in range(count):
        imap.store.deliver(ALICE[0], MESSAGE)


def message(subject: str) -> bytes:
    return (
        b"From: bob@example.test\r\nTo: alice@example.test\r\n"
        + f"Subject: {subject}\r\n\r\nBody of {subject}.\r\n".encode()
    )


def subject_of(raw: bytes) -> str:
    parsed = email.message_from_bytes(raw)
    return str(parsed["Subject"])


def server_subjects(imap: RunningIMAP) -> dict[str, frozenset[str]]:
    """INBOX on the server, as {subject: flags}."""
    box = imap.store.user(ALICE[0]).get("INBOX")
    assert box is not None
    found = {}
    for uid in box.uids():
        msg = box.get(uid)
        assert msg is not None
        found[subject_of(msg.raw)] = msg.flags
    return found


def curl(imap: RunningIMAP, mode: str, path: str, *args: str) -> bytes:
    """Run curl against `path` over implicit TLS or mandatory STARTTLS; its stdout."""
    endpoint = imap.implicit if mode == "implicit" else imap.starttls
    # By name: curl checks the certificate against it (the CA's cert covers localhost).
    url = endpoint.url.replace(f"//{endpoint.host}:", "//localhost:", 1) + "/" + path
    extra = ["--ssl-reqd"] if mode == "starttls" else []
    user = "{}:{}".format(*ALICE)
    proc = subprocess.run(
        [tool("curl"), "-sS", "--cacert", imap.certs.ca_path, "-u", user, *extra, *args, url],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert imap.errors == []
    return proc.stdout


@pytest.mark.parametrize("mode", MODES)
def test_curl_fetches_a_message(imap: RunningIMAP, mode: str) -> None:
    seed(imap)
    assert curl(imap, mode, "INBOX;UID=2") == MESSAGE


@pytest.mark.parametrize("mode", MODES)
def test_curl_lists_mailboxes(imap: RunningIMAP, mode: str) -> None:
    lines = curl(imap, mode, "").splitlines()
    listed = {}
    for line in lines:
        match = re.fullmatch(rb'\* LIST \(([^)]*)\) "/" "?([^"]+)"?', line)
        assert match is not None, lines
        listed[match[2].decode()] = set(match[1].decode().split())
    assert set(listed) == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    for name in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
        assert f"\\{name}" in listed[name], listed


@pytest.mark.parametrize("mode", MODES)
def test_curl_searches_by_subject(imap: RunningIMAP, mode: str) -> None:
    for subject in ("alpha report", "beta", "Alpha again", "gamma"):
        imap.store.deliver(ALICE[0], message(subject))
    out = curl(imap, mode, "INBOX", "-X", 'UID SEARCH SUBJECT "alpha"')
    # SUBJECT is a case-insensitive substring match (RFC 9051 6.4.4).
    assert out.splitlines() == [b"* SEARCH 1 3"], out


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


def fetchmail(tmp_path: Path, rcfile: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    rc = tmp_path / "fetchmailrc"
    rc.write_text(rcfile)
    rc.chmod(0o600)  # fetchmail refuses a group- or world-readable rcfile
    # Root's lock file is /var/run/fetchmail.pid whatever FETCHMAILHOME says:
    # parallel tests would see "another foreground fetchmail is running".
    pidfile = str(tmp_path / "fetchmail.pid")
    return subprocess.run(
        [tool("fetchmail"), "-f", str(rc), "--pidfile", pidfile, "--nosyslog", "--nodetach", *args],
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "HOME": str(tmp_path), "FETCHMAILHOME": str(tmp_path)},
    )


def test_fetchmail_check(imap: RunningIMAP, tmp_path: Path) -> None:
    seed(imap, 3)
    rcfile = (
        f"poll {imap.implicit.host} service {imap.implicit.port} protocol IMAP\n"
        f'  user "{ALICE[0]}" password "{ALICE[1]}"\n'
        f"  ssl sslcertck sslcertfile {imap.certs.ca_path} sslcommonname localhost\n"
    )
    proc = fetchmail(tmp_path, rcfile, "--check")
    out = proc.stdout + proc.stderr
    assert b"3 messages" in out, out


@pytest.mark.parametrize(("mode", "keep"), [("implicit", False), ("starttls", True)])
def test_fetchmail_fetches_all_mail(
    imap: RunningIMAP, tmp_path: Path, mode: str, keep: bool
) -> None:
    subjects = ["one", "two", "three"]
    for subject in subjects:
        imap.store.deliver(ALICE[0], message(subject))
    imap.store.user(ALICE[0])["INBOX"].set_flags([2], ["\\Seen"], "add")  # fetchall takes it too
    out = tmp_path / "delivered.mbox"
    if mode == "implicit":
        port, tls = imap.implicit.port, "ssl"
    else:
        port, tls = imap.starttls.port, "sslproto TLS1.2+"  # without `ssl`: STARTTLS
    # fetchmail matches DNS names only, so connect by name (localhost is 127.0.0.1).
    rcfile = (
        f"poll localhost port {port} protocol IMAP\n"
        f'  user "{ALICE[0]}" password "{ALICE[1]}"\n'
        f"  {tls} sslcertck sslcertfile {imap.certs.ca_path}\n"
        f"  fetchall {'keep' if keep else 'nokeep'}\n"
        f"  mda \"/bin/sh -c 'cat >> {out}'\"\n"
    )
    proc = fetchmail(tmp_path, rcfile)
    log = (proc.stdout + proc.stderr).decode(errors="replace")
    assert proc.returncode == 0, log
    delivered = out.read_bytes()
    assert re.findall(rb"^Subject: (\w+)\r?$", delivered, re.MULTILINE) == [
        s.encode() for s in subjects
    ], delivered
    assert delivered.count(b"Body of ") == 3
    left = server_subjects(imap)
    if keep:
        assert set(left) == set(subjects)
        assert all("\\Seen" in flags and "\\Deleted" not in flags for flags in left.values())
    else:
        assert left == {}
        # Emptied the IMAP way: each message flagged \Deleted, then EXPUNGEd.
        sent = [
            line.text for t in imap.transcripts for line in t.events if line.direction == "client"
        ]
        assert sum(" STORE " in c and "\\Deleted" in c for c in sent) == 3, sent
        assert any(c.endswith(" EXPUNGE") for c in sent), sent
    assert imap.errors == []


def local_messages(inbox: Path) -> dict[str, str]:
    """A Maildir folder as {subject: maildir info flags}, e.g. "S" once seen."""
    found = {}
    for sub in ("new", "cur"):
        for path in (inbox / sub).iterdir():
            _, _, info = path.name.partition(":2,")
            found[subject_of(path.read_bytes())] = info
    return found


def test_mbsync_syncs_both_ways(imap: RunningIMAP, tmp_path: Path) -> None:
    uids = {
        subject: imap.store.deliver(ALICE[0], message(subject))
        for subject in ("keep", "seen-here", "deleted-here", "deleted-there")
    }
    mail = tmp_path / "mail"
    mail.mkdir()
    inbox = mail / "INBOX"
    config = tmp_path / "mbsyncrc"
    config.write_text(
        # mbsync matches DNS names only; localhost also resolves to 127.0.0.1.
        f"IMAPAccount test\nHost localhost\nPort {imap.implicit.port}\n"
        f"User {ALICE[0]}\nPass {ALICE[1]}\nSSLType IMAPS\n"
        f"CertificateFile {imap.certs.ca_path}\n\n"
        "IMAPStore remote\nAccount test\n\n"
        f"MaildirStore local\nPath {mail}/\nInbox {inbox}\n\n"
        "Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX\n"
        "Sync All\nCreate Both\nExpunge Both\nSyncState *\n"
    )

    def mbsync() -> None:
        proc = subprocess.run(
            [tool("mbsync"), "-c", str(config), "-a"],
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert imap.errors == []

    # Pull: all four arrive, none seen yet.
    mbsync()
    assert local_messages(inbox) == dict.fromkeys(uids, "")

    # Change both sides: read one and delete one locally, add one locally,
    # delete one on the server.
    paths = {subject_of(p.read_bytes()): p for p in inbox.glob("*/*")}
    seen = paths["seen-here"]
    seen.rename(inbox / "cur" / (seen.name.partition(":2,")[0] + ":2,S"))
    paths["deleted-here"].unlink()
    (inbox / "new" / "1700000000.local1.test").write_bytes(message("pushed"))
    # mbsync waits out the current second when a Maildir folder changed in it
    # (its mtime race guard); backdate the folders so it needn't.
    for sub in ("new", "cur"):
        os.utime(inbox / sub, (0, 0))
    gone = [uids["deleted-there"]]
    assert imap.store.user(ALICE[0])["INBOX"].expunge(gone, only_deleted=False) == gone

    mbsync()
    # Push: APPEND of the new message, the \Seen flag, the local deletion expunged.
    assert server_subjects(imap) == {
        "keep": frozenset(),
        "seen-here": frozenset({"\\Seen"}),
        "pushed": frozenset(),
    }
    # Pull: the server-side deletion removed the local copy.
    assert local_messages(inbox) == {"keep": "", "seen-here": "S", "pushed": ""}


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
