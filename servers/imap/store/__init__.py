"""In-memory mail store of the fake IMAP server.

Two threads use it: the server's event-loop thread (IMAP sessions, SMTP
delivery) and the test's thread (seeding and reading mail). So every public
method takes one store-wide `threading.RLock`, and watcher callbacks run after
that lock is released, in the thread that made the change, so a callback may
call back into the store without deadlocking.

Messages are immutable except for their flags (and their UID when a test
churns UIDVALIDITY). Hold a `StoredMessage` for one command at most; ask the
mailbox again for the next.

    >>> store = MailStore(uidvalidity_base=1000)
    >>> uid = store.deliver("alice@example.test", "Subject: hi\\n\\nbody\\n")
    >>> store.user("alice@example.test").get("inbox").get(uid).raw
    b'Subject: hi\\r\\n\\r\\nbody\\r\\n'
"""

from mailharness.servers.imap.store.errors import (
    InvalidName,
    MailboxExists,
    NoSuchMailbox,
    QuotaExceeded,
    StoreError,
    TooBig,
)
from mailharness.servers.imap.store.folders import (
    DEFAULT_MAILBOXES,
    DELIMITER,
    INBOX,
    SPECIAL_USES,
    UserMailboxes,
    check_name,
    list_matcher,
    list_order,
)
from mailharness.servers.imap.store.mailbox import Mailbox, MailboxStatus
from mailharness.servers.imap.store.mailstore import MailStore
from mailharness.servers.imap.store.messages import (
    MAX_UID,
    RawMessage,
    StoredMessage,
    to_message_bytes,
)
from mailharness.servers.imap.store.tree import Glob, Tree

__all__ = [
    "DEFAULT_MAILBOXES",
    "DELIMITER",
    "INBOX",
    "MAX_UID",
    "SPECIAL_USES",
    "Glob",
    "InvalidName",
    "MailStore",
    "Mailbox",
    "MailboxExists",
    "MailboxStatus",
    "NoSuchMailbox",
    "QuotaExceeded",
    "RawMessage",
    "StoreError",
    "StoredMessage",
    "TooBig",
    "Tree",
    "UserMailboxes",
    "check_name",
    "list_matcher",
    "list_order",
    "to_message_bytes",
]
