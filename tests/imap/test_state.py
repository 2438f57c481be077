"""Per-session and per-mailbox state as Dovecot 2.3 keeps it, checked on the wire.

\\Recent (one session only), keywords announced before use, CONDSTORE switched on
by the commands that use it, QRESYNC, SEARCHRES, CONTEXT=SEARCH, WITHIN,
SAVEDATE, STATUS=SIZE, NOTIFY, and the IDLE client that hears of an EXPUNGE
alone. Real sockets, exact replies; ``test_state_dovecot`` holds the same
conversation against native Dovecot.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import pytest
from mailharness.servers.imap.store import Mailbox
from mailharness.servers.imap.store.mailbox import GONE_LOG

from tests.imap.conftest import RawClient, RunningIMAP

ALICE = "alice@example.test"
MESSAGE = b"From: bob@example.test\r\nSubject: hi\r\n\r\nHello\r\n"


def untagged(reply: list[bytes]) -> list[bytes]:
    """The untagged lines of a reply; the tagged one must be OK."""
    assert b" OK" in reply[-1], reply
    return reply[:-1]


@pytest.fixture
def clients(imap: RunningIMAP) -> Iterator[tuple[RawClient, RawClient, RawClient]]:
    with RawClient(imap.none) as a, RawClient(imap.none) as b, RawClient(imap.none) as c:
        for client in (a, b, c):
            client.login()
        yield a, b, c


def append(client: RawClient, mailbox: bytes, flags: bytes = b"") -> list[bytes]:
    flags = b"(" + flags + b") " if flags else b""
    return client.command(
        b"A", b"APPEND %s %s{%d+}\r\n%s" % (mailbox, flags, len(MESSAGE), MESSAGE)
    )


def select_both(clients: tuple[RawClient, RawClient, RawClient], messages: int) -> None:
    """c appends `messages` to INBOX, then a selects it (taking \\Recent), then b."""
    a, b, c = clients
    for _ in range(messages):
        append(c, b"INBOX")
    a.command(b"s", b"SELECT INBOX")
    b.command(b"s", b"SELECT INBOX")


# -- \Recent ------------------------------------------------------------------------------


def test_recent_goes_to_the_first_session_that_selects(
    imap: RunningIMAP, clients: tuple[RawClient, RawClient, RawClient]
) -> None:
    a, b, c = clients
    append(c, b"INBOX")
    append(c, b"INBOX", b"\\Seen")
    assert untagged(c.command(b"s", b"STATUS INBOX (MESSAGES RECENT UNSEEN)")) == [
        b"* STATUS INBOX (MESSAGES 2 RECENT 2 UNSEEN 1)\r\n"
    ]
    # EXAMINE sees \Recent but leaves it for the next session (RFC 3501 §6.3.2).
    assert b"* 2 RECENT\r\n" in b.command(b"e", b"EXAMINE INBOX")
    assert untagged(b.command(b"f", b"FETCH 1:2 FLAGS")) == [
        b"* 1 FETCH (FLAGS (\\Recent))\r\n",
        b"* 2 FETCH (FLAGS (\\Seen \\Recent))\r\n",
    ]
    assert b"* 2 RECENT\r\n" in a.command(b"s", b"SELECT INBOX")
    assert untagged(a.command(b"n", b"SEARCH NEW")) == [b"* SEARCH 1\r\n"]
    assert untagged(a.command(b"r", b"SEARCH RECENT")) == [b"* SEARCH 1 2\r\n"]
    assert untagged(a.command(b"o", b"SEARCH OLD")) == [b"* SEARCH\r\n"]
    # a took them: the next session and STATUS see none.
    assert b"* 0 RECENT\r\n" in b.command(b"s", b"SELECT INBOX")
    assert untagged(b.command(b"f", b"FETCH 1 FLAGS")) == [b"* 1 FETCH (FLAGS ())\r\n"]
    assert untagged(b.command(b"o", b"SEARCH OLD")) == [b"* SEARCH 1 2\r\n"]
    assert untagged(c.command(b"s", b"STATUS INBOX (RECENT)")) == [b"* STATUS INBOX (RECENT 0)\r\n"]


def test_new_mail_is_recent_for_the_session_that_syncs_first(
    imap: RunningIMAP, clients: tuple[RawClient, RawClient, RawClient]
) -> None:
    a, b, c = clients
    a.command(b"s", b"SELECT INBOX")
    b.command(b"s", b"SELECT INBOX")
    # Another session's APPEND, a COPY, and SMTP delivery are all announced with RECENT.
    append(c, b"INBOX")
    assert untagged(a.command(b"n", b"NOOP")) == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert untagged(b.command(b"n", b"NOOP")) == [b"* 1 EXISTS\r\n"]
    c.command(b"c", b"CREATE Other")
    c.command(b"s", b"SELECT Other")
    append(c, b"Other", b"\\Flagged")
    assert untagged(c.command(b"c", b"COPY 1 INBOX")) == []
    assert untagged(b.command(b"n", b"NOOP")) == [b"* 2 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert untagged(b.command(b"f", b"FETCH 2 FLAGS")) == [
        b"* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n"
    ]
    imap.store.deliver(ALICE, MESSAGE)
    assert untagged(a.command(b"n", b"NOOP")) == [b"* 3 EXISTS\r\n", b"* 2 RECENT\r\n"]
    assert untagged(a.command(b"r", b"SEARCH RECENT")) == [b"* SEARCH 1 3\r\n"]


# -- keywords ------------------------------------------------------------------------------


def test_a_new_keyword_is_announced_before_any_fetch_shows_it(
    clients: tuple[RawClient, RawClient, RawClient],
) -> None:
    a, b, c = clients
    append(c, b"INBOX")
    a.command(b"s", b"SELECT INBOX")
    b.command(b"s", b"SELECT INBOX")
    permanent = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*"
    assert untagged(a.command(b"k", b"STORE 1 +FLAGS ($Work)")) == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n",
        b"* OK [PERMANENTFLAGS (" + permanent + b")] Flags permitted.\r\n",
        b"* 1 FETCH (FLAGS (\\Recent $Work))\r\n",
    ]
    assert untagged(b.command(b"n", b"NOOP")) == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n",
        b"* OK [PERMANENTFLAGS (" + permanent + b")] Flags permitted.\r\n",
        b"* 1 FETCH (FLAGS ($Work))\r\n",
    ]
    reply = c.command(b"s", b"SELECT INBOX")
    assert reply[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n"
    assert reply[1] == b"* OK [PERMANENTFLAGS (" + permanent + b")] Flags permitted.\r\n"


# -- CONDSTORE and QRESYNC ---------------------------------------------------------------------


def test_condstore_is_enabled_by_the_commands_that_use_it(
    imap: RunningIMAP, clients: tuple[RawClient, RawClient, RawClient]
) -> None:
    a, _, c = clients
    append(c, b"INBOX")
    append(c, b"INBOX")
    a.command(b"s", b"SELECT INBOX")
    # RFC 7162 §3.1: FETCH MODSEQ enables CONDSTORE; Dovecot says HIGHESTMODSEQ at once.
    assert untagged(a.command(b"f", b"FETCH 1 MODSEQ")) == [
        b"* OK [HIGHESTMODSEQ 3] Highest\r\n",
        b"* 1 FETCH (MODSEQ (2))\r\n",
    ]
    assert untagged(a.command(b"s", b"STORE 2 +FLAGS (\\Seen)")) == [
        b"* 2 FETCH (MODSEQ (4) FLAGS (\\Seen \\Recent))\r\n"
    ]
    assert untagged(a.command(b"q", b"STORE 1 +FLAGS.SILENT (\\Flagged)")) == [
        b"* 1 FETCH (MODSEQ (5))\r\n"
    ]
    assert untagged(a.command(b"m", b"SEARCH MODSEQ 4")) == [b"* SEARCH 1 2 (MODSEQ 5)\r\n"]
    assert untagged(a.command(b"e", b"SEARCH RETURN (MIN) MODSEQ 4")) == [
        b'* ESEARCH (TAG "e") MIN 1 MODSEQ 5\r\n'
    ]
    enabling = (
        b"SEARCH MODSEQ 1",
        b"STORE 1 (UNCHANGEDSINCE 9) +FLAGS (x)",
        b"STATUS INBOX (HIGHESTMODSEQ)",
    )
    for command in enabling:
        with RawClient(imap.none) as fresh:
            fresh.login()
            fresh.command(b"s", b"SELECT INBOX")
            first = fresh.command(b"x", command)[0]
            assert re.fullmatch(rb"\* OK \[HIGHESTMODSEQ \d+\] Highest\r\n", first), first


def test_qresync_select_vanished_and_closed(
    imap: RunningIMAP, clients: tuple[RawClient, RawClient, RawClient]
) -> None:
    a, b, _ = clients
    select_both(clients, 4)
    b.command(b"d", b"STORE 2,3 +FLAGS.SILENT (\\Deleted)")
    b.command(b"x", b"EXPUNGE")
    b.command(b"f", b"UID STORE 4 +FLAGS.SILENT (\\Seen)")
    # QRESYNC must be ENABLEd first; Dovecot closes the old mailbox all the same.
    reply = a.command(b"q", b"SELECT INBOX (QRESYNC (1000 1))")
    assert reply[0] == b"* OK [CLOSED] Previous mailbox closed.\r\n"
    assert reply[1].startswith(b"q BAD ")
    assert untagged(a.command(b"e", b"ENABLE QRESYNC")) == [b"* ENABLED QRESYNC\r\n"]
    reply = untagged(a.command(b"q", b"SELECT INBOX (QRESYNC (1000 5 1:4))"))
    assert reply[-2:] == [
        b"* VANISHED (EARLIER) 2:3\r\n",
        b"* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (9))\r\n",
    ]
    reply = untagged(a.command(b"f", b"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 5 VANISHED)"))
    assert reply == [
        b"* VANISHED (EARLIER) 2:3\r\n",
        b"* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (9))\r\n",
    ]
    # Once QRESYNC is on, expunges are VANISHED, and the HIGHESTMODSEQ they moved is told.
    a.command(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    reply = a.command(b"x", b"EXPUNGE")
    assert reply[0] == b"* VANISHED 1\r\n"
    assert reply[1].startswith(b"x OK [HIGHESTMODSEQ 11] ")
    assert a.command(b"c", b"EXAMINE Trash")[0] == b"* OK [CLOSED] Previous mailbox closed.\r\n"
    imap.errors.clear()


def test_the_expunge_log_is_bounded_and_over_reports_when_forgotten(imap: RunningIMAP) -> None:
    box: Mailbox = imap.store.user(ALICE)["INBOX"]
    uids = [box.append(MESSAGE, check_quota=False) for _ in range(GONE_LOG + 10)]
    start = box.highest_modseq
    for uid in uids:
        box.set_flags([uid], ["\\Deleted"], "add")
        box.expunge([uid])
    assert box.vanished_floor > start
    # Past the floor, every missing UID below UIDNEXT is vanished (RFC 7162 allows more).
    assert box.vanished_since(start) == uids
    assert len(box.vanished_since(box.highest_modseq - 1)) == 1


# -- SEARCHRES, CONTEXT=SEARCH, WITHIN, SAVEDATE, STATUS=SIZE ----------------------------------


def test_searchres_saves_a_result_for_dollar(
    clients: tuple[RawClient, RawClient, RawClient],
) -> None:
    a, _, c = clients
    for _ in range(4):
        append(c, b"INBOX")
    a.command(b"s", b"SELECT INBOX")
    a.command(b"f", b"STORE 2,4 +FLAGS.SILENT (\\Flagged)")
    # SAVE alone answers nothing (Dovecot), then $ works as a set and as a search key.
    assert untagged(a.command(b"v", b"SEARCH RETURN (SAVE) FLAGGED")) == []
    assert untagged(a.command(b"f", b"FETCH $ (UID)")) == [
        b"* 2 FETCH (UID 2)\r\n",
        b"* 4 FETCH (UID 4)\r\n",
    ]
    assert untagged(a.command(b"u", b"UID SEARCH $ 3:4")) == [b"* SEARCH 4\r\n"]
    assert untagged(a.command(b"m", b"SEARCH RETURN (MAX SAVE) ALL")) == [
        b'* ESEARCH (TAG "m") MAX 4\r\n'
    ]
    assert untagged(a.command(b"u", b"UID FETCH $ UID")) == [b"* 4 FETCH (UID 4)\r\n"]
    assert untagged(a.command(b"x", b"COPY $ Trash")) == []


def test_search_context_update_and_partial(
    imap: RunningIMAP, clients: tuple[RawClient, RawClient, RawClient]
) -> None:
    a, b, _ = clients
    select_both(clients, 5)
    assert untagged(a.command(b"p", b"SEARCH RETURN (PARTIAL 4:2) ALL")) == [
        b'* ESEARCH (TAG "p") PARTIAL (2:4 2:4)\r\n'
    ]
    assert untagged(a.command(b"q", b"SEARCH RETURN (PARTIAL 6:9) ALL")) == [
        b'* ESEARCH (TAG "q") PARTIAL (6:9 NIL)\r\n'
    ]
    assert a.command(b"r", b"SEARCH RETURN (PARTIAL 1:*) ALL")[-1].startswith(b"r BAD ")
    assert untagged(a.command(b"w", b"SEARCH RETURN (UPDATE ALL) SEEN")) == [
        b'* ESEARCH (TAG "w")\r\n'
    ]
    b.command(b"f", b"STORE 2,3 +FLAGS.SILENT (\\Seen)")
    assert untagged(a.command(b"n", b"NOOP")) == [
        b"* 2 FETCH (FLAGS (\\Seen \\Recent))\r\n",
        b"* 3 FETCH (FLAGS (\\Seen \\Recent))\r\n",
        b'* ESEARCH (TAG "w") ADDTO (0 2:3)\r\n',
    ]
    b.command(b"d", b"STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.command(b"x", b"EXPUNGE")
    assert untagged(a.command(b"n", b"NOOP")) == [
        # No FETCH of the \\Deleted flag: the message is gone by now.
        b'* ESEARCH (TAG "w") REMOVEFROM (0 2)\r\n',
        b"* 2 EXPUNGE\r\n",
        b"* 4 RECENT\r\n",
    ]
    assert untagged(a.command(b"c", b'CANCELUPDATE "w"')) == []
    assert a.command(b"c", b'CANCELUPDATE "w"')[-1] == b"c NO Unknown tag.\r\n"
    imap.errors.clear()


def test_within_savedate_and_status_size(
    clients: tuple[RawClient, RawClient, RawClient],
) -> None:
    a, _, c = clients
    old = b'APPEND INBOX "01-Jan-2001 00:00:00 +0000" {%d+}\r\n%s' % (len(MESSAGE), MESSAGE)
    c.command(b"A", old)
    append(c, b"INBOX")
    assert untagged(c.command(b"s", b"STATUS INBOX (MESSAGES SIZE)")) == [
        b"* STATUS INBOX (MESSAGES 2 SIZE %d)\r\n" % (2 * len(MESSAGE))
    ]
    a.command(b"s", b"SELECT INBOX")
    assert untagged(a.command(b"o", b"SEARCH OLDER 86400")) == [b"* SEARCH 1\r\n"]
    assert untagged(a.command(b"y", b"SEARCH YOUNGER 86400")) == [b"* SEARCH 2\r\n"]
    # SAVEDATE is when it was saved here: both today, whatever the internal date.
    assert untagged(a.command(b"d", b"SEARCH SAVEDSINCE 1-Jan-2020")) == [b"* SEARCH 1 2\r\n"]
    assert untagged(a.command(b"d", b"SEARCH SAVEDBEFORE 1-Jan-2020")) == [b"* SEARCH\r\n"]
    assert untagged(a.command(b"d", b"SEARCH SAVEDATESUPPORTED")) == [b"* SEARCH 1 2\r\n"]
    reply = untagged(a.command(b"f", b"FETCH 1 (INTERNALDATE SAVEDATE)"))
    assert reply[0].startswith(b'* 1 FETCH (INTERNALDATE "01-Jan-2001 00:00:00 +0000" SAVEDATE "')
    assert b"2001" not in reply[0].split(b"SAVEDATE")[1]


def test_capabilities_name_every_extension_implemented(imap: RunningIMAP) -> None:
    with RawClient(imap.none) as raw:
        raw.login()
        caps = untagged(raw.command(b"c", b"CAPABILITY"))[0].split()
    for name in (b"QRESYNC", b"SEARCHRES", b"WITHIN", b"CONTEXT=SEARCH", b"STATUS=SIZE"):
        assert name in caps
    assert b"SAVEDATE" in caps and b"NOTIFY" in caps


# -- NOTIFY and IDLE ------------------------------------------------------------------------


def test_notify_reports_other_mailboxes(
    imap: RunningIMAP, clients: tuple[RawClient, RawClient, RawClient]
) -> None:
    a, b, _ = clients
    b.command(b"c", b"CREATE Box")
    append(b, b"Box")
    a.command(b"s", b"SELECT INBOX")
    [status] = untagged(a.command(b"n", b"NOTIFY SET STATUS (mailboxes Box (MessageNew))"))
    assert re.fullmatch(
        rb"\* STATUS Box \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ UNSEEN 1\)\r\n", status
    )
    events = b"(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)"
    a.command(b"n", b"NOTIFY SET (selected (MessageNew MessageExpunge)) (personal %s)" % events)
    append(b, b"Box")
    # News between commands, unsolicited (RFC 5465), with no command running:
    # FlagChange switched CONDSTORE on (as Dovecot), so HIGHESTMODSEQ comes along.
    assert re.fullmatch(
        rb"\* STATUS Box \(MESSAGES 2 UIDNEXT 3 UNSEEN 2 HIGHESTMODSEQ \d+\)\r\n", a.line()
    )
    b.command(b"u", b"SUBSCRIBE Box")
    assert a.line() == b'* LIST (\\Subscribed) "/" Box\r\n'
    b.command(b"c", b"CREATE Fresh")
    assert a.line() == b'* LIST () "/" Fresh\r\n'
    b.command(b"d", b"DELETE Fresh")
    assert a.line() == b'* LIST (\\NonExistent) "/" Fresh\r\n'
    # Our own changes are not news to us, as with Dovecot.
    assert untagged(a.command(b"c", b"CREATE Mine")) == []
    assert untagged(a.command(b"n", b"NOOP")) == []
    reply = a.command(b"x", b"NOTIFY SET (personal (MessageNew AnnotationChange))")
    assert reply[-1] == (
        b"x NO [BADEVENT AnnotationChange] Unsupported NOTIFY events (0.001 + 0.000 secs).\r\n"
    )
    assert a.command(b"y", b"NOTIFY SET (bogus (MessageNew))")[-1].startswith(b"y BAD ")
    assert untagged(a.command(b"z", b"NOTIFY NONE")) == []
    imap.errors.clear()


def test_idle_client_hears_an_expunge_alone(
    imap: RunningIMAP, clients: tuple[RawClient, RawClient, RawClient]
) -> None:
    """Dovecot coalesces changes for 0.5 s: \\Deleted then EXPUNGE reach IDLE as EXPUNGE."""
    a, b, c = clients
    append(c, b"INBOX")
    append(c, b"INBOX")
    b.command(b"s", b"SELECT INBOX")  # b takes \Recent: a's RECENT count stays 0
    a.command(b"s", b"SELECT INBOX")
    a.send(b"i IDLE\r\n")
    assert a.line() == b"+ idling\r\n"
    done = threading.Event()

    def second_session() -> None:
        # Pipelined, so both land well inside the 0.5 s window however loaded the machine.
        b.send(b"d STORE 1 +FLAGS.SILENT (\\Deleted)\r\nx EXPUNGE\r\n")
        b.until(b"x")
        done.set()

    thread = threading.Thread(target=second_session)
    thread.start()
    assert a.line() == b"* 1 EXPUNGE\r\n"
    thread.join()
    assert done.is_set()
    a.send(b"DONE\r\n")
    assert a.until(b"i")[-1].startswith(b"i OK Idle completed")
    imap.errors.clear()


def test_news_comes_with_the_commands_dovecot_syncs_after(
    clients: tuple[RawClient, RawClient, RawClient],
) -> None:
    """CAPABILITY, ID, ENABLE, NAMESPACE, LIST and STATUS send no EXPUNGE; NOOP does."""
    a, b, _ = clients
    select_both(clients, 2)
    b.command(b"d", b"STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.command(b"x", b"EXPUNGE")
    for command in (b"CAPABILITY", b"ID NIL", b"ENABLE X-FOO", b"NAMESPACE", b'LIST "" INBOX'):
        assert b"* 1 EXPUNGE\r\n" not in a.command(b"c", command)
    assert untagged(a.command(b"n", b"NOOP")) == [b"* 1 EXPUNGE\r\n", b"* 1 RECENT\r\n"]


def test_notify_fetches_new_mail_of_the_selected_mailbox(
    clients: tuple[RawClient, RawClient, RawClient],
) -> None:
    a, _, c = clients
    select_both(clients, 1)
    spec = b"NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge))"
    assert untagged(a.command(b"n", spec)) == []
    append(c, b"INBOX", b"\\Flagged")
    assert untagged(a.command(b"n", b"NOOP")) == [
        b"* 2 EXISTS\r\n",
        b"* 2 RECENT\r\n",
        b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))\r\n",
    ]


def test_examine_says_highestmodseq_once_condstore_was_used_and_store_is_ignored(
    clients: tuple[RawClient, RawClient, RawClient],
) -> None:
    """Dovecot: a mailbox's index tracks MODSEQs once any session used CONDSTORE on it."""
    a, b, c = clients
    append(c, b"INBOX")
    assert not any(b"HIGHESTMODSEQ" in line for line in b.command(b"e", b"EXAMINE INBOX"))
    a.command(b"s", b"SELECT INBOX (CONDSTORE)")
    assert b"* OK [HIGHESTMODSEQ 2] Highest\r\n" in b.command(b"e", b"EXAMINE INBOX")
    assert b.command(b"s", b"STORE 1 +FLAGS (\\Seen)") == [
        b"s OK Store ignored with read-only mailbox.\r\n"
    ]
