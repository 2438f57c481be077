"""Every user's mail for one running server, and what tests call to seed and wait."""

from __future__ import annotations

import time

from mailharness.servers.imap.store.errors import NoSuchMailbox
from mailharness.servers.imap.store.folders import INBOX, UserMailboxes
from mailharness.servers.imap.store.mailbox import Core, Mailbox
from mailharness.servers.imap.store.messages import RawMessage, StoredMessage, Synthetic

MAX_SYNTHETIC_COUNT = 10_000_000


class MailStore:
    """All users' mail for one running server.

    `uidvalidity_base` makes UIDVALIDITY values deterministic (base, base+1, ...
    in creation order, restarting at each `reset()`); by default they are the
    creation time, like Dovecot's.
    """

    def __init__(self, uidvalidity_base: int | None = None) -> None:
        self._core = Core(uidvalidity_base)
        self._users: dict[str, UserMailboxes] = {}

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised by watcher callbacks, for the fixture to report at teardown."""
        with self._core.lock:
            return list(self._core.errors)

    def user(self, login: str) -> UserMailboxes:
        """The user's folders, made on first use with the default special-use folders."""
        with self._core.lock:
            mailboxes = self._users.get(login)
            if mailboxes is None:
                mailboxes = self._users[login] = UserMailboxes(self._core, login)
            return mailboxes

    def users(self) -> list[str]:
        with self._core.lock:
            return sorted(self._users)

    def deliver(self, login: str, raw: RawMessage, mailbox: str = INBOX) -> int:
        """SMTP delivery and test seeding; quota applies (raises QuotaExceeded)."""
        with self._core.txn():
            box = self.user(login).get(mailbox)
            if box is None:
                raise NoSuchMailbox(mailbox)
            return box.append(raw)

    def pristine(self) -> bool:
        """Whether `reset()` would change nothing: no user's folders were ever made."""
        with self._core.lock:
            return not self._users and not self._core.errors

    def reset(self) -> None:
        """Drop every user and message; sessions watching old mailboxes see them deleted."""
        with self._core.txn():
            for mailboxes in self._users.values():
                for box in mailboxes._boxes.values():
                    box._drop()
                mailboxes._boxes.clear()
            self._users.clear()
            self._core.errors.clear()
            base = self._core.uidvalidity_base
            if base is not None:
                self._core.last_uidvalidity = base - 1
            self._core.cond.notify_all()

    def wait_for_appends(
        self, login: str, count: int, timeout: float, mailbox: str = INBOX
    ) -> list[StoredMessage]:
        """Block until `mailbox` holds at least `count` messages; return them all.

        Woken by each append, so it returns as soon as the mail is there.
        """
        deadline = time.monotonic() + timeout
        with self._core.cond:
            while True:
                user = self._users.get(login)
                box = user.get(mailbox) if user is not None else None
                have = len(box) if box is not None else 0
                if box is not None and have >= count:
                    return box.get_many(box.uids())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(self._timeout_message(login, mailbox, count, timeout, box))
                self._core.cond.wait(remaining)

    def add_synthetic(
        self, login: str, mailbox: str, count: int, *, seed: int = 0, size: int = 4096
    ) -> Mailbox:
        """Add `count` deterministic messages rendered on demand from (seed, position).

        Costs about 4 bytes per message until a message's flags change, so a
        mailbox of a million messages is cheap. The mailbox is created if missing.
        """
        if not 0 < count <= MAX_SYNTHETIC_COUNT:
            raise ValueError(f"count={count!r}: expected 1..{MAX_SYNTHETIC_COUNT}")
        to = login if "@" in login else f"{login}@example.test"
        synth = Synthetic(seed, size, to)
        with self._core.txn():
            mailboxes = self.user(login)
            box = mailboxes.get(mailbox)
            if box is None:
                box = mailboxes.create(mailbox)
            box._require_live()
            box._add_synthetic(synth, count)
            return box

    def _timeout_message(
        self, login: str, mailbox: str, count: int, timeout: float, box: Mailbox | None
    ) -> str:
        if box is None:
            where = "no such user" if login not in self._users else "no such mailbox"
            return (
                f"expected {count} message(s) in {login!r} {mailbox!r} within {timeout}s; {where}"
            )
        subjects = [_subject(m) for m in box.get_many(box.uids()[-10:])]
        return (
            f"expected {count} message(s) in {login!r} {mailbox!r} within {timeout}s; "
            f"{len(box)} arrived" + (f", last subjects: {subjects}" if subjects else "")
        )


def _subject(msg: StoredMessage) -> str:
    from email.parser import BytesHeaderParser  # only when a wait fails: not at start-up

    header = BytesHeaderParser().parsebytes(msg.raw)
    return str(header.get("Subject", ""))
