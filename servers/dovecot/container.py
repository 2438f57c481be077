"""`DovecotContainer`: the same Dovecot, config and API as `DovecotProcess`, in Docker.

    with DovecotContainer(DovecotConfig(cert=ca.server_cert())) as dovecot:
        dovecot.deliver("alice@example.test", b"Subject: hi\\r\\n\\r\\nhello\\r\\n")
        imaplib.IMAP4_SSL(*dovecot.endpoint("implicit").address, ssl_context=...)
        dovecot.reset()           # fresh users, empty mailboxes, same container

How it works:

- **One container per test session**, reset between tests (`reset()`: a few
  ms, no restart). Config, passwd-files, certificates, log and maildirs live in
  a private temp dir bind-mounted into the container *at the same path*, so
  the config rendered by `render_config` is valid on both sides and `deliver`
  writes maildir files from the host directly.
- **Host networking (default)**: the container shares the host's network, so
  Dovecot's listeners are on the host's 127.0.0.1. Ports are not guessed: the
  image's entry point binds 127.0.0.1:0 (the kernel picks free ports), reports
  them through the shared dir, waits for the config we render with them, and
  hands the bound sockets to Dovecot by socket activation, as the native
  runner does. The port is owned from the moment it is chosen, so two xdist
  workers can never collide and there is no retry loop. (Picking a free port
  on the host and retrying on conflict also works, but between the pick and
  Dovecot's bind another worker's server may take the port, and our readiness
  probe would then read *its* greeting.)
- **Published ports** (`network="published"`, for Docker Desktop, where host
  networking does not reach the Mac or Windows host): Dovecot listens on the
  container's 143/993 and Docker publishes them on the host's 127.0.0.1 at
  ports the engine picks. It needs a bridge network, which the private engine
  here (`--bridge=none`) has not; its settings are unit-tested.
- **Everything else is `DovecotInstance`'s** (servers.dovecot.instance), shared with
  the native runner: accounts, quotas, delivery, endpoints. Dovecot's children
  (auth, sessions) are ended from the host through /proc, since the container's
  processes are visible there (as root; an unprivileged caller uses `doveadm kick`
  and `doveadm reload` instead), and `inotify` on the bind-mounted maildir sees the
  container's writes.
- **Readiness is the greeting**, as for the process. `stop()` removes the
  container (SIGKILL: everything in it dies at once) and the temp dir.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import docker.errors
from mailharness.servers.accounts import User
from mailharness.servers.dovecot.config import (
    DEFAULT_SSL_DH,
    DovecotConfig,
    Identity,
    InstancePaths,
    render_config,
)
from mailharness.servers.dovecot.engine import EngineInfo, ensure_engine
from mailharness.servers.dovecot.image import ensure_image
from mailharness.servers.dovecot.instance import (
    SESSION_SERVICES,
    DovecotError,
    DovecotInstance,
    DovecotStartError,
    make_endpoints,
    read_greeting,
)
from mailharness.servers.errors import ServerStartError, parse_choice

# A container greets in ~0.5 s here; a loaded CI machine gets plenty of slack.
DEFAULT_START_TIMEOUT = 30.0
# How often readiness probes look at the container while they wait.
PROBE_INTERVAL = 0.05
# How often we look for the ports file the entry point writes (it appears in ~0.3 s).
PORTS_POLL = 0.005
# Listener name -> the port Dovecot uses inside the container in published mode.
CONTAINER_PORTS = {"imap": 143, "imaps": 993, "submission": 587, "submissions": 465}
# Inside the container: the image's Debian has nobody:nogroup as 65534:65534 on every host.
CONTAINER_NOBODY = 65534
LABEL = "io.mailharness.dovecot"
_counter = itertools.count(1)


class Network(enum.Enum):
    """How clients on the host reach the container's Dovecot."""

    HOST = "host"  # share the host's network; Dovecot on the host's 127.0.0.1
    PUBLISHED = "published"  # own network; ports published on the host's 127.0.0.1

    @classmethod
    def parse(cls, value: str | Network, field: str = "network") -> Network:
        return parse_choice(cls, value, field)


@dataclass(frozen=True, slots=True)
class _CopiedCert:
    """The certificate, copied into the shared dir so the container can read it."""

    cert_path: Path
    key_path: Path


def listeners(config: DovecotConfig) -> tuple[str, ...]:
    """Names of the listeners a config asks for, in endpoint order."""
    return tuple(name for name in CONTAINER_PORTS if getattr(config, name, False))


def container_identity() -> Identity:
    """Who owns the mail, as numbers valid inside the container.

    As root we hand mail to the container's nobody:nogroup (65534), as the
    native runner does; an unprivileged caller (a user in the docker group)
    cannot chown, so mail is owned by the caller's own uid and gid.
    """
    if os.geteuid() == 0:
        return Identity(CONTAINER_NOBODY, CONTAINER_NOBODY)
    return Identity(os.geteuid(), os.getegid())


def container_config_text(
    config: DovecotConfig,
    paths: InstancePaths,
    identity: Identity,
    ports: Mapping[str, int],
    network: Network,
) -> str:
    """`render_config`, adjusted for the network mode.

    In published mode Dovecot listens on every address of the container's own
    network namespace (Docker forwards the host's 127.0.0.1 ports to it); the
    host side stays loopback-only.
    """
    text = render_config(config, paths, identity, ports)
    if network is Network.PUBLISHED:
        text = text.replace(f"\nlisten = {config.host}\n", "\nlisten = *\n", 1)
    return text


def run_options(
    *,
    image: str,
    name: str,
    paths: InstancePaths,
    config: DovecotConfig,
    network: Network | str,
) -> dict[str, Any]:
    """Keyword arguments of `client.containers.run` for one instance."""
    network = Network.parse(network)
    root = os.fspath(paths.root)
    # As root we keep the passwd-files private (the entry point makes their dir root:dovecot
    # 0750); an unprivileged caller must keep writing there, so the dir stays its own.
    env = {"MAILHARNESS_USERS_DIR": os.fspath(paths.users)} if os.geteuid() == 0 else {}
    options: dict[str, Any] = {
        "image": image,
        "command": [os.fspath(paths.config)],
        "name": name,
        "detach": True,
        "labels": {LABEL: "1", f"{LABEL}.owner-pid": str(os.getpid())},
        "volumes": {root: {"bind": root, "mode": "rw"}},
        "environment": env,
    }
    if network is Network.HOST:
        options["network_mode"] = "host"
        env.update(
            MAILHARNESS_LISTENERS=" ".join(listeners(config)),
            MAILHARNESS_LISTEN=config.host,
            MAILHARNESS_PORTS=os.fspath(paths.root / "ports"),
        )
    else:
        options["ports"] = {
            f"{CONTAINER_PORTS[listener]}/tcp": (config.host, None)
            for listener in listeners(config)
        }
    return options


def container_name() -> str:
    """Unique per machine: xdist worker, pid, a counter and a random suffix."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"mailharness-dovecot-{worker}-{os.getpid()}-{next(_counter)}-{secrets.token_hex(3)}"


def _private_root(network: Network) -> Path:
    # /dev/shm on Linux with host networking (this VM evicts idle page cache); the default
    # temp dir otherwise, which Docker Desktop shares with its VM.
    shm = Path("/dev/shm")
    use_shm = network is Network.HOST and shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)
    root = Path(tempfile.mkdtemp(prefix="mailharness-dovecot-", dir=shm if use_shm else None))
    os.chmod(root, 0o711)
    return root


class DovecotContainer(DovecotInstance):
    """One Dovecot container; see the module docstring. Start once, reset often, stop once."""

    kind = "DovecotContainer"

    def __init__(
        self,
        config: DovecotConfig | None = None,
        *,
        image: str | None = None,
        network: Network | str = Network.HOST,
        engine: EngineInfo | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ) -> None:
        super().__init__(config)
        self.image = image
        self.network = Network.parse(network)
        self.start_timeout = start_timeout
        self._engine = engine
        self._client: Any = None
        self._container: Any = None
        self.name = ""
        # Seconds the last reset() took.
        self.reset_seconds = 0.0
        self._identity = container_identity()
        self._ports: dict[str, int] = {}
        # Host pid of the container's init, which is Dovecot's master (the entry point execs it).
        self._pid: int | None = None
        self._finalizer: weakref.finalize[..., DovecotContainer] | None = None

    # --- lifecycle ------------------------------------------------------------
    def start(self) -> DovecotContainer:
        """Start the container; return once Dovecot has greeted on a listener."""
        if self._container is not None:
            raise ServerStartError("DovecotContainer already started")
        engine = self._engine or ensure_engine()
        self._client = client = engine.client()
        image = self.image = self.image or ensure_image(client)
        paths = self.paths = InstancePaths(_private_root(self.network))
        try:
            self._prepare_tree(paths)
            self.name = container_name()
            options = run_options(
                image=image, name=self.name, paths=paths, config=self.config, network=self.network
            )
            if self.network is Network.PUBLISHED:
                self._write_config(CONTAINER_PORTS)
            started = time.perf_counter()
            self._container = client.containers.run(**options)
            self._finalizer = weakref.finalize(
                self, _emergency_remove, client, self._container.id, paths.root
            )
            if self.network is Network.HOST:
                self._ports = self._await_ports(paths.root / "ports")
                self._write_config(self._ports)
            else:
                self._ports = self._published_ports()
            self.endpoints = make_endpoints(self.config, self._ports)
            self.greeting = self._await_greeting()
            self._pid = self._client.api.inspect_container(self._container.id)["State"]["Pid"]
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started
        return self

    def _prepare_tree(self, paths: InstancePaths) -> None:
        (paths.root / "tls").mkdir(mode=0o700)
        super()._prepare_tree(paths)

    def _effective_config(self, config: DovecotConfig) -> DovecotConfig:
        """The config with its certificate (and DH file) copied into the shared dir."""
        assert self.paths is not None
        tls = self.paths.root / "tls"
        changes: dict[str, Any] = {}
        if config.cert is not None:
            cert, key = tls / "cert.pem", tls / "key.pem"
            for source, target in ((config.cert.cert_path, cert), (config.cert.key_path, key)):
                shutil.copyfile(source, target)
                os.chmod(target, 0o600)  # read by Dovecot's config process, as root
            changes["cert"] = _CopiedCert(cert, key)
        if config.ssl_dh != DEFAULT_SSL_DH:  # the image has the default one
            shutil.copyfile(config.ssl_dh, tls / "dh.pem")
            changes["ssl_dh"] = tls / "dh.pem"
        return replace(config, **changes) if changes else config

    def _config_text(self, config: DovecotConfig, ports: Mapping[str, int]) -> str:
        assert self.paths is not None and self._identity is not None
        effective = self._effective_config(config)
        return container_config_text(effective, self.paths, self._identity, ports, self.network)

    def _write_config(self, ports: Mapping[str, int]) -> None:
        assert self.paths is not None
        self._write_openssl_conf(self.config)
        path = self.paths.config
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self._config_text(self.config, ports))
        os.replace(tmp, path)  # the entry point waits for it to appear: whole, never partial

    def _await_ports(self, path: Path) -> dict[str, int]:
        deadline = time.monotonic() + self.start_timeout
        next_check = time.monotonic() + PROBE_INTERVAL
        while not path.exists():
            now = time.monotonic()
            if now > deadline:
                raise DovecotStartError(
                    self._failure(f"entry point wrote no ports within {self.start_timeout}s")
                )
            if now > next_check:
                next_check = now + PROBE_INTERVAL
                if not self.running:
                    raise DovecotStartError(self._failure("exited before binding its ports"))
            time.sleep(PORTS_POLL)
        ports = {}
        for line in path.read_text().splitlines():
            name, port = line.split()
            ports[name] = int(port)
        return ports

    def _published_ports(self) -> dict[str, int]:
        self._container.reload()
        published = self._container.attrs["NetworkSettings"]["Ports"] or {}
        ports = {}
        for listener in listeners(self.config):
            bindings = published.get(f"{CONTAINER_PORTS[listener]}/tcp") or []
            if not bindings:
                raise DovecotStartError(self._failure(f"has no published port for {listener}"))
            ports[listener] = int(bindings[0]["HostPort"])
        return ports

    def _await_greeting(self) -> bytes:
        """Read the first line on the first listener, watching the container stay up.

        With host networking the socket is bound before Dovecot runs, so one
        connection queues until imap-login answers. With published ports Docker's
        proxy accepts at once and hangs up while Dovecot is not yet listening, so
        a closed probe is retried until the deadline.
        """
        endpoint = self.endpoints[0]
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                return read_greeting(
                    endpoint,
                    deadline,
                    poll=PROBE_INTERVAL * 4,
                    running=lambda: self.running,
                    failure=self._failure,
                )
            except ConnectionError:
                if self.network is not Network.PUBLISHED or time.monotonic() > deadline:
                    raise DovecotStartError(self._failure("closed the probe connection")) from None
                time.sleep(PROBE_INTERVAL)
            except OSError as exc:
                raise DovecotStartError(self._failure(f"reset the probe: {exc}")) from exc

    def _failure(self, what: str) -> str:
        status = ""
        if self._container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                self._container.reload()
                state = self._container.attrs["State"]
                if not state.get("Running"):
                    status = f" (exit status {state.get('ExitCode')})"
        config = self.paths.config if self.paths is not None else "?"
        log = self.log_text(tail=20)
        return (
            f"Dovecot container {self.name} {what}{status}; config {config}; "
            f"log:\n{log or '(empty)'}"
        )

    @property
    def running(self) -> bool:
        if self._container is None:
            return False
        try:
            state = self._client.api.inspect_container(self._container.id)["State"]
        except docker.errors.NotFound:
            return False
        return bool(state.get("Running"))

    def stop(self) -> None:
        """Remove the container (SIGKILL: all of Dovecot at once) and the temp dir. Idempotent."""
        container, self._container = self._container, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if container is not None:
            _remove(self._client, container.id)
        if self.paths is not None:
            _remove_tree(self._client, self.image, self.paths.root)
        if self._client is not None:
            self._client.close()
            self._client = None
        self.endpoints = ()
        self._pid = None
        self._users.clear()
        self._quotas.clear()

    def _started(self) -> bool:
        return self._container is not None

    def _master_pid(self) -> int | None:
        """Dovecot's master, seen from the host: its children are signalled as the native
        runner's are (needs root, as the container's processes are root's or nobody's)."""
        return self._pid if self._container is not None and os.geteuid() == 0 else None

    def _end_children(self, services: Iterable[str]) -> int:
        if os.geteuid() == 0:
            return super()._end_children(services)
        # Unprivileged: Dovecot's own tools instead (slower, same effect).
        wanted = set(services)
        ended = 0
        if wanted & SESSION_SERVICES:
            ended = len(self.doveadm("who", check=False).stdout.splitlines()[1:])
            self.doveadm("kick", "*", check=False)
        if "auth" in wanted:
            paths, _ = self._require_started()
            self._reload(paths.config)
        return ended

    # --- between tests ----------------------------------------------------------
    def reset(self, users: Iterable[User] | None = None) -> None:
        """Fresh users (`users`, else the config's) and empty mailboxes; no restart.

        Sessions still logged in are ended first, so none writes into a maildir
        being removed; Dovecot's auth process is ended only when an account changed.
        """
        started = time.perf_counter()
        self._require_started()
        self.close_sessions()
        self.reset_users(self.config.users if users is None else users)
        self.wipe_mail()
        self.reset_seconds = time.perf_counter() - started

    def reconfigure(self, config: DovecotConfig) -> None:
        """Apply new settings with `doveadm reload`; users and mail are kept.

        A change of listeners (imap/imaps on or off, or the host) needs new
        sockets: the container is restarted with the config's users instead.
        """
        paths, _ = self._require_started()
        if listeners(config) != listeners(self.config) or config.host != self.config.host:
            self.stop()
            self.config = config
            self.start()
            return
        new = paths.config.with_name("dovecot.conf.new")
        new.write_text(self._config_text(config, self._ports))
        self._write_openssl_conf(config)
        self._reload(paths.config, new=new)
        self.config = config
        self.endpoints = make_endpoints(self.config, self._ports)

    def _reload(self, config_path: Path, *, new: Path | None = None) -> None:
        """`doveadm reload` (after checking `new` with doveconf and moving it in place),
        then wait until Dovecot's master has logged that it reloaded."""
        assert self.paths is not None
        before = self._reload_count()
        script = 'doveadm -c "$1" reload'
        args = [os.fspath(config_path)]
        if new is not None:
            script = 'doveconf -c "$2" -n >/dev/null && mv "$2" "$1" && ' + script
            args.append(os.fspath(new))
        result = self._exec(["sh", "-c", script, "mailharness-reload", *args], timeout=60)
        if result.returncode != 0:
            if new is not None:
                with contextlib.suppress(FileNotFoundError):
                    new.unlink()
            output = (result.stderr or result.stdout).strip()
            raise DovecotError(f"reload: exit status {result.returncode}: {output}")
        deadline = time.monotonic() + self.start_timeout
        while self._reload_count() <= before:
            if time.monotonic() > deadline:
                raise DovecotError(self._failure("did not log a reload"))
            time.sleep(PORTS_POLL)

    def _reload_count(self) -> int:
        assert self.paths is not None
        try:
            return self.paths.log.read_text(errors="replace").count("SIGHUP received")
        except FileNotFoundError:
            return 0

    def doveadm(
        self, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `doveadm -c OUR_CONFIG ARGS...` inside the container."""
        paths, _ = self._require_started()
        command = ["doveadm", "-c", os.fspath(paths.config), *args]
        result = self._exec(command, timeout=timeout)
        if check and result.returncode != 0:
            raise DovecotError(
                f"{' '.join(command)}: exit status {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()}"
            )
        return result

    def _exec(self, command: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        """`docker exec`, shaped like `subprocess.run(..., capture_output=True, text=True)`.

        `timeout` bounds the whole call through the client's own socket timeout.
        """
        api = self._client.api
        exec_id = api.exec_create(self._container.id, command, stdout=True, stderr=True)["Id"]
        stdout, stderr = api.exec_start(exec_id, demux=True)
        code = api.exec_inspect(exec_id).get("ExitCode")
        return subprocess.CompletedProcess(
            command,
            code if code is not None else -1,
            (stdout or b"").decode(errors="replace"),
            (stderr or b"").decode(errors="replace"),
        )

    def log_text(self, tail: int | None = None) -> str:
        """The container's output and Dovecot's log (last `tail` lines of each)."""
        parts: list[str] = []
        if self._container is not None:
            with contextlib.suppress(docker.errors.DockerException):
                output = self._container.logs(tail=tail if tail is not None else "all")
                parts.extend(output.decode(errors="replace").splitlines())
        if self.paths is not None:
            try:
                lines = self.paths.log.read_text(errors="replace").splitlines()
            except FileNotFoundError:
                lines = []
            parts.extend(lines[-tail:] if tail is not None else lines)
        return "\n".join(parts)

    def __repr__(self) -> str:
        listeners_ = ", ".join(f"{e.url}({e.security.value})" for e in self.endpoints)
        return f"<DovecotContainer {self.name or '-'} {listeners_ or 'not started'}>"


def _remove(client: Any, container_id: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        client.api.remove_container(container_id, force=True, v=True)


def _remove_tree(client: Any, image: str | None, root: Path) -> None:
    """Remove the shared dir; as non-root, files Dovecot made as root need a helper container."""
    shutil.rmtree(root, ignore_errors=True)
    if root.exists() and client is not None and image is not None:
        with contextlib.suppress(docker.errors.DockerException):
            client.containers.run(
                image,
                entrypoint=["rm", "-rf", os.fspath(root)],
                volumes={os.fspath(root.parent): {"bind": os.fspath(root.parent), "mode": "rw"}},
                network_mode="none",
                remove=True,
            )


def _emergency_remove(client: Any, container_id: str, root: Path) -> None:
    """Last resort if a DovecotContainer is dropped or the interpreter exits while it runs."""
    with contextlib.suppress(Exception):
        _remove(client, container_id)
    shutil.rmtree(root, ignore_errors=True)
