"""What `DovecotProcess` and `DovecotContainer` share: one Dovecot instance's state.

Both runners render the same config into a private temp dir (the container
bind-mounts it at the same path), so everything that works on that dir from
the host is the same code for both: accounts (passwd-files), quotas, maildirs
and direct delivery, the listeners' endpoints, and ending Dovecot's own
children (auth, sessions) through /proc. A runner supplies only how Dovecot
is started and stopped, where its master process is (`_master_pid`), how
`doveadm` runs and where its log is.

The maildir helpers (`maildir_folder`, `maildir_info`, `virtual_size`) are
public here for any code that writes maildirs.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from mailharness.servers.accounts import User
from mailharness.servers.dovecot import maildir
from mailharness.servers.dovecot.config import (
    DovecotConfig,
    Identity,
    InstancePaths,
    Quota,
    SSLMode,
    check_passwd_fields,
    openssl_conf,
    passwd_line,
)
from mailharness.servers.errors import ConfigError, MailharnessError, ServerStartError
from mailharness.servers.listeners import Endpoint, Security

INBOX = "INBOX"
# Listener names in dovecot.conf, in the order they are bound and reported.
LISTENERS = ("imap", "imaps", "submission", "submissions")
# Session processes `close_sessions` ends (logins in progress and logged-in sessions).
SESSION_SERVICES = frozenset({"imap", "imap-login", "submission", "submission-login"})
# How long a signalled Dovecot child may take to exit before we stop waiting for it.
CHILD_EXIT_TIMEOUT = 2.0
_MAILDIR_FLAGS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
_MAILDIR_FLAGS_BY_LOWER = {name.lower(): letter for name, letter in _MAILDIR_FLAGS.items()}


class DovecotStartError(ServerStartError):
    """Dovecot did not greet; the message carries the end of its log."""


class DovecotError(MailharnessError):
    """A `doveadm` command failed; the message has its command line and stderr."""


def maildir_folder(login_maildir: Path, mailbox: str) -> Path:
    """The Maildir++ directory of a mailbox: INBOX is the root, others are `.Name`."""
    if mailbox.upper() == INBOX:
        return login_maildir
    if not mailbox or mailbox.startswith(".") or "/" in mailbox:
        raise ConfigError(f"mailbox={mailbox!r}: expected INBOX or a name like 'Archive.2024'")
    return login_maildir / f".{mailbox}"


def maildir_info(flags: Iterable[str]) -> str:
    """The `:2,<letters>` suffix of a maildir file name for these IMAP flags."""
    letters = []
    for flag in flags:
        letter = _MAILDIR_FLAGS_BY_LOWER.get(flag.lower())
        if letter is None:
            raise ConfigError(f"flag={flag!r}: expected one of {', '.join(sorted(_MAILDIR_FLAGS))}")
        letters.append(letter)
    return ":2," + "".join(sorted(set(letters)))


def virtual_size(raw: bytes) -> int:
    """RFC822.SIZE as Dovecot computes it: every bare LF counts as CRLF."""
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def make_endpoints(config: DovecotConfig, ports: Mapping[str, int]) -> tuple[Endpoint, ...]:
    """Plain ports offer STARTTLS unless ssl = no: Dovecot has no plain-only listener."""
    plain = Security.NONE if config.ssl is SSLMode.NO else Security.STARTTLS
    kinds = {
        "imap": ("imap", plain),
        "imaps": ("imap", Security.IMPLICIT),
        "submission": ("smtp", plain),
        "submissions": ("smtp", Security.IMPLICIT),
    }
    return tuple(
        Endpoint(kinds[name][0], config.host, ports[name], kinds[name][1])
        for name in LISTENERS
        if name in ports
    )


def read_greeting(
    endpoint: Endpoint,
    deadline: float,
    *,
    poll: float,
    running: Callable[[], bool],
    failure: Callable[[str], str],
) -> bytes:
    """The first line Dovecot sends on `endpoint` (TLS first when implicit).

    Raises DovecotStartError when `running()` turns false or the deadline passes,
    and OSError (ConnectionResetError when the peer hung up) when the probe dies.
    """
    timeout = max(0.1, deadline - time.monotonic())
    raw = socket.create_connection(endpoint.address, timeout=timeout)
    sock: socket.socket = raw
    buffer = b""
    try:
        if endpoint.security is Security.IMPLICIT:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(raw, do_handshake_on_connect=False)
        sock.settimeout(poll)
        handshaken = endpoint.security is not Security.IMPLICIT
        while b"\r\n" not in buffer:
            if time.monotonic() > deadline:
                raise DovecotStartError(failure(f"no greeting within {timeout:.0f}s"))
            try:
                if not handshaken:
                    assert isinstance(sock, ssl.SSLSocket)
                    sock.do_handshake()
                    handshaken = True
                    continue
                chunk = sock.recv(4096)
            except (TimeoutError, ssl.SSLWantReadError):
                if not running():
                    raise DovecotStartError(failure("exited before greeting")) from None
                continue
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as exc:
                raise ConnectionResetError(f"closed the probe connection: {exc}") from exc
            if not chunk:
                raise ConnectionResetError("closed the probe connection")
            buffer += chunk
    finally:
        sock.close()
    return buffer.split(b"\r\n", 1)[0]


class DovecotInstance:
    """The state and API both runners share; see the module docstring.

    Subclasses set `paths` and `_identity` in `start()` and implement the
    lifecycle, `_master_pid`, `doveadm` and `log_text`.
    """

    # The runner's name in messages ("DovecotProcess", "DovecotContainer").
    kind = "Dovecot"

    def __init__(self, config: DovecotConfig | None) -> None:
        self.config = config or DovecotConfig(ssl=SSLMode.NO, imaps=False)
        self.paths: InstancePaths | None = None
        self.endpoints: tuple[Endpoint, ...] = ()
        self.greeting = b""
        # Seconds from spawning Dovecot to reading its greeting.
        self.startup_seconds = 0.0
        self._identity: Identity | None = None
        self._seq = itertools.count(1)
        self._users: dict[str, User] = {}
        self._quotas: dict[str, Quota] = {}
        # passwd-file mtimes we set: each write gets a new one (see _write_passwd).
        self._mtimes = itertools.count(int(time.time()) + 1)

    # --- what a runner provides ---------------------------------------------------
    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def _started(self) -> bool:
        """Whether start() has run (and stop() not yet)."""
        raise NotImplementedError

    def _master_pid(self) -> int | None:
        """Host pid of Dovecot's master process, if we may signal its children."""
        raise NotImplementedError

    def doveadm(
        self, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def log_text(self, tail: int | None = None) -> str:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- the instance's directory ---------------------------------------------------
    def _require_started(self) -> tuple[InstancePaths, Identity]:
        if not self._started() or self.paths is None or self._identity is None:
            raise ServerStartError(f"{self.kind} is not running: call start() first")
        return self.paths, self._identity

    def _prepare_tree(self, paths: InstancePaths) -> None:
        paths.state_dir.mkdir(mode=0o755)
        paths.mail.mkdir(mode=0o711)
        paths.users.mkdir(mode=0o711)
        for user in self.config.users:
            self._write_passwd(user)
            self._users[user.login.lower()] = user
            self._make_maildir(user.login)

    def _write_openssl_conf(self, config: DovecotConfig) -> None:
        """The TLS version cap, if any: the config imports OPENSSL_CONF pointing here."""
        assert self.paths is not None
        text = openssl_conf(config)
        if text is not None:
            self.paths.openssl_conf.write_text(text)
            os.chmod(self.paths.openssl_conf, 0o644)

    def _secure_passwd(self, path: Path) -> None:
        """Who may read a passwd-file: Dovecot's auth process, not every local user."""
        os.chmod(path, 0o644)

    def _write_passwd(self, user: User) -> None:
        assert self.paths is not None and self._identity is not None
        path = self.paths.passwd(user.login)
        tmp = path.with_name(path.name + ".tmp")
        quota = self._quotas.get(user.login.lower())
        tmp.write_text(passwd_line(user, self._identity, self.paths, quota))
        self._secure_passwd(tmp)
        # Dovecot re-reads a passwd-file when its mtime (whole seconds) or size changed:
        # a new mtime on every write, so a same-size change within a second is seen too.
        stamp = next(self._mtimes)
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, path)  # never a half-written file for a login that is in progress

    def _make_maildir(self, login: str, mailbox: str = INBOX) -> Path:
        assert self.paths is not None and self._identity is not None
        uid, gid = self._identity.mail_uid, self._identity.mail_gid
        chown = os.geteuid() == 0
        home = self.paths.home(login)
        root = self.paths.maildir(login)
        folder = maildir_folder(root, mailbox)
        for directory in (home, root, folder, folder / "cur", folder / "new", folder / "tmp"):
            if not directory.exists():
                directory.mkdir(mode=0o700)
                if chown:
                    os.chown(directory, uid, gid)
        if folder != root and not (folder / "maildirfolder").exists():
            marker = folder / "maildirfolder"
            marker.touch()
            if chown:
                os.chown(marker, uid, gid)
        return folder

    # --- what tests use -------------------------------------------------------
    def endpoint(self, security: Security | str, protocol: str = "imap") -> Endpoint:
        """The listener with this security: `endpoint("implicit").port`,
        `endpoint("starttls", "smtp")` for submission."""
        wanted = Security.parse(security)
        for endpoint in self.endpoints:
            if endpoint.security is wanted and endpoint.protocol == protocol:
                return endpoint
        available = [e.security.value for e in self.endpoints if e.protocol == protocol] or ["none"]
        raise ConfigError(
            f"{protocol} security={wanted.value!r}: this Dovecot has no such listener; "
            f"it has: {', '.join(available)}"
        )

    @property
    def users(self) -> list[User]:
        return list(self._users.values())

    def add_user(self, user: User) -> User:
        """Add an account while running; it can log in at once."""
        self._require_started()
        if user.login.lower() in self._users:
            raise ConfigError(f"user login={user.login!r}: already exists")
        return self.set_user(user)

    def set_user(self, user: User, *, flush: bool = True) -> User:
        """Add or replace an account while running; the change holds for the next login.

        Dovecot's auth process checks a passwd-file at most once per second, so a
        change made within a second of a lookup would go unseen: we also end the
        auth process (Dovecot starts a fresh one for the next login, ~1 ms).
        """
        self._require_started()
        check_passwd_fields(user)
        self._make_maildir(user.login)
        self._write_passwd(user)
        self._users[user.login.lower()] = user
        if flush:
            self.flush_auth()
        return user

    def remove_user(self, login: str, *, flush: bool = True) -> None:
        """Remove an account (its mail stays until `wipe_mail`)."""
        paths, _ = self._require_started()
        self._users.pop(login.lower(), None)
        self._quotas.pop(login.lower(), None)
        with contextlib.suppress(FileNotFoundError):
            paths.passwd(login).unlink()
        if flush:
            self.flush_auth()

    def set_quota(
        self, login: str, storage_bytes: int | None = None, messages: int | None = None
    ) -> None:
        """A per-user quota rule (needs `DovecotConfig(quota=True)`); None lifts a limit."""
        self._require_started()
        if not (self.config.quota or self.config.quota_storage or self.config.quota_messages):
            raise ConfigError("set_quota needs DovecotConfig(quota=True): the plugin is not loaded")
        user = self._require_user(login)
        self._quotas[user.login.lower()] = Quota(storage_bytes=storage_bytes, messages=messages)
        self._write_passwd(user)
        self.flush_auth()

    def quota(self, login: str) -> Quota | None:
        user = self._require_user(login)
        return self._quotas.get(user.login.lower())

    def usage(self, login: str) -> tuple[int, int]:
        """(bytes, messages) in every folder of the user's maildir, as quota counts them."""
        paths, _ = self._require_started()
        user = self._require_user(login)
        return maildir.usage(paths.maildir(user.login))

    def folder(self, login: str, mailbox: str = INBOX) -> Path:
        """The maildir folder of a mailbox, made (owned by the mail user) if missing."""
        self._require_started()
        return self._make_maildir(self._require_user(login).login, mailbox)

    def wipe_mail(self) -> None:
        """Every user's mail and Dovecot's indexes gone: fresh, empty maildirs.

        Close sessions first (`close_sessions`): an imap process still running
        would keep the old mailbox state in memory.
        """
        paths, _ = self._require_started()
        for entry in paths.mail.iterdir():
            shutil.rmtree(entry, ignore_errors=True)
        for user in self._users.values():
            self._make_maildir(user.login)

    def reset_users(self, users: Iterable[User]) -> None:
        """Exactly these accounts, no quotas: only changed passwd-files are rewritten."""
        paths, _ = self._require_started()
        wanted: dict[str, User] = {}
        for user in users:
            check_passwd_fields(user)
            if user.login.lower() in wanted:
                raise ConfigError(f"user login={user.login!r}: listed twice")
            wanted[user.login.lower()] = user
        changed = bool(self._quotas)
        for key in list(self._users):
            if key not in wanted:
                self._users.pop(key)
                with contextlib.suppress(FileNotFoundError):
                    paths.passwd(key).unlink()
                changed = True
        had_quota = set(self._quotas)
        self._quotas.clear()
        for key, user in wanted.items():
            if self._users.get(key) != user or key in had_quota:
                self._make_maildir(user.login)
                self._write_passwd(user)
                self._users[key] = user
                changed = True
        if changed:
            self.flush_auth()

    # --- Dovecot's own processes ------------------------------------------------------
    def service_pids(self, services: Iterable[str]) -> list[int]:
        """Host pids of Dovecot's children running these services ("auth", "imap"...)."""
        master = self._master_pid()
        if master is None:
            return []
        wanted = set(services)
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except OSError:
            return []
        found = []
        for child in children:
            try:
                title = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0", 1)[0]
            except OSError:
                continue
            # Titles are "<instance>/<service>" plus, for some, " [details]".
            service = title.decode(errors="replace").split(" ", 1)[0].rsplit("/", 1)[-1]
            if service in wanted:
                found.append(int(child))
        return found

    def _end_children(self, services: Iterable[str]) -> int:
        """SIGTERM these children and wait (on pidfds, no polling) until they are gone."""
        pids = self.service_pids(services)
        fds = []
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                os.close(fd)
                continue
            fds.append(fd)
        try:
            deadline = time.monotonic() + CHILD_EXIT_TIMEOUT
            for fd in fds:
                remaining = max(0.0, deadline - time.monotonic())
                select.select([fd], [], [], remaining)
        finally:
            for fd in fds:
                os.close(fd)
        return len(pids)

    def set_passdb_failing(self, failing: bool) -> None:
        """Make every passdb lookup fail, as when Dovecot's LDAP or SQL is down: logins get
        Dovecot's own "Temporary authentication failure". Each passwd-file becomes a
        symlink to itself, which stat() refuses (ELOOP: an internal passdb error, where a
        missing file would mean "no such user"); False writes them back."""
        assert self.paths is not None
        for user in self._users.values():
            if failing:
                path = self.paths.passwd(user.login)
                loop = path.with_name(path.name + ".loop")
                with contextlib.suppress(FileNotFoundError):
                    loop.unlink()
                os.symlink(path.name, loop)
                os.replace(loop, path)
            else:
                self._write_passwd(user)
        self.flush_auth()

    def flush_auth(self) -> None:
        """End Dovecot's auth process: the next login starts a fresh one that reads every
        passwd-file anew (the running one checks each at most once per second)."""
        self._end_children(("auth",))

    def close_sessions(self) -> int:
        """End every IMAP and submission session (and login in progress); returns how many."""
        return self._end_children(SESSION_SERVICES)

    # --- mail -------------------------------------------------------------------------
    def _require_user(self, login: str) -> User:
        user = self._users.get(login.lower()) or self._by_address(login)
        if user is None:
            known = ", ".join(sorted(u.login for u in self._users.values()))
            raise ConfigError(f"login={login!r}: no such user; known: {known}")
        return user

    def _by_address(self, address: str) -> User | None:
        wanted = address.strip("<>").lower()
        return next((u for u in self._users.values() if u.address.lower() == wanted), None)

    def deliver(
        self,
        login: str,
        raw: bytes | str,
        *,
        mailbox: str = INBOX,
        flags: Iterable[str] = (),
    ) -> Path:
        """Put a message straight into the user's maildir; returns the file's path.

        Without `flags` it lands in `new/` (a fresh, \\Recent delivery); with flags
        (`("\\\\Seen",)`) in `cur/`. Dovecot sees it at its next mailbox sync (SELECT,
        NOOP...). A file per message, written through `tmp/` and renamed, as the
        Maildir spec asks; about 10 µs each, so 10,000 messages take ~0.1 s.
        """
        return self.deliver_many(login, [raw], mailbox=mailbox, flags=flags)[0]

    def deliver_many(
        self,
        login: str,
        messages: Iterable[bytes | str],
        *,
        mailbox: str = INBOX,
        flags: Iterable[str] = (),
    ) -> list[Path]:
        """`deliver` for many messages, in order (their UIDs follow this order)."""
        _, identity = self._require_started()
        user = self._require_user(login)
        folder = self._make_maildir(user.login, mailbox)
        flag_list = list(flags)
        info = maildir_info(flag_list) if flag_list else ""
        subdir = folder / ("cur" if info else "new")
        tmpdir = folder / "tmp"
        chown = os.geteuid() == 0 and identity.mail_uid != os.geteuid()
        uid, gid = identity.mail_uid, identity.mail_gid
        pid = os.getpid()
        written = []
        for message in messages:
            data = message.encode() if isinstance(message, str) else message
            now = time.time()
            seconds, micros = int(now), int((now % 1) * 1_000_000)
            base = (
                f"{seconds}.M{micros}P{pid}Q{next(self._seq)}.mailharness,"
                f"S={len(data)},W={virtual_size(data)}"
            )
            tmp = tmpdir / base
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, data)
                if chown:
                    os.fchown(fd, uid, gid)
            finally:
                os.close(fd)
            target = subdir / (base + info)
            os.rename(tmp, target)
            written.append(target)
        return written

    def __repr__(self) -> str:
        listeners = ", ".join(f"{e.url}({e.security.value})" for e in self.endpoints)
        return f"<{self.kind} {listeners or 'not started'}>"
