"""`DovecotProcess`: a real Dovecot, started from our config, on our loopback sockets.

    with DovecotProcess(DovecotConfig(cert=ca.server_cert())) as dovecot:
        dovecot.deliver("alice@example.test", b"Subject: hi\\r\\n\\r\\nhello\\r\\n")
        imaplib.IMAP4(*dovecot.endpoint("starttls").address)...

How it avoids the usual traps of running a daemon in tests:

- **No port race.** We bind 127.0.0.1:0 ourselves and hand the listening
  sockets to Dovecot by systemd socket activation (`LISTEN_FDS`/`LISTEN_PID`,
  which Debian's Dovecot is built with): the port is ours before Dovecot starts
  and a client can connect at once.
- **Readiness is the greeting**, read from one connection: the socket already
  listens, so the connection queues until imap-login answers. No sleeps.
- **Fast, complete stop.** Dovecot runs as the init process of its own PID
  namespace (`unshare --pid`, when the machine allows it): SIGKILL to it makes the
  kernel kill and reap every Dovecot process at once (~2 ms instead of the 1-3 s
  of a SIGTERM shutdown, which sleeps a fixed second waiting for its log process).
  Killing a master outside a namespace would orphan its children, so without
  namespaces we fall back to SIGTERM and wait.
- **Private everything**: config, base_dir, state, log and maildirs live in one
  temp dir (on /dev/shm when it exists: this VM evicts idle page cache, which
  makes disk-backed timings swing 5x), removed at stop.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import grp
import itertools
import os
import pwd
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from servers.accounts import User
from servers.dovecot import maildir
from servers.dovecot.config import (
    DovecotConfig,
    Identity,
    InstancePaths,
    Quota,
    SSLMode,
    check_passwd_fields,
    openssl_conf,
    passwd_line,
    render_config,
)
from servers.errors import ConfigError, MailharnessError, ServerStartError
from servers.listeners import Endpoint, Security, bind_loopback

# Dovecot greets in ~35 ms here; a loaded CI machine gets plenty of slack before we give up.
DEFAULT_START_TIMEOUT = 15.0
# A SIGTERM shutdown takes 1-3 s; beyond this the process group is killed.
TERM_TIMEOUT = 10.0
# How often the readiness probe looks at the process while waiting for the greeting.
PROBE_INTERVAL = 0.05
# Inherited listening sockets are first moved to descriptors at or above this number, so
# moving them down to 3, 4... in the child can never overwrite one another.
_HIGH_FD = 100
# systemd's protocol: inherited sockets start at descriptor 3.
_SD_LISTEN_FDS_START = 3
# Where Debian installs the binaries (sbin is not on a non-root PATH).
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/sbin"]
)
_MAILDIR_FLAGS = {
    "\\Draft": "D",
    "\\Flagged": "F",
    "\\Answered": "R",
    "\\Seen": "S",
    "\\Deleted": "T",
}
_MAILDIR_FLAGS_BY_LOWER = {name.lower(): letter for name, letter in _MAILDIR_FLAGS.items()}
INBOX = "INBOX"
# Listener names in dovecot.conf, in the order they are bound and reported.
LISTENERS = ("imap", "imaps", "submission", "submissions")
# Session processes `close_sessions` ends (logins in progress and logged-in sessions).
SESSION_SERVICES = frozenset({"imap", "imap-login", "submission", "submission-login"})
# How long a signalled Dovecot child may take to exit before we stop waiting for it.
CHILD_EXIT_TIMEOUT = 2.0


class DovecotNotInstalled(ServerStartError):
    """The `dovecot` binary is missing; the message says how to install it."""


class DovecotStartError(ServerStartError):
    """Dovecot did not greet; the message carries the end of its log."""


class DovecotError(MailharnessError):
    """A `doveadm` command failed; the message has its command line and stderr."""


def find_executable(name: str) -> str:
    """Path of a Dovecot program, or DovecotNotInstalled with the install command."""
    path = shutil.which(name, path=_SEARCH_PATH)
    if path is None:
        raise DovecotNotInstalled(
            f"{name} is not installed: `apt-get install -y dovecot-imapd` "
            "(Debian 12 ships Dovecot 2.3.19)"
        )
    return path


@functools.cache
def pid_namespaces_available() -> bool:
    """Whether `unshare --pid` works here (root, or a container that allows it)."""
    unshare = shutil.which("unshare", path=_SEARCH_PATH)
    if unshare is None:
        return False
    try:
        result = subprocess.run(
            [unshare, "--pid", "--fork", "--kill-child", "true"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _private_root() -> Path:
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None
    root = Path(tempfile.mkdtemp(prefix="mailharness-dovecot-", dir=parent))
    # Dovecot's unprivileged processes (dovecot, dovenull, the mail user) must traverse it,
    # but nobody may list it.
    os.chmod(root, 0o711)
    return root


def _resolve_identity(config: DovecotConfig) -> Identity:
    if os.geteuid() != 0:
        # Dovecot runs fine unprivileged when every service runs as the caller.
        me = pwd.getpwuid(os.geteuid()).pw_name
        return Identity(os.geteuid(), os.getegid(), internal_user=me, login_user=me)
    try:
        uid = pwd.getpwnam(config.mail_user).pw_uid
    except KeyError:
        raise ConfigError(
            f"mail_user={config.mail_user!r}: no such system user; "
            "name an existing unprivileged account"
        ) from None
    try:
        gid = grp.getgrnam(config.mail_group).gr_gid
    except KeyError:
        raise ConfigError(
            f"mail_group={config.mail_group!r}: no such system group; "
            "name an existing unprivileged group"
        ) from None
    if uid == 0 or gid == 0:
        raise ConfigError(f"mail_user={config.mail_user!r}: Dovecot refuses to serve mail as root")
    return Identity(uid, gid)


def maildir_folder(login_maildir: Path, mailbox: str) -> Path:
    """The Maildir++ directory of a mailbox: INBOX is the root, others are `.Name`."""
    if mailbox.upper() == INBOX:
        return login_maildir
    if not mailbox or mailbox.startswith(".") or "/" in mailbox:
        raise ConfigError(f"mailbox={mailbox!r}: expected INBOX or a name like 'Archive.2024'")
    return login_maildir / f".{mailbox}"


def _maildir_info(flags: Iterable[str]) -> str:
    letters = []
    for flag in flags:
        letter = _MAILDIR_FLAGS_BY_LOWER.get(flag.lower())
        if letter is None:
            raise ConfigError(f"flag={flag!r}: expected one of {', '.join(sorted(_MAILDIR_FLAGS))}")
        letters.append(letter)
    return ":2," + "".join(sorted(set(letters)))


def _virtual_size(raw: bytes) -> int:
    """RFC822.SIZE as Dovecot computes it: every bare LF counts as CRLF."""
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


class DovecotProcess:
    """One running Dovecot; see the module docstring. Start once, stop once."""

    def __init__(
        self,
        config: DovecotConfig | None = None,
        *,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        pid_namespace: bool | None = None,
    ) -> None:
        self.config = config or DovecotConfig(ssl=SSLMode.NO, imaps=False)
        self.start_timeout = start_timeout
        self._want_namespace = pid_namespace
        self.paths: InstancePaths | None = None
        self.endpoints: tuple[Endpoint, ...] = ()
        self.greeting = b""
        # Seconds from spawning Dovecot to reading its greeting.
        self.startup_seconds = 0.0
        self._identity: Identity | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._in_namespace = False
        self._seq = itertools.count(1)
        self._finalizer: weakref.finalize[..., DovecotProcess] | None = None
        self._users: dict[str, User] = {}
        self._quotas: dict[str, Quota] = {}
        # passwd-file mtimes we set: each write gets a new one (see _write_passwd).
        self._mtimes = itertools.count(int(time.time()) + 1)

    # --- lifecycle ------------------------------------------------------------
    def start(self) -> DovecotProcess:
        """Write the config, start Dovecot, return once it has greeted on a listener."""
        if self._proc is not None:
            raise ServerStartError("DovecotProcess already started")
        dovecot = find_executable("dovecot")
        identity = self._identity = _resolve_identity(self.config)
        paths = self.paths = InstancePaths(_private_root())
        sockets: dict[str, socket.socket] = {}
        try:
            self._prepare_tree(paths, identity)
            for name in LISTENERS:
                if getattr(self.config, name):
                    sockets[name] = bind_loopback(self.config.host)
            ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
            text = render_config(self.config, paths, identity, ports)
            paths.config.write_text(text)
            capped = openssl_conf(self.config)
            if capped is not None:
                paths.openssl_conf.write_text(capped)
                os.chmod(paths.openssl_conf, 0o644)
            self.endpoints = self._make_endpoints(ports)
            started = time.perf_counter()
            self._spawn(dovecot, paths, list(sockets.values()))
        except BaseException:
            for sock in sockets.values():
                sock.close()
            self._cleanup()
            raise
        for sock in sockets.values():
            sock.close()  # Dovecot holds its own copies now
        try:
            self.greeting = self._await_greeting()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        return self

    def _prepare_tree(self, paths: InstancePaths, identity: Identity) -> None:
        paths.state_dir.mkdir(mode=0o755)
        paths.mail.mkdir(mode=0o711)
        paths.users.mkdir(mode=0o711)
        for user in self.config.users:
            self._write_passwd(user)
            self._users[user.login.lower()] = user
            self._make_maildir(user.login)

    def _write_passwd(self, user: User) -> None:
        assert self.paths is not None and self._identity is not None
        path = self.paths.passwd(user.login)
        tmp = path.with_name(path.name + ".tmp")
        quota = self._quotas.get(user.login.lower())
        tmp.write_text(passwd_line(user, self._identity, self.paths, quota))
        os.chmod(tmp, 0o640)
        # Dovecot re-reads a passwd-file when its mtime (whole seconds) or size changed:
        # a new mtime on every write, so a same-size change within a second is seen too.
        stamp = next(self._mtimes)
        os.utime(tmp, (stamp, stamp))
        if os.geteuid() == 0:
            # The auth process runs as Dovecot's internal user and must read it.
            try:
                gid = grp.getgrnam("dovecot").gr_gid
            except KeyError:
                os.chmod(tmp, 0o644)
            else:
                os.chown(tmp, 0, gid)
        os.replace(tmp, path)  # never a half-written file for a login that is in progress

    def _make_maildir(self, login: str, mailbox: str = INBOX) -> Path:
        assert self.paths is not None and self._identity is not None
        uid, gid = self._identity.mail_uid, self._identity.mail_gid
        home = self.paths.home(login)
        root = self.paths.maildir(login)
        folder = maildir_folder(root, mailbox)
        for directory in (home, root, folder, folder / "cur", folder / "new", folder / "tmp"):
            if not directory.exists():
                directory.mkdir(mode=0o700)
                os.chown(directory, uid, gid)
        if folder != root and not (folder / "maildirfolder").exists():
            marker = folder / "maildirfolder"
            marker.touch()
            os.chown(marker, uid, gid)
        return folder

    def _spawn(self, dovecot: str, paths: InstancePaths, sockets: list[socket.socket]) -> None:
        high = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, _HIGH_FD) for s in sockets]
        try:
            moves = " ".join(
                f"{_SD_LISTEN_FDS_START + i}<&{fd} {fd}<&-" for i, fd in enumerate(high)
            )
            # bash, not sh: dash cannot redirect descriptors above 9. `$$` is the shell's pid,
            # which `exec` hands to Dovecot: exactly what sd_listen_fds() checks LISTEN_PID for.
            script = (
                f"exec {moves}; unset LISTEN_FDNAMES; "
                f"export LISTEN_PID=$$ LISTEN_FDS={len(high)}; "
                'exec "$1" -F -c "$2"'
            )
            command = [
                find_executable("bash"),
                "-c",
                script,
                "mailharness-dovecot",
                dovecot,
                os.fspath(paths.config),
            ]
            namespace = self._want_namespace
            if namespace is None:
                namespace = pid_namespaces_available()
            if namespace:
                command = [find_executable("unshare"), "--pid", "--fork", "--kill-child", *command]
            env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
            with open(paths.stderr, "wb") as stderr:
                self._proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    pass_fds=high,
                    env=env,
                    start_new_session=True,
                )
            self._in_namespace = namespace
            self._finalizer = weakref.finalize(self, _emergency_stop, self._proc, paths.root)
        finally:
            for fd in high:
                os.close(fd)

    def _make_endpoints(self, ports: dict[str, int]) -> tuple[Endpoint, ...]:
        """Plain ports offer STARTTLS unless ssl = no: Dovecot has no plain-only listener."""
        host = self.config.host
        plain = Security.NONE if self.config.ssl is SSLMode.NO else Security.STARTTLS
        kinds = {
            "imap": ("imap", plain),
            "imaps": ("imap", Security.IMPLICIT),
            "submission": ("smtp", plain),
            "submissions": ("smtp", Security.IMPLICIT),
        }
        return tuple(
            Endpoint(kinds[name][0], host, ports[name], kinds[name][1])
            for name in LISTENERS
            if name in ports
        )

    def _await_greeting(self) -> bytes:
        """Read the first line on the first listener, watching that Dovecot stays alive."""
        assert self._proc is not None
        endpoint = self.endpoints[0]
        deadline = time.monotonic() + self.start_timeout
        raw = socket.create_connection(endpoint.address, timeout=self.start_timeout)
        sock: socket.socket = raw
        buffer = b""
        try:
            if endpoint.security is Security.IMPLICIT:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(raw, do_handshake_on_connect=False)
            sock.settimeout(PROBE_INTERVAL)
            handshaken = endpoint.security is not Security.IMPLICIT
            while b"\r\n" not in buffer:
                if self._proc.poll() is not None:
                    raise DovecotStartError(self._failure("exited before greeting"))
                if time.monotonic() > deadline:
                    raise DovecotStartError(
                        self._failure(f"no greeting within {self.start_timeout}s")
                    )
                try:
                    if not handshaken:
                        assert isinstance(sock, ssl.SSLSocket)
                        sock.do_handshake()
                        handshaken = True
                        continue
                    chunk = sock.recv(4096)
                except (TimeoutError, ssl.SSLWantReadError):
                    continue
                except OSError as exc:
                    raise DovecotStartError(self._probe_failure(f"reset the probe: {exc}")) from exc
                if not chunk:
                    raise DovecotStartError(self._probe_failure("closed the probe connection"))
                buffer += chunk
        finally:
            sock.close()
        return buffer.split(b"\r\n", 1)[0]

    def _probe_failure(self, what: str) -> str:
        """A dead probe usually means Dovecot exited (its sockets closed): say so if it did."""
        assert self._proc is not None
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return self._failure(what)
        return self._failure("exited before greeting")

    def _failure(self, what: str) -> str:
        log = self.log_text(tail=20)
        code = self._proc.returncode if self._proc is not None else None
        status = f" (exit status {code})" if code is not None else ""
        config = self.paths.config if self.paths is not None else "?"
        return f"Dovecot {what}{status}; config {config}; log:\n{log or '(empty)'}"

    def stop(self) -> None:
        """Stop every Dovecot process and remove the instance's directory. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if self._in_namespace:
                _kill_namespace(proc)
            else:
                _terminate(proc)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self.paths is not None:
            shutil.rmtree(self.paths.root, ignore_errors=True)
        self.endpoints = ()

    @property
    def pid(self) -> int | None:
        """Pid of the process we started (unshare's, when in a PID namespace)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> DovecotProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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
        key = user.login.lower()
        if key in self._users:
            raise ConfigError(f"user login={user.login!r}: already exists")
        check_passwd_fields(user)
        self._make_maildir(user.login)
        self._write_passwd(user)
        self._users[key] = user
        return user

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
        wanted = {u.login.lower(): u for u in users}
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
                check_passwd_fields(user)
                self._make_maildir(user.login)
                self._write_passwd(user)
                self._users[key] = user
                changed = True
        if changed:
            self.flush_auth()

    # --- Dovecot's own processes ------------------------------------------------------
    def _master_pid(self) -> int | None:
        if self._proc is None:
            return None
        if self._in_namespace:
            return _namespace_init_pid(self._proc)
        return self._proc.pid  # bash exec'd dovecot: same pid

    def service_pids(self, services: Iterable[str]) -> list[int]:
        """Pids of Dovecot's children running these services ("auth", "imap"...)."""
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

    def flush_auth(self) -> None:
        """End Dovecot's auth process: the next login starts a fresh one that reads every
        passwd-file anew (the running one checks each at most once per second)."""
        self._end_children(("auth",))

    def close_sessions(self) -> int:
        """End every IMAP and submission session (and login in progress); returns how many."""
        return self._end_children(SESSION_SERVICES)

    def _require_user(self, login: str) -> User:
        user = self._users.get(login.lower()) or self._by_address(login)
        if user is None:
            known = ", ".join(sorted(u.login for u in self._users.values()))
            raise ConfigError(f"login={login!r}: no such user; known: {known}")
        return user

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
        info = _maildir_info(flag_list) if flag_list else ""
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
                f"S={len(data)},W={_virtual_size(data)}"
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

    def _by_address(self, address: str) -> User | None:
        wanted = address.strip("<>").lower()
        return next((u for u in self._users.values() if u.address.lower() == wanted), None)

    def doveadm(
        self, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `doveadm -c OUR_CONFIG ARGS...`, e.g. `doveadm("mailbox", "status", ...)`."""
        paths, _ = self._require_started()
        command = [find_executable("doveadm"), "-c", os.fspath(paths.config), *args]
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise DovecotError(
                f"{' '.join(command)}: exit status {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def log_text(self, tail: int | None = None) -> str:
        """Dovecot's log and anything it wrote to stderr (last `tail` lines of each)."""
        if self.paths is None:
            return ""
        parts = []
        for path in (self.paths.stderr, self.paths.log):
            try:
                lines = path.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                continue
            if tail is not None:
                lines = lines[-tail:]
            parts.extend(lines)
        return "\n".join(parts)

    def _require_started(self) -> tuple[InstancePaths, Identity]:
        if self._proc is None or self.paths is None or self._identity is None:
            raise ServerStartError("DovecotProcess is not running: call start() first")
        return self.paths, self._identity

    def __repr__(self) -> str:
        listeners = ", ".join(f"{e.url}({e.security.value})" for e in self.endpoints)
        return f"<DovecotProcess {listeners or 'not started'}>"


def _namespace_init_pid(proc: subprocess.Popen[bytes]) -> int | None:
    """Our view of the pid of `unshare --fork`'s child: Dovecot, the namespace's init."""
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _kill_namespace(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the namespace's init: the kernel then kills and reaps all the rest."""
    child = _namespace_init_pid(proc)
    if child is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    try:
        proc.wait(timeout=TERM_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_group(proc)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    """Dovecot's own shutdown (it reaps its children), then the group if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=TERM_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
    _kill_group(proc, only_leftovers=True)


def _kill_group(proc: subprocess.Popen[bytes], only_leftovers: bool = False) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if only_leftovers:
            return
    if not only_leftovers:
        proc.wait(timeout=TERM_TIMEOUT)


def _emergency_stop(proc: subprocess.Popen[bytes], root: Path) -> None:
    """Last resort if a DovecotProcess is dropped or the interpreter exits while it runs."""
    if proc.poll() is None:
        child = _namespace_init_pid(proc)
        for pid in (child, proc.pid):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=TERM_TIMEOUT)
    shutil.rmtree(root, ignore_errors=True)
