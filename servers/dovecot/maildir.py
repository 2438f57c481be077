"""Reading a Dovecot maildir from outside, and waiting for mail to arrive in it.

Dovecot's APPEND, COPY and MOVE write a file to `tmp/` and rename it into
`new/` or `cur/`; so does our relay's local delivery. Waiting for "N messages
in INBOX" is therefore waiting for renames into two directories, which Linux
reports through inotify: `wait_for_messages` blocks on an inotify descriptor
(a tiny ctypes wrapper; the standard library has none) and recounts only when
the kernel says a directory changed. No sleep loop, no IMAP session (an IDLE
connection would count against `mail_max_userip_connections` and show up in
the user's own session list), and it works for any user without a password.

    for message in wait_for_messages(folder, 2, timeout=5):
        message.raw
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

# <sys/inotify.h>: a file was renamed into, or created in, the watched directory.
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000
_READ_SIZE = 64 * 1024
_FLAG_NAMES = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}


@dataclass(frozen=True, slots=True)
class MaildirMessage:
    """One message file. `uid` is Dovecot's (from dovecot-uidlist) once Dovecot has seen
    the file, else None."""

    path: Path
    uid: int | None
    flags: frozenset[str]
    size: int
    received: datetime

    @property
    def raw(self) -> bytes:
        return self.path.read_bytes()


def message_files(folder: Path) -> list[Path]:
    """The message files of one maildir folder (new/ and cur/), oldest delivery first."""
    files: list[Path] = []
    for sub in ("new", "cur"):
        try:
            files.extend(entry for entry in (folder / sub).iterdir() if entry.name[0] != ".")
        except FileNotFoundError:
            continue
    files.sort(key=_delivery_key)
    return files


def _delivery_key(path: Path) -> tuple[int, int, str]:
    """Maildir names start `<seconds>.M<micros>P<pid>...`: sort by that, then by name."""
    name = path.name
    seconds, _, rest = name.partition(".")
    micros = 0
    if rest.startswith("M"):
        digits = rest[1:].split("P", 1)[0]
        micros = int(digits) if digits.isdigit() else 0
    return (int(seconds) if seconds.isdigit() else 0, micros, name)


def _base(name: str) -> str:
    return name.split(":", 1)[0]


def _uidlist(folder: Path) -> dict[str, int]:
    """Dovecot's `dovecot-uidlist`: `<uid> [ext...] :<base name>` lines after a header."""
    try:
        lines = (folder / "dovecot-uidlist").read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return {}
    uids = {}
    for line in lines[1:]:
        head, sep, base = line.partition(" :")
        uid = head.split(" ", 1)[0]
        if sep and uid.isdigit():
            uids[base] = int(uid)
    return uids


def predict_uid(folder: Path, path: Path) -> int:
    """The UID Dovecot gives `path` at its next sync of `folder` (or has given it).

    Dovecot assigns the next UIDs (`N<next>` in dovecot-uidlist's header) to
    files it has not seen yet, in delivery (file name) order.
    """
    uids = _uidlist(folder)
    known = uids.get(_base(path.name))
    if known is not None:
        return known
    next_uid = 1
    try:
        header = (folder / "dovecot-uidlist").read_text(errors="replace").split("\n", 1)[0]
    except FileNotFoundError:
        header = ""
    for field in header.split()[1:]:
        if field.startswith("N") and field[1:].isdigit():
            next_uid = int(field[1:])
    # The header's N can lag behind the records (Dovecot rewrites it lazily).
    next_uid = max([next_uid, *(uid + 1 for uid in uids.values())])
    unseen = [p for p in message_files(folder) if _base(p.name) not in uids]
    names = [p.name for p in unseen]
    position = names.index(path.name) if path.name in names else len(names)
    return next_uid + position


def _size(path: Path) -> int:
    """RFC822.SIZE from the name's `W=` (or `S=`) field, else the file's size."""
    for field in _base(path.name).split(",")[1:]:
        if field.startswith("W=") and field[2:].isdigit():
            return int(field[2:])
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_messages(folder: Path) -> list[MaildirMessage]:
    """Every message in a folder, oldest first."""
    uids = _uidlist(folder)
    out = []
    for path in message_files(folder):
        info = path.name.split(":2,", 1)[1] if ":2," in path.name else ""
        flags = frozenset(_FLAG_NAMES[c] for c in info if c in _FLAG_NAMES)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue  # moved between new/ and cur/ while we looked: it is listed again later
        out.append(
            MaildirMessage(
                path=path,
                uid=uids.get(_base(path.name)),
                flags=flags,
                size=_size(path),
                received=datetime.fromtimestamp(mtime, UTC),
            )
        )
    return out


def usage(maildir: Path) -> tuple[int, int]:
    """(bytes, messages) over every folder of a Maildir++ tree, as quota counts them."""
    size = count = 0
    folders = [maildir]
    try:
        folders += [p for p in maildir.iterdir() if p.name.startswith(".") and p.is_dir()]
    except FileNotFoundError:
        return (0, 0)
    for folder in folders:
        for path in message_files(folder):
            size += _size(path)
            count += 1
    return size, count


class Inotify:
    """The three inotify calls we need, through ctypes; a context manager owning the fd."""

    def __init__(self) -> None:
        libc_name = ctypes.util.find_library("c") or "libc.so.6"
        self._libc = ctypes.CDLL(libc_name, use_errno=True)
        fd = self._libc.inotify_init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self.fd: int = fd

    def watch(self, directory: Path, mask: int = IN_MOVED_TO | IN_CREATE) -> int:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), ctypes.c_uint32(mask))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_add_watch({directory}): {os.strerror(code)}")
        return int(wd)

    def wait(self, timeout: float) -> bool:
        """Block until an event arrives (True) or `timeout` passes (False); drains events."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        if not poller.poll(max(0, int(timeout * 1000))):
            return False
        while True:
            try:
                if not os.read(self.fd, _READ_SIZE):
                    break
            except BlockingIOError:
                break
            except OSError as error:  # pragma: no cover - EINTR is retried by Python
                if error.errno != errno.EINTR:
                    raise
        return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for_messages(folder: Path, count: int, timeout: float) -> list[MaildirMessage]:
    """Block until `folder` holds at least `count` messages; return them all, oldest first.

    Watches new/ and cur/ before the first count, so a delivery between the
    count and the wait still wakes us. TimeoutError says how many arrived.
    """
    deadline = time.monotonic() + timeout
    with Inotify() as notify:
        for sub in ("new", "cur"):
            notify.watch(folder / sub)  # the caller made the maildir (owned by the mail user)
        while True:
            messages = read_messages(folder)
            if len(messages) >= count:
                return messages
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"expected {count} message(s) in {folder} within {timeout}s; "
                    f"{len(messages)} arrived"
                )
            notify.wait(remaining)
