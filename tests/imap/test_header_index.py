"""The SEARCH header index (servers/imap/header_index.py): same answers as the per-message
test, and still right after appends, expunges, flag changes, renames, copies, moves and
renumbering, asked through imaplib as a connector would."""

from __future__ import annotations

import imaplib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mailharness.servers.imap.header_index import field_values
from mailharness.servers.imap.message import _fields
from mailharness.servers.imap.search import compile_search
from mailharness.servers.imap.store import MailStore
from mailharness.servers.imap.store.messages import Synthetic
from mailharness.servers.imap.view import SelectedView

from tests.imap.conftest import ALICE, RunningIMAP


def mail(subject: str, *, extra: str = "", sender: str = "Bob <bob@example.test>") -> bytes:
    return (
        f"From: {sender}\r\nTo: alice@example.test\r\nSubject: {subject}\r\n{extra}"
        "Message-ID: <x@example.test>\r\n\r\nbody\r\n"
    ).encode()


def uid_search(client: imaplib.IMAP4, *criteria: str) -> list[int]:
    status, data = client.uid("SEARCH", *criteria)
    assert status == "OK", data
    return [int(n) for n in (data[0] or b"").split()]


def expunge_elsewhere(imap: RunningIMAP, uid: str) -> None:
    """Another session expunges ``uid`` from INBOX (this one is told on its next sync)."""
    other = imaplib.IMAP4(*imap.none.address)
    try:
        other.login(*ALICE)
        other.select("INBOX")
        other.uid("STORE", uid, "+FLAGS", "\\Deleted")
        other.expunge()
    finally:
        other.logout()


def search(client: imaplib.IMAP4, *criteria: str) -> list[int]:
    status, data = client.search(None, *criteria)
    assert status == "OK", data
    return [int(n) for n in (data[0] or b"").split()]


# -- the fast field reader agrees with the full header split ---------------------------------

_LINES = st.lists(
    st.one_of(
        st.sampled_from(
            [
                b"Subject: hello",
                b"subject : spaced",
                b"SUBJECT:\tupper",
                b"Subject:",
                b"Subject",
                b" Subject: folded-looking",
                b"\tcontinued",
                b"  more",
                b"X-Foo: a",
                b"x-foo\x0b: vt",
                b"X-Foo-Bar: b",
                b"Subject\r: cr",
                b"Subj\nect: lf",
                b"No colon here",
                b": empty name",
                b"Sub\xe9ject: latin",
            ]
        ),
        st.binary(max_size=12).filter(lambda b: b"\r\n" not in b),
    ),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(lines=_LINES, name=st.sampled_from(["subject", "x-foo", "x-foo-bar", "sub\xe9ject"]))
def test_field_values_agree_with_the_full_split(lines: list[bytes], name: str) -> None:
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    expected = [f.value for f in _fields(head) if f.name == name]
    assert field_values(head, name) == expected


def test_synthetic_fields_are_the_rendered_ones() -> None:
    synth = Synthetic(7, 4096, "alice@example.test")
    for key in (1, 59, 1000, 10**6, 4_294_967_295):
        fields = _fields(synth.header(key))
        for f in fields:
            if f.name:
                make = synth.field(f.name)
                assert make is not None and make(key) == f.value, f.name
    assert synth.field("x-foo") is None


# -- index answers equal the per-message answers ----------------------------------------------

CORPUS = [
    mail("Hello there"),
    mail("=?UTF-8?Q?Caf=C3=A9?= meeting"),
    mail("Re: Hello", extra="X-Foo: bar\r\nX-Foo: second value\r\n"),
    mail("multi\r\n line subject", extra="x-foo: LOWER\r\n"),
    mail("nothing", sender='"Fred (the boss)" <fred@Example.ORG>, team: a@b.c, d@e.f;'),
    b"Subject: no blank line, no body",
    b"\r\nSubject: not a header\r\n",
    mail("dup", extra="Subject: second subject\r\n"),
]

PROGRAMS = [
    ["SUBJECT", b"hello"],
    ["SUBJECT", b"caf\xc3\xa9"],
    ["SUBJECT", b""],
    ["SUBJECT", b"line subject"],
    ["SUBJECT", b"second"],
    ["HEADER", b"X-Foo", b"value"],
    ["HEADER", b"x-foo", b""],
    ["HEADER", b"X-FOO", b"lower"],
    ["HEADER", b"Message-ID", b"x@"],
    ["FROM", b"fred@example.org"],
    ["FROM", b"the boss"],
    ["FROM", b"team"],
    ["FROM", b""],
    ["TO", b"alice"],
    ["CC", b"x"],
    ["SUBJECT", b"hello", "SUBJECT", b"re"],
    ["SUBJECT", b"hello", "UNSEEN"],
    ["OR", "SUBJECT", b"hello", "FROM", b"fred"],
    ["NOT", "SUBJECT", b"hello"],
    [["SUBJECT", b"e", "HEADER", b"x-foo", b""], "SEEN"],
    ["SUBJECT", b"message 1"],
    ["SUBJECT", b"message 2 "],
    ["SUBJECT", b"(seed 0)"],
    ["HEADER", b"Content-Type", b"us-ascii"],
    ["FROM", b"sender2"],
    ["FROM", b"Sender 7"],
    ["TO", b"alice@"],
]


@pytest.mark.parametrize("tokens", PROGRAMS, ids=repr)
def test_index_equals_per_message_test(tokens: list[object]) -> None:
    from mailharness.servers.imap.message_commands import _matches

    store = MailStore()
    box = store.user("alice").get("INBOX")
    assert box is not None
    for raw in CORPUS:
        box.append(raw)
    box.set_flags([1, 3], ["\\Seen"], "add")
    store.add_synthetic("alice", "INBOX", 30)  # a synthetic range after the stored ones
    box.append(mail("Synthetic message 5 lookalike"))
    view = SelectedView(box, readonly=True)
    program = compile_search(tokens, "UTF-8")  # type: ignore[arg-type]
    got = [seq for seq, _ in _matches(view, program)]
    messages = box.get_many(view.uids)
    expected = [
        seq
        for seq, msg in enumerate(messages, 1)
        if program.matches(_AsView(msg, seq), max_seq=len(messages), max_uid=view.uids[-1])
    ]
    assert got == expected


class _AsView:
    """A stored message with a sequence number (search.MessageView)."""

    def __init__(self, msg: object, seq: int) -> None:
        self._msg = msg
        self.seq = seq

    def __getattr__(self, name: str) -> object:
        return getattr(self._msg, name)


# -- kept right across changes, through a real client --------------------------------------


def test_append_after_search_is_found(imap: RunningIMAP, alice: imaplib.IMAP4) -> None:
    imap.store.deliver(ALICE[0], mail("alpha one"))
    alice.select("INBOX")
    assert uid_search(alice, "SUBJECT", "alpha") == [1]
    imap.store.deliver(ALICE[0], mail("alpha two"))
    alice.noop()
    assert uid_search(alice, "SUBJECT", "alpha") == [1, 2]
    alice.append("INBOX", None, None, mail("alpha three"))
    assert uid_search(alice, "SUBJECT", "alpha") == [1, 2, 3]
    assert uid_search(alice, "SUBJECT", "three") == [3]


def test_header_search_after_append_of_a_message_with_the_header(
    imap: RunningIMAP, alice: imaplib.IMAP4
) -> None:
    imap.store.deliver(ALICE[0], mail("plain"))
    alice.select("INBOX")
    assert uid_search(alice, "HEADER", "X-Ticket", '""') == []
    assert uid_search(alice, "HEADER", "X-Ticket", "42") == []
    alice.append("INBOX", None, None, mail("ticket", extra="X-Ticket: 42\r\n"))
    assert uid_search(alice, "HEADER", "X-Ticket", '""') == [2]
    assert uid_search(alice, "HEADER", "X-Ticket", "42") == [2]


def test_expunge_drops_hits_and_renumbers(imap: RunningIMAP, alice: imaplib.IMAP4) -> None:
    for subject in ("keep a", "drop b", "keep c", "keep d"):
        imap.store.deliver(ALICE[0], mail(subject))
    alice.select("INBOX")
    assert search(alice, "SUBJECT", "keep") == [1, 3, 4]
    alice.store("2", "+FLAGS", "\\Deleted")
    alice.expunge()
    assert search(alice, "SUBJECT", "keep") == [1, 2, 3]
    assert uid_search(alice, "SUBJECT", "keep") == [1, 3, 4]
    assert uid_search(alice, "SUBJECT", "drop") == []


def test_expunge_by_another_session_before_sync(imap: RunningIMAP, alice: imaplib.IMAP4) -> None:
    for subject in ("x 1", "x 2", "x 3"):
        imap.store.deliver(ALICE[0], mail(subject))
    alice.select("INBOX")
    assert uid_search(alice, "SUBJECT", "x") == [1, 2, 3]
    expunge_elsewhere(imap, "2")
    # The gone message is not a hit, as without the index (and no EXPUNGE is sent mid-SEARCH).
    assert uid_search(alice, "SUBJECT", "x") == [1, 3]


def test_flag_change_with_header_key(imap: RunningIMAP, alice: imaplib.IMAP4) -> None:
    for subject in ("news 1", "news 2", "other"):
        imap.store.deliver(ALICE[0], mail(subject))
    alice.select("INBOX")
    assert uid_search(alice, "SUBJECT", "news", "UNSEEN") == [1, 2]
    alice.uid("STORE", "1", "+FLAGS", "\\Seen")
    assert uid_search(alice, "SUBJECT", "news", "UNSEEN") == [2]
    assert uid_search(alice, "SUBJECT", "news", "SEEN") == [1]
    assert uid_search(alice, "OR", "SUBJECT", "other", "SEEN") == [1, 3]


def test_rename_copy_move_and_renumber(imap: RunningIMAP, alice: imaplib.IMAP4) -> None:
    for subject in ("red", "green", "red green"):
        imap.store.deliver(ALICE[0], mail(subject))
    alice.create("Work")
    alice.select("INBOX")
    assert uid_search(alice, "SUBJECT", "green") == [2, 3]
    alice.uid("COPY", "1:2", "Work")
    alice.uid("MOVE", "3", "Work")
    assert uid_search(alice, "SUBJECT", "green") == [2]
    alice.select("Work")
    assert uid_search(alice, "SUBJECT", "green") == [2, 3]
    alice.close()
    alice.rename("Work", "Done")
    alice.select("Done")
    assert uid_search(alice, "SUBJECT", "red") == [1, 3]
    alice.close()
    imap.store.user(ALICE[0]).change_uidvalidity("Done")
    alice.select("Done")
    assert uid_search(alice, "SUBJECT", "red") == [1, 3]
    assert uid_search(alice, "SUBJECT", "green") == [2, 3]


def test_delete_and_recreate(imap: RunningIMAP, alice: imaplib.IMAP4) -> None:
    alice.create("Tmp")
    alice.append("Tmp", None, None, mail("first life"))
    alice.select("Tmp")
    assert uid_search(alice, "SUBJECT", "life") == [1]
    alice.close()
    alice.delete("Tmp")
    alice.create("Tmp")
    alice.append("Tmp", None, None, mail("second"))
    alice.select("Tmp")
    assert uid_search(alice, "SUBJECT", "life") == []
    assert uid_search(alice, "SUBJECT", "second") == [1]


def test_synthetic_messages_with_flags_expunges_and_appends(
    imap: RunningIMAP, alice: imaplib.IMAP4
) -> None:
    imap.store.add_synthetic(ALICE[0], "INBOX", 2000)
    alice.select("INBOX")
    assert uid_search(alice, "SUBJECT", '"message 1234 "') == [1234]
    assert uid_search(alice, "FROM", "sender999@") == [999, 1999]
    assert uid_search(alice, "HEADER", "X-Foo", '""') == []
    alice.uid("STORE", "1234", "+FLAGS", "\\Deleted")
    assert uid_search(alice, "SUBJECT", '"message 1234 "', "DELETED") == [1234]
    alice.expunge()
    assert uid_search(alice, "SUBJECT", '"message 1234 "') == []
    assert search(alice, "SUBJECT", '"message 1235 "') == [1234]
    alice.append("INBOX", None, None, mail("Synthetic message 1235 (copy)", extra="X-Foo: y\r\n"))
    assert uid_search(alice, "SUBJECT", '"message 1235 "') == [1235, 2001]
    assert uid_search(alice, "HEADER", "X-Foo", "y") == [2001]
    alice.close()
    imap.store.user(ALICE[0]).change_uidvalidity("INBOX")  # synthetic keys now by table
    alice.select("INBOX")
    assert uid_search(alice, "SUBJECT", '"message 1235 "') == [1234, 2000]
    assert uid_search(alice, "SUBJECT", '"message 2000 "') == [1999]


def uid_sort(client: imaplib.IMAP4, criteria: str) -> list[int]:
    status, data = client.uid("SORT", criteria, "UTF-8", "ALL")
    assert status == "OK", data
    return [int(n) for n in (data[0] or b"").split()]


def test_sort_keys_kept_right_across_changes(imap: RunningIMAP, alice: imaplib.IMAP4) -> None:
    for subject, sender in (("b", "zed@x.test"), ("c", "amy@x.test"), ("a", "kim@x.test")):
        imap.store.deliver(ALICE[0], mail(subject, sender=sender))
    imap.store.add_synthetic(ALICE[0], "INBOX", 3)  # "Synthetic message 1..3": after "c"
    alice.select("INBOX")
    assert uid_sort(alice, "(SUBJECT)") == [3, 1, 2, 4, 5, 6]
    assert uid_sort(alice, "(FROM)") == [2, 3, 4, 5, 6, 1]
    alice.append("INBOX", None, None, mail("Re: a", sender="bob@x.test"))
    assert uid_sort(alice, "(SUBJECT)") == [3, 7, 1, 2, 4, 5, 6]
    assert uid_sort(alice, "(FROM)") == [2, 7, 3, 4, 5, 6, 1]
    alice.uid("STORE", "3,5", "+FLAGS", "\\Deleted")
    assert uid_sort(alice, "(SUBJECT)") == [3, 7, 1, 2, 4, 5, 6]
    alice.expunge()
    assert uid_sort(alice, "(SUBJECT)") == [7, 1, 2, 4, 6]
    alice.close()
    imap.store.user(ALICE[0]).change_uidvalidity("INBOX")
    alice.select("INBOX")
    # Renumbered 1..5 in the same order: 1 b, 2 c, 3 synthetic 1, 4 synthetic 3, 5 "Re: a".
    assert uid_sort(alice, "(SUBJECT)") == [5, 1, 2, 3, 4]
    assert uid_sort(alice, "(REVERSE FROM)") == [1, 4, 3, 5, 2]  # zed sender3 sender1 bob amy


def test_repeated_sort_of_every_message(imap: RunningIMAP, alice: imaplib.IMAP4) -> None:
    for subject in ("d", "b", "e", "a", "c"):
        imap.store.deliver(ALICE[0], mail(subject))
    alice.select("INBOX")
    assert uid_sort(alice, "(SUBJECT)") == [4, 2, 5, 1, 3]
    assert uid_sort(alice, "(SUBJECT)") == [4, 2, 5, 1, 3]  # kept order, same UIDs
    assert uid_sort(alice, "(REVERSE SUBJECT)") == [3, 1, 5, 2, 4]
    status, data = alice.sort("(SUBJECT)", "UTF-8", "ALL")
    assert status == "OK" and data[0] == b"4 2 5 1 3"
    alice.uid("STORE", "1:*", "+FLAGS", "\\Seen")
    assert uid_sort(alice, "(SUBJECT)") == [4, 2, 5, 1, 3]
    expunge_elsewhere(imap, "4")
    assert uid_sort(alice, "(SUBJECT)") == [2, 5, 1, 3]  # the view is behind: no kept order
    alice.noop()
    assert uid_sort(alice, "(SUBJECT)") == [2, 5, 1, 3]
    status, data = alice.sort("(SUBJECT)", "UTF-8", "ALL")
    assert data[0] == b"2 4 1 3"
