"""The in-memory mail store: UIDs, flags, quota, folders, watchers, synthetic mail."""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mailharness.servers.imap.store import (
    MailboxExists,
    MailStore,
    NoSuchMailbox,
    QuotaExceeded,
    StoreError,
    TooBig,
    UserMailboxes,
)

ALICE = "alice@example.test"


def msg(subject: str, body: str = "hello") -> bytes:
    return f"Subject: {subject}\r\nFrom: a@example.test\r\n\r\n{body}\r\n".encode()


@pytest.fixture
def store() -> MailStore:
    return MailStore(uidvalidity_base=100)


@pytest.fixture
def alice(store: MailStore) -> UserMailboxes:
    return store.user(ALICE)


def run_in_thread(target: Callable[[], object]) -> None:
    """Run `target` in another thread and re-raise what it raised here."""
    errors: list[BaseException] = []

    def wrapper() -> None:
        try:
            target()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=wrapper)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    if errors:
        raise errors[0]


# -- users and seeding -------------------------------------------------------


def test_new_user_has_default_special_use_folders(store: MailStore) -> None:
    mailboxes = store.user(ALICE)
    uses = {b.name: b.special_use for b in mailboxes.mailboxes()}
    assert uses == {
        "INBOX": None,
        "Archive": "\\Archive",
        "Drafts": "\\Drafts",
        "Junk": "\\Junk",
        "Sent": "\\Sent",
        "Trash": "\\Trash",
    }
    assert store.users() == [ALICE]
    assert store.user(ALICE) is mailboxes
    assert mailboxes.get("inbox") is mailboxes.get("InBoX") is mailboxes["INBOX"]


def test_uidvalidity_is_distinct_and_deterministic_with_a_base(alice: UserMailboxes) -> None:
    values = [b.uidvalidity for b in alice.mailboxes()]
    assert sorted(values) == list(range(100, 106))


def test_uidvalidity_is_time_based_by_default() -> None:
    import time

    before = int(time.time())
    boxes = MailStore().user(ALICE).mailboxes()
    values = [b.uidvalidity for b in boxes]
    assert len(set(values)) == len(values)
    assert all(before <= v < 2**32 for v in values)


@pytest.mark.parametrize(
    "raw",
    [
        "Subject: s\n\nline1\nline2\n",
        b"Subject: s\n\nline1\r\nline2\r",
        b"Subject: s\r\n\r\nline1\r\nline2\r\n",
    ],
)
def test_seed_input_is_normalised_to_crlf(store: MailStore, raw: str | bytes) -> None:
    uid = store.deliver(ALICE, raw)
    stored = store.user(ALICE)["INBOX"].get(uid)
    assert stored is not None
    assert stored.raw == b"Subject: s\r\n\r\nline1\r\nline2\r\n"
    assert stored.size == len(stored.raw)


def test_seed_accepts_email_message(store: MailStore) -> None:
    message = EmailMessage()
    message["Subject"] = "from email"
    message.set_content("body\n")
    box = store.user(ALICE)["INBOX"]
    uid = box.append(message, ["\\seen", "\\Recent", "$Label"], datetime(2024, 5, 1))
    stored = box.get(uid)
    assert stored is not None
    assert b"Subject: from email\r\n" in stored.raw
    assert b"\n" not in stored.raw.replace(b"\r\n", b"")
    assert stored.flags == {"\\Seen", "$Label"}  # case fixed, \Recent is per-session
    assert stored.internaldate == datetime(2024, 5, 1, tzinfo=UTC)


def test_deliver_to_missing_mailbox_raises(store: MailStore) -> None:
    with pytest.raises(NoSuchMailbox, match="Nope"):
        store.deliver(ALICE, msg("x"), "Nope")


# -- UIDs, flags, expunge ----------------------------------------------------


def test_uids_rise_strictly_and_are_never_reused(alice: UserMailboxes) -> None:
    box = alice["INBOX"]
    first = [box.append(msg(f"m{i}")) for i in range(3)]
    assert first == [1, 2, 3]
    box.set_flags([2, 3], ["\\Deleted"], "add")
    assert box.expunge() == [2, 3]
    assert list(box.uids()) == [1]
    assert box.append(msg("m4")) == 4
    assert box.uidnext == 5
    assert list(box.uids()) == [1, 4]
    assert box.get(2) is None


def test_uid_expunge_takes_only_deleted_messages_of_the_set(alice: UserMailboxes) -> None:
    box = alice["INBOX"]
    for i in range(4):
        box.append(msg(f"m{i}"))
    box.set_flags([1, 2, 3], ["\\Deleted"], "add")
    assert box.expunge([2, 4]) == [2]
    assert box.expunge([4], only_deleted=False) == [4]
    assert list(box.uids()) == [1, 3]


def test_set_flags_modes_and_modseq(alice: UserMailboxes) -> None:
    box = alice["INBOX"]
    for i in range(3):
        box.append(msg(f"m{i}"))
    base = box.highest_modseq
    changed, failed = box.set_flags([1, 2, 99], ["\\SEEN"], "add")
    assert [m.uid for m in changed] == [1, 2] and failed == []
    assert [m.modseq for m in changed] == [base + 1, base + 2]
    assert box.highest_modseq == base + 2
    # No change, no modseq bump.
    assert box.set_flags([1], ["\\Seen"], "add") == ([], [])
    assert box.highest_modseq == base + 2
    changed, _ = box.set_flags([1], ["$A", "$B"], "set")
    assert changed[0].flags == {"$A", "$B"}
    changed, _ = box.set_flags([1], ["$A"], "remove")
    assert changed[0].flags == {"$B"}
    with pytest.raises(ValueError, match="mode='toggle'"):
        box.set_flags([1], ["$A"], "toggle")  # type: ignore[arg-type]


def test_unchanged_since_reports_failures(alice: UserMailboxes) -> None:
    box = alice["INBOX"]
    box.append(msg("a"))
    box.append(msg("b"))
    mark = box.highest_modseq
    box.set_flags([2], ["\\Flagged"], "add")
    changed, failed = box.set_flags([1, 2], ["\\Seen"], "add", unchanged_since=mark)
    assert [m.uid for m in changed] == [1]
    assert failed == [2]


def test_changed_since_and_vanished_since(alice: UserMailboxes) -> None:
    box = alice["INBOX"]
    for i in range(5):
        box.append(msg(f"m{i}"))
    mark = box.highest_modseq
    box.set_flags([2, 4], ["\\Seen"], "add")
    box.set_flags([2], ["\\Answered"], "add")
    assert [m.uid for m in box.changed_since(mark)] == [2, 4]
    assert len(box.changed_since(0)) == 5
    box.set_flags([4], ["\\Deleted"], "add")
    before = box.highest_modseq
    box.expunge()
    assert box.highest_modseq > before
    assert box.vanished_since(before) == [4]
    assert [m.uid for m in box.changed_since(mark)] == [2]


def test_recent_is_claimed_by_the_first_session(alice: UserMailboxes) -> None:
    box = alice["INBOX"]
    box.append(msg("a"))
    assert box.status().recent == 1
    assert box.claim_recent(take=False) == (1, 1)  # EXAMINE looks, takes nothing
    assert box.claim_recent() == (1, 1)
    assert box.claim_recent() == (2, 1)  # empty: the first session took it
    assert box.status().recent == 0


def test_status_counts(alice: UserMailboxes) -> None:
    box = alice["INBOX"]
    sizes = [box.get(box.append(msg(f"m{i}"))).size for i in range(3)]  # type: ignore[union-attr]
    box.set_flags([2], ["\\Seen"], "add")
    status = box.status()
    assert (status.messages, status.unseen, status.uidnext, status.size) == (3, 2, 4, sum(sizes))
    assert box.first_unseen() == 1


# -- copy, move, quota -------------------------------------------------------


def test_copy_keeps_flags_and_date_and_move_removes(alice: UserMailboxes) -> None:
    inbox, archive = alice["INBOX"], alice["Archive"]
    when = datetime(2023, 1, 2, 3, 4, 5, tzinfo=UTC)
    inbox.append(msg("a"), ["\\Flagged"], when)
    inbox.append(msg("b"))
    assert inbox.copy_to([1, 2, 7], archive) == [(1, 1), (2, 2)]
    copied = archive.get(1)
    assert copied is not None
    assert copied.flags == {"\\Flagged"} and copied.internaldate == when
    assert inbox.move_to([2], archive) == [(2, 3)]
    assert list(inbox.uids()) == [1]
    assert inbox.vanished_since(0) == [2]
    assert alice.usage()[1] == 4


def test_quota_on_append_and_deliver(store: MailStore, alice: UserMailboxes) -> None:
    alice.quota_message_limit = 2
    store.deliver(ALICE, msg("a"))
    alice["Sent"].append(msg("b"))
    with pytest.raises(QuotaExceeded) as info:
        store.deliver(ALICE, msg("c"))
    assert info.value.kind == "messages"
    alice.quota_message_limit = None
    alice.quota_storage_limit = alice.usage()[0] + 10
    with pytest.raises(QuotaExceeded, match="storage") as info:
        alice["INBOX"].append(msg("too big for what is left"))
    assert info.value.kind == "storage" and info.value.limit == alice.quota_storage_limit
    alice["INBOX"].append(msg("over anyway"), check_quota=False)
    assert alice.usage()[1] == 3


def test_append_limit(alice: UserMailboxes) -> None:
    alice.append_limit = 20
    with pytest.raises(TooBig) as info:
        alice["INBOX"].append(msg("x" * 50))
    assert info.value.limit == 20
    assert len(alice["INBOX"]) == 0


def test_copy_checks_quota_for_the_whole_batch(alice: UserMailboxes) -> None:
    inbox = alice["INBOX"]
    for i in range(3):
        inbox.append(msg(f"m{i}"))
    used, _ = alice.usage()
    alice.quota_storage_limit = used + 2 * inbox.get(1).size  # type: ignore[union-attr]
    with pytest.raises(QuotaExceeded):
        inbox.copy_to([1, 2, 3], alice["Archive"])
    assert len(alice["Archive"]) == 0  # all or nothing
    assert alice["Archive"].uidnext == 1
    assert [d for _, d in inbox.copy_to([1, 2], alice["Archive"])] == [1, 2]
    # A move inside one user's quota root changes nothing, so it is allowed.
    assert len(inbox.move_to([3], alice["Archive"])) == 1


def test_copy_to_another_users_mailbox_checks_their_quota(store: MailStore) -> None:
    store.deliver(ALICE, msg("a"))
    bob = store.user("bob")
    bob.quota_message_limit = 0
    with pytest.raises(QuotaExceeded):
        store.user(ALICE)["INBOX"].move_to([1], bob["INBOX"])
    assert len(store.user(ALICE)["INBOX"]) == 1


# -- folders -----------------------------------------------------------------


def test_create_lists_parents_without_making_them(alice: UserMailboxes) -> None:
    """As Dovecot with Maildir++: CREATE a/b/c makes one mailbox; a and a/b are only listed."""
    box = alice.create("Projects/2024/Q1/", "\\Flagged")
    assert box.name == "Projects/2024/Q1" and box.special_use == "\\Flagged"
    assert alice.get("Projects") is None and alice.get("Projects/2024") is None
    assert alice.list("", "Projects*") == ["Projects", "Projects/2024", "Projects/2024/Q1"]
    assert alice.has_children("Projects") and not alice.has_children("Projects/2024/Q1")
    assert alice.create("Projects/2024").name == "Projects/2024"
    with pytest.raises(MailboxExists):
        alice.create("Projects/2024")
    with pytest.raises(MailboxExists):
        alice.create("inbox")
    for bad, why in (
        ("", "Name is empty"),
        ("a//b", "Has adjacent hierarchy separators"),
        ("/a", "Begins with hierarchy separator"),
        ("~a", "Begins with '~'"),
    ):
        with pytest.raises(StoreError, match=why):
            alice.create(bad)
    assert alice.create("50%").name == "50%"  # Dovecot allows LIST wildcards in names
    with pytest.raises(ValueError, match="special_use"):
        alice.create("x", "\\Important")


def test_inbox_children_are_spelled_with_capital_inbox(alice: UserMailboxes) -> None:
    assert alice.create("inbox/Sub").name == "INBOX/Sub"
    assert alice.get("Inbox/Sub") is alice.get("INBOX/Sub")


def test_delete(alice: UserMailboxes) -> None:
    with pytest.raises(StoreError, match="INBOX cannot be deleted"):
        alice.delete("inbox")
    with pytest.raises(NoSuchMailbox):
        alice.delete("Nope")
    alice.create("A")
    alice.create("A/B")
    alice.delete("A")  # as Dovecot with Maildir++: the child stays, A lists as its parent
    assert alice.get("A") is None and alice.list("", "A") == ["A"]
    with pytest.raises(NoSuchMailbox):
        alice.delete("A")
    box = alice["A/B"]
    box.append(msg("x"))
    told: list[bool] = []
    box.watch(lambda: told.append(box.deleted))
    alice.delete("A/B")
    assert told == [True]
    assert box.deleted and alice.get("A/B") is None and len(box) == 0
    with pytest.raises(NoSuchMailbox):
        box.append(msg("y"))
    assert alice.list("", "A/*") == [] and alice.list("", "A") == []


def test_rename_moves_children(alice: UserMailboxes) -> None:
    box = alice.create("Work/Clients/Acme")
    box.append(msg("a"))
    uidvalidity = box.uidvalidity
    alice.rename("Work", "Jobs/Old")
    assert alice.get("Work") is None and alice.get("Work/Clients/Acme") is None
    assert alice["Jobs/Old/Clients/Acme"] is box
    assert box.name == "Jobs/Old/Clients/Acme" and box.uidvalidity == uidvalidity
    assert alice.get("Jobs") is None and alice.has_children("Jobs")
    with pytest.raises(StoreError, match="own child"):
        alice.rename("Jobs", "Jobs/Inner")
    with pytest.raises(MailboxExists):
        alice.rename("Jobs", "Sent")
    with pytest.raises(NoSuchMailbox):
        alice.rename("Work", "Other")
    alice.rename("Jobs", "Tasks")  # only a parent: its children move all the same
    assert alice["Tasks/Old/Clients/Acme"] is box


def test_subscriptions_are_names_apart_from_mailboxes(alice: UserMailboxes) -> None:
    """As Dovecot: RENAME and DELETE leave subscriptions alone; SUBSCRIBE needs a mailbox."""
    alice.create("Work")
    alice.subscribe("Work")
    alice.rename("Work", "Jobs")
    assert alice.is_subscribed("Work") and not alice.is_subscribed("Jobs")
    alice.delete("Jobs")
    assert "Work" in alice.subscriptions()
    with pytest.raises(NoSuchMailbox):
        alice.subscribe("Nope")
    alice.unsubscribe("Nope")  # no error, as in Dovecot
    alice.unsubscribe("Work")
    assert alice.subscriptions() == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]


def test_rename_inbox_moves_messages_and_leaves_it_empty(alice: UserMailboxes) -> None:
    inbox = alice["INBOX"]
    alice.create("INBOX/Child")
    inbox.append(msg("a"), ["\\Seen"])
    inbox.append(msg("b"))
    told: list[int] = []
    inbox.watch(lambda: told.append(len(inbox)))
    alice.rename("inbox", "Old Inbox")
    old = alice["Old Inbox"]
    assert [m.raw for m in old.get_many(old.uids())] == [msg("a"), msg("b")]
    assert old.get(1).flags == {"\\Seen"}  # type: ignore[union-attr]
    assert alice["INBOX"] is inbox and len(inbox) == 0 and not inbox.deleted
    assert inbox.uidnext == 3  # UIDs are not reused after the move
    assert alice.get("INBOX/Child") is not None  # children of INBOX stay
    assert told == [0]
    assert alice.usage()[1] == 2


@pytest.mark.parametrize(
    ("reference", "pattern", "expected"),
    [
        (
            "",
            "*",
            [
                "INBOX",
                "INBOX/Sub",
                "Archive",
                "Drafts",
                "Junk",
                "Sent",
                "Trash",
                "Work",
                "Work/A",
                "Work/A/Deep",
                "Work/B",
            ],
        ),
        ("", "%", ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", "Work"]),
        ("", "Work/%", ["Work/A", "Work/B"]),
        ("", "Work/*", ["Work/A", "Work/A/Deep", "Work/B"]),
        ("", "Work*", ["Work", "Work/A", "Work/A/Deep", "Work/B"]),
        ("", "*/Deep", ["Work/A/Deep"]),
        ("", "%/%", ["INBOX/Sub", "Work/A", "Work/B"]),
        ("Work/", "%", ["Work/A", "Work/B"]),
        ("Work", "/%", ["Work/A", "Work/B"]),
        ("Work/", "/*", ["Work/A", "Work/A/Deep", "Work/B"]),
        ("", "inbox", ["INBOX"]),
        ("", "Inbox/%", ["INBOX/Sub"]),
        ("", "in*", ["INBOX", "INBOX/Sub"]),
        ("", "work", []),  # only INBOX is case-insensitive
        ("", "", []),  # the delimiter query is the session's to answer
        ("", "S%t", ["Sent"]),
    ],
)
def test_list_patterns(
    alice: UserMailboxes, reference: str, pattern: str, expected: list[str]
) -> None:
    alice.create("Work/A/Deep")
    alice.create("Work/B")
    alice.create("INBOX/Sub")
    assert alice.list(reference, pattern) == expected


# -- watchers and waiting ----------------------------------------------------


def test_watchers_are_called_after_changes_from_another_thread(store: MailStore) -> None:
    box = store.user(ALICE)["INBOX"]
    calls: list[str] = []
    lock_free: list[bool] = []

    def on_change() -> None:
        calls.append(threading.current_thread().name)
        # The store lock must be released: another thread can take it at once.
        probe = threading.Thread(target=store.users)
        probe.start()
        probe.join(2)
        lock_free.append(not probe.is_alive())

    unwatch = box.watch(on_change)
    run_in_thread(lambda: store.deliver(ALICE, msg("a")))
    run_in_thread(lambda: box.set_flags([1], ["\\Seen"], "add"))
    run_in_thread(lambda: box.expunge([1], only_deleted=False))
    assert len(calls) == 3 and threading.current_thread().name not in calls
    assert lock_free == [True, True, True]
    unwatch()
    store.deliver(ALICE, msg("b"))
    assert len(calls) == 3


def test_watchers_hear_once_per_change_and_errors_are_recorded(store: MailStore) -> None:
    box = store.user(ALICE)["INBOX"]
    for i in range(3):
        box.append(msg(f"m{i}"))
    calls: list[int] = []
    box.watch(lambda: calls.append(1))

    def broken() -> None:
        raise ZeroDivisionError

    box.watch(broken)
    box.set_flags([1, 2, 3], ["\\Seen"], "add")
    assert calls == [1]
    assert [type(e) for e in store.errors] == [ZeroDivisionError]
    box.set_flags([1], ["\\Seen"], "add")  # no change, no call
    assert calls == [1]


def test_wait_for_appends_wakes_on_delivery(store: MailStore) -> None:
    store.deliver(ALICE, msg("old"))
    waiting = threading.Event()
    box = store.user(ALICE)["INBOX"]
    # The waiter holds the condition while it checks; a watcher tells us it slept.
    deliverer = threading.Thread(target=lambda: (waiting.wait(5), store.deliver(ALICE, msg("new"))))
    deliverer.start()
    original_wait = store._core.cond.wait

    def wait(timeout: float | None = None) -> bool:
        waiting.set()
        return original_wait(timeout)

    store._core.cond.wait = wait  # type: ignore[method-assign]
    got = store.wait_for_appends(ALICE, 2, timeout=5)
    deliverer.join(5)
    assert [m.raw for m in got] == [msg("old"), msg("new")]
    assert len(box) == 2


def test_wait_for_appends_returns_at_once_when_enough(store: MailStore) -> None:
    store.deliver(ALICE, msg("a"))
    assert len(store.wait_for_appends(ALICE, 1, timeout=0)) == 1


def test_wait_for_appends_timeout_says_what_arrived(store: MailStore) -> None:
    store.deliver(ALICE, msg("Invoice 42"))
    with pytest.raises(TimeoutError, match=r"expected 2 message.*1 arrived.*Invoice 42"):
        store.wait_for_appends(ALICE, 2, timeout=0.01)
    with pytest.raises(TimeoutError, match="no such user"):
        store.wait_for_appends("nobody", 1, timeout=0)


def test_reset_drops_everything_and_tells_watchers(store: MailStore) -> None:
    box = store.user(ALICE)["INBOX"]
    store.deliver(ALICE, msg("a"))
    told: list[bool] = []
    box.watch(lambda: told.append(box.deleted))
    first_uidvalidity = box.uidvalidity
    store.reset()
    assert told == [True]
    assert store.users() == []
    fresh = store.user(ALICE)["INBOX"]
    assert fresh is not box and len(fresh) == 0
    assert fresh.uidvalidity == first_uidvalidity  # deterministic base restarts per test


def test_change_uidvalidity_renumbers(alice: UserMailboxes) -> None:
    box = alice["INBOX"]
    for i in range(5):
        box.append(msg(f"m{i}"))
    box.set_flags([2, 4], ["\\Deleted"], "add")
    box.expunge()
    box.set_flags([5], ["\\Seen"], "add")
    old = box.uidvalidity
    told: list[int] = []
    box.watch(lambda: told.append(box.uidvalidity))
    alice.change_uidvalidity("inbox")
    assert box.uidvalidity != old and told == [box.uidvalidity]
    assert list(box.uids()) == [1, 2, 3] and box.uidnext == 4
    assert [m.raw for m in box.get_many([1, 2, 3])] == [msg("m0"), msg("m2"), msg("m4")]
    assert box.get(3).flags == {"\\Seen"}  # type: ignore[union-attr]
    assert box.append(msg("m5")) == 4


# -- synthetic mailboxes -----------------------------------------------------


def test_synthetic_messages_are_deterministic(store: MailStore) -> None:
    box = store.add_synthetic(ALICE, "Big", 1000, seed=7, size=2048)
    again = MailStore().add_synthetic("other", "Big", 1000, seed=7, size=2048)
    other_seed = MailStore().add_synthetic(ALICE, "Big", 1000, seed=8, size=2048)
    first, same, different = box.get(500), again.get(500), other_seed.get(500)
    assert first is not None and same is not None and different is not None
    assert first.raw == first.raw and len(first.raw) == first.size == 2048
    assert first.raw.split(b"\r\nTo:")[1] == same.raw.split(b"\r\nTo:")[1].replace(
        b"other@example.test", ALICE.encode()
    )
    assert first.raw != different.raw
    assert first.internaldate == same.internaldate
    assert b"Subject: Synthetic message 500 (seed 7)\r\n" in first.raw
    assert b"\n" not in first.raw.replace(b"\r\n", b"")
    assert box.get(1001) is None and box.get(0) is None
    assert store.user(ALICE).usage() == (1000 * 2048, 1000)


def test_synthetic_mailbox_behaves_like_a_real_one(store: MailStore) -> None:
    box = store.add_synthetic(ALICE, "INBOX", 100, size=1024)
    assert store.deliver(ALICE, msg("real")) == 101
    changed, _ = box.set_flags([10, 101], ["\\Seen"], "add")
    assert [m.uid for m in changed] == [10, 101]
    assert box.get(10).flags == {"\\Seen"}  # type: ignore[union-attr]
    message = box.get(11)
    assert message is not None and message.cache == {}
    message.cache["envelope"] = b"(cached)"
    assert box.get(11) is message  # recently served messages keep their cache
    assert box.status().unseen == 99
    box.set_flags([10, 20, 30], ["\\Deleted"], "add")
    assert box.expunge() == [10, 20, 30]
    assert box.get(20) is None and len(box) == 98
    assert [u for u, _ in box.copy_to([21, 101], store.user(ALICE)["Archive"])] == [21, 101]
    copied = store.user(ALICE)["Archive"].get(1)
    assert copied is not None and copied.raw == box.get(21).raw  # type: ignore[union-attr]
    synthetic_41 = box.get(41).raw  # type: ignore[union-attr]
    store.user(ALICE).change_uidvalidity("INBOX")
    assert list(box.uids()) == list(range(1, 99))
    assert box.get(38).raw == synthetic_41  # type: ignore[union-attr]
    assert box.get(98).raw == msg("real")  # type: ignore[union-attr]
    assert box.get(9).flags == frozenset()  # type: ignore[union-attr]
    assert len(box.changed_since(0)) == 98


def test_synthetic_checks_its_arguments(store: MailStore) -> None:
    with pytest.raises(ValueError, match="size=100"):
        store.add_synthetic(ALICE, "Big", 10, size=100)
    with pytest.raises(ValueError, match="count=0"):
        store.add_synthetic(ALICE, "Big", 0)
    store.add_synthetic(ALICE, "Big", 10)
    with pytest.raises(StoreError, match="already has synthetic"):
        store.add_synthetic(ALICE, "Big", 10)


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def rss() -> Iterator[Callable[[], int]]:
    gc.collect()
    yield _rss_bytes


def test_a_million_synthetic_messages_stay_small(rss: Callable[[], int]) -> None:
    baseline = rss()
    peak = baseline
    store = MailStore()
    box = store.add_synthetic(ALICE, "INBOX", 1_000_000)
    uids = box.uids()
    assert len(uids) == 1_000_000 and box.uidnext == 1_000_001
    # Serve all of it as FETCH 1:* (UID FLAGS) would, in chunks, watching the RSS.
    for start in range(0, len(uids), 50_000):
        chunk = box.get_many(uids[start : start + 50_000])
        assert chunk[-1].uid == uids[min(start + 50_000, len(uids)) - 1]
        peak = max(peak, rss())
    for uid in range(1, 1_000_001, 1000):
        message = box.get(uid)
        assert message is not None and len(message.raw) == 4096
    box.set_flags(range(1, 1_000_001, 100), ["\\Seen"], "add")
    assert box.status().unseen == 990_000
    peak = max(peak, rss())
    assert peak - baseline < 150 * 2**20, f"RSS grew by {(peak - baseline) >> 20} MiB"


def test_concurrent_appends_get_unique_rising_uids(store: MailStore) -> None:
    box = store.user(ALICE)["INBOX"]
    got: dict[str, list[int]] = {"a": [], "b": []}
    start = threading.Barrier(2)

    def writer(name: str) -> None:
        start.wait(5)
        got[name].extend(box.append(msg(f"{name}{i}")) for i in range(300))

    threads = [threading.Thread(target=writer, args=(n,)) for n in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert got["a"] == sorted(got["a"]) and got["b"] == sorted(got["b"])
    assert sorted(got["a"] + got["b"]) == list(range(1, 601)) == list(box.uids())


def test_deep_mailbox_names_cost_memory_linear_in_their_length(alice: UserMailboxes) -> None:
    """100 names of 127 levels (4 KiB each): their 12,700 prefixes would be 25 MB as strings."""
    import tracemalloc

    tracemalloc.start()
    try:
        for i in range(100):
            alice.create("/".join([f"{i:03d}" + "x" * 28] * 127))
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used < 10_000_000
    assert alice.has_children("000" + "x" * 28)
    assert len(alice.list("", "*")) == 6 + 100 * 127


def test_glob_is_linear_on_patterns_that_make_regexes_backtrack() -> None:
    from mailharness.servers.imap.store import Glob

    glob = Glob("*a" * 30 + "*b", "/")
    assert not glob.matches("a" * 4000)  # a regex would take longer than the universe has
    assert glob.matches("a" * 40 + "b")
    assert Glob("%/x", "/").matches("a/x") and not Glob("%/x", "/").matches("a/b/x")
    assert Glob("a%*%b", "/").matches("a/c/b")  # a run of wildcards with a * is a *


def _regex_for(pattern: str) -> str:
    """The obvious (backtracking) reading of a LIST pattern, as a reference."""
    import re

    return "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern)


@given(
    pattern=st.text(alphabet="ab/*%", max_size=8),
    name=st.text(alphabet="ab/", min_size=1, max_size=10),
)
def test_glob_agrees_with_the_regex_reading(pattern: str, name: str) -> None:
    import re

    from mailharness.servers.imap.store import Glob

    glob = Glob(pattern, "/")
    expected = re.fullmatch(_regex_for(pattern), name, re.DOTALL) is not None
    assert glob.matches(name) is expected
    levels = [len(p) for p in _prefixes(name) if re.fullmatch(_regex_for(pattern), p)]
    assert glob.matching_levels(name) == levels


def _prefixes(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=1)))
def test_mutf7_round_trips_any_name(name: str) -> None:
    from mailharness.servers.imap.mutf7 import decode, encode

    wire = encode(name)
    assert wire.isascii() and all(" " <= c <= "~" for c in wire)
    # Control characters are refused inside names, but they still travel in base64.
    assert decode(wire) == name


@given(st.text(alphabet=st.characters(max_codepoint=0x7F)))
def test_mutf7_decode_refuses_cleanly(text: str) -> None:
    from mailharness.servers.imap.mutf7 import decode, encode

    try:
        name = decode(text)
    except ValueError:
        return
    # Dovecot ignores a base64 run's spare low bits ("&AOR-" is "&AOQ-"), so a
    # name may have two spellings; the canonical one reads back the same.
    assert decode(encode(name)) == name
