"""Why the store refused: each error's message is fit for the IMAP NO reply."""

from __future__ import annotations

from typing import Literal

from mailharness.servers.errors import MailharnessError


class StoreError(MailharnessError):
    """A store operation was refused; the message is fit for an IMAP NO reply."""


class MailboxExists(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"mailbox already exists: {name!r}")
        self.name = name


class InvalidName(StoreError):
    """A mailbox name Dovecot refuses; the message is Dovecot's text (sent with [CANNOT])."""


class NoSuchMailbox(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(f"mailbox does not exist: {name!r}")
        self.name = name


class QuotaExceeded(StoreError):
    """Over the user's quota; the session answers NO [OVERQUOTA], SMTP answers 552."""

    def __init__(
        self, kind: Literal["storage", "messages"], limit: int, used: int, requested: int
    ) -> None:
        unit = "bytes" if kind == "storage" else "messages"
        super().__init__(
            f"quota exceeded ({kind}): {used} + {requested} {unit} would pass the limit of {limit}"
        )
        self.kind: Literal["storage", "messages"] = kind
        self.limit = limit
        self.used = used
        self.requested = requested


class TooBig(StoreError):
    """Over APPENDLIMIT (RFC 7889); the session answers NO [TOOBIG]."""

    def __init__(self, limit: int, size: int) -> None:
        super().__init__(f"message of {size} bytes is over the APPENDLIMIT of {limit} bytes")
        self.limit = limit
        self.size = size
