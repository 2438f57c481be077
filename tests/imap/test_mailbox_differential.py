"""The fake's mailbox commands against native Dovecot 2.3: same conversation, same replies.

Dovecot runs with the fake's namespace (separator "/", the five special-use
folders and INBOX auto-subscribed), so LIST, LSUB, RENAME, DELETE, STATUS
and SUBSCRIBE can be compared line by line. Dovecot's command timing
("(0.001 + 0.000 secs)") and UIDVALIDITY values are masked; untagged lines
are compared as sets, since Dovecot lists in directory order.

Known, documented differences are not in the script: Dovecot's special-use
flags (and auto-created folders) follow its config's names where the fake's
follow the mailbox on RENAME; Maildir++ with a "/" separator refuses "." in
names, which the fake allows.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from mailharness.servers.dovecot import DovecotConfig, DovecotProcess, SSLMode
from mailharness.servers.listeners import Endpoint

from tests.helpers import require_backend
from tests.imap.conftest import MakeIMAP

NAMESPACE = (
    "namespace inbox {",
    "  inbox = yes",
    "  separator = /",
    "  mailbox INBOX {",
    "    auto = subscribe",
    "  }",
    *(
        line
        for name in ("Drafts", "Sent", "Trash", "Junk", "Archive")
        for line in (
            f"  mailbox {name} {{",
            "    auto = subscribe",
            f"    special_use = \\{name}",
            "  }",
        )
    ),
    "}",
)

SCRIPT = [
    b'LIST "" ""',
    b'LIST "" *',
    b'LSUB "" *',
    b"CREATE Projects/Sub",
    b'LIST "" Projects*',
    b"RENAME Projects Projects2",
    b'LIST "" *',
    b'LIST () "" Projects2 RETURN (CHILDREN)',
    b"DELETE Projects2/Sub",
    b"DELETE Projects2",
    b"STATUS Moved (MESSAGES)",
    b"SELECT Moved",
    b"EXAMINE Moved",
    b"DELETE Moved",
    b"RENAME Moved Foo",
    b"SUBSCRIBE Moved",
    b"UNSUBSCRIBE Moved",
    b"CREATE INBOX",
    b"CREATE Trash2",
    b"CREATE Trash2",
    b"RENAME Trash2 INBOX",
    b"RENAME INBOX Inb2",
    b"RENAME Trash2 Trash2/x",
    b"DELETE INBOX",
    b"CREATE box/",
    b"CREATE box/test",
    b"CREATE box/t3/t4/t5",
    b"SUBSCRIBE box/t3/t4/t5",
    b"SUBSCRIBE box/test",
    b'LSUB "" box/%',
    b'LSUB "" box/t3/%',
    b'LIST () "" box/*',
    b'LIST (SUBSCRIBED) "" *',
    b'LIST (SUBSCRIBED RECURSIVEMATCH) "" box/% RETURN (CHILDREN)',
    b'LIST "" (box/% box/t3/%)',
    b'LIST "" box/% RETURN (CHILDREN SUBSCRIBED)',
    b'LIST "" box/% RETURN (STATUS (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT))',
    b'LIST (SPECIAL-USE) "" *',
    b'LIST "" * RETURN (SPECIAL-USE)',
    b'LIST (imaptest) "" ""',
    b'LIST (recursivematch) "" ""',
    b'LIST "" "" return (imaptest)',
    b'LIST "" box/% RETURN (STATUS (FOO))',
    b'LIST "" box/% RETURN (STATUS ())',
    b'LIST "" box/% RETURN (children) garbage',
    b"RENAME box/t3 box/t9",
    b'LSUB "" *',
    b'LIST (SUBSCRIBED) "" box/* RETURN (CHILDREN)',
    b"STATUS INBOX (SIZE UIDNEXT MESSAGES UNSEEN RECENT UIDVALIDITY)",
    b"STATUS INBOX (FOO)",
    b'CREATE "p&AOQA5A-"',
    b'LIST "" "p&AOQA5A-"',
    b'CREATE "bad&AOQ"',
    b'SELECT "bad&AOQ"',
    b"SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}",
    b'LIST "" !#$&\'+,-.0123456789:;<=>?@^_`|[}%*',
    b"SELECT a[b",
    b"CREATE {3+}\r\na\rb",
    b"CREATE {2+}\r\na\xff",
    b'CREATE "' + b"y" * 256 + b'"',
    b'CREATE "a//b"',
    b'CREATE "/lead"',
    b"CREATE ~foo",
    b"SELECT box/",
    b"CREATE h",
    b"CREATE h/c",
    b"DELETE h",
    b'LIST "" h* RETURN (STATUS (MESSAGES))',
    b'LIST () "" h* RETURN (CHILDREN)',
    b"SELECT h",
    b"DELETE h",
    b"SUBSCRIBE h",
    b'LIST (SUBSCRIBED) "" h*',
    b'LSUB "" h*',
    b"CREATE h/c/d",
    b"DELETE h/c",
    b'LIST "" h*',
    b"DELETE h/c/d",
    b'LIST "" h*',
    b'LIST "Trash/" ""',
    b'LIST "a/b" ""',
    b'DELETE ""',
    b"SUBSCRIBE Trash/",
    b"UNSUBSCRIBE Trash/",
    b"EXAMINE Trash",
    b"SELECT Missing",
    b"EXAMINE Trash",
    b'SELECT ""',
    b"UNSELECT",
    b"SELECT",
    b"LIST",
    b'LIST ""',
    b"LIST ()",
    b'LSUB ""',
    b"STATUS INBOX MESSAGES",
    b"STATUS Trash (MESSAGES)",
    b'CREATE "star*"',
    b'LIST "" "star%"',
    b'CREATE "a&AAE-b"',
    b"CREATE inbox/x",
    b'LIST "" Inbox*',
]

_TIMING = re.compile(rb" \(\d+\.\d+ \+ \d+\.\d+(?: \+ \d+\.\d+)? secs\)\.?$")
_UIDVALIDITY = re.compile(rb"UIDVALIDITY \d+")


def converse(endpoint: Endpoint) -> list[tuple[bytes, frozenset[bytes], bytes]]:
    """Each command's (command, untagged lines, tagged reply), masked for comparing."""
    out = []
    with socket.create_connection(endpoint.address, timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b'L LOGIN "alice@example.test" "alice-password"\r\n')
        while not reader.readline().startswith(b"L "):
            pass
        for n, command in enumerate(SCRIPT):
            tag = b"t%d" % n
            sock.sendall(tag + b" " + command + b"\r\n")
            lines = []
            while True:
                line = reader.readline().rstrip(b"\r\n")
                assert line, f"connection closed after {command!r}"
                if line.startswith(tag + b" "):
                    break
                lines.append(_UIDVALIDITY.sub(b"UIDVALIDITY n", line))
            done = _TIMING.sub(b"", line[len(tag) + 1 :]).rstrip(b".")
            out.append((command, frozenset(lines), done))
    return out


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Endpoint]:
    require_backend("dovecot")
    config = DovecotConfig(ssl=SSLMode.NO, imaps=False, extra=NAMESPACE)
    with DovecotProcess(config) as process:
        yield process.endpoints[0]


def test_mailbox_commands_answer_as_native_dovecot(dovecot: Endpoint, make_imap: MakeIMAP) -> None:
    imap = make_imap()
    fake = converse(imap.none)
    imap.errors.clear()  # the script's BADs are recorded client errors
    real = converse(dovecot)
    assert b'* LIST (\\HasNoChildren) "/" INBOX' in real[1][1], "logged in and listing"
    problems = [
        f"{cmd!r}:\n  dovecot {sorted(d_lines)} {d_done!r}\n  fake    {sorted(f_lines)} {f_done!r}"
        for (cmd, d_lines, d_done), (_, f_lines, f_done) in zip(real, fake, strict=True)
        if (d_lines, d_done) != (f_lines, f_done)
    ]
    assert not problems, "\n".join(problems)
