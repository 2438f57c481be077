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
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path

from mailharness.servers.dovecot.config import (
    DovecotConfig,
    Identity,
    InstancePaths,
    render_config,
)
from mailharness.servers.dovecot.instance import (
    LISTENERS,
    DovecotError,
    DovecotInstance,
    DovecotStartError,
    make_endpoints,
    read_greeting,
)
from mailharness.servers.errors import ConfigError, ServerStartError
from mailharness.servers.listeners import bind_loopback

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


class DovecotNotInstalled(ServerStartError):
    """The `dovecot` binary is missing; the message says how to install it."""


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


class DovecotProcess(DovecotInstance):
    """One running Dovecot; see the module docstring. Start once, stop once."""

    kind = "DovecotProcess"

    def __init__(
        self,
        config: DovecotConfig | None = None,
        *,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        pid_namespace: bool | None = None,
    ) -> None:
        super().__init__(config)
        self.start_timeout = start_timeout
        self._want_namespace = pid_namespace
        self._proc: subprocess.Popen[bytes] | None = None
        self._in_namespace = False
        self._finalizer: weakref.finalize[..., DovecotProcess] | None = None

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
            self._prepare_tree(paths)
            for name in LISTENERS:
                if getattr(self.config, name):
                    sockets[name] = bind_loopback(self.config.host)
            ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
            text = render_config(self.config, paths, identity, ports)
            paths.config.write_text(text)
            self._write_openssl_conf(self.config)
            self.endpoints = make_endpoints(self.config, ports)
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

    def _secure_passwd(self, path: Path) -> None:
        if os.geteuid() != 0:
            os.chmod(path, 0o640)
            return
        # The auth process runs as Dovecot's internal user and must read it.
        try:
            gid = grp.getgrnam("dovecot").gr_gid
        except KeyError:
            os.chmod(path, 0o644)
        else:
            os.chmod(path, 0o640)
            os.chown(path, 0, gid)

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

    def _await_greeting(self) -> bytes:
        """Read the first line on the first listener, watching that Dovecot stays alive."""
        deadline = time.monotonic() + self.start_timeout
        try:
            return read_greeting(
                self.endpoints[0],
                deadline,
                poll=PROBE_INTERVAL,
                running=lambda: self.running,
                failure=self._failure,
            )
        except OSError as exc:
            raise DovecotStartError(self._probe_failure(f"reset the probe: {exc}")) from exc

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

    # --- Dovecot's own processes ------------------------------------------------------
    def _master_pid(self) -> int | None:
        if self._proc is None:
            return None
        if self._in_namespace:
            return _namespace_init_pid(self._proc)
        return self._proc.pid  # bash exec'd dovecot: same pid

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

    def _started(self) -> bool:
        return self._proc is not None


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
