"""Find a Docker engine that answers, or start a private one (root only).

    info = ensure_engine()
    client = info.client()

Order of preference: `DOCKER_HOST`, then the machine's `/var/run/docker.sock`,
then mailharness's own private engine. When none answers and we are root,
`ensure_engine` starts that private engine the way ENVIRONMENT.md says:

    dockerd --bridge=none --iptables=false --ip-masq=false
            --data-root /var/lib/mailharness/docker      (image cache: survives)
            --exec-root /run/mailharness-docker/exec
            -H unix:///run/mailharness-docker/docker.sock
            --pidfile /run/mailharness-docker/dockerd.pid

`--bridge=none` means no docker0 bridge and no container on a private-range
address: containers use the host's network and listen on 127.0.0.1 only.

**The private engine is a machine service**: started once (by the first test
session, or `scripts/docker-engine start`), then left running for every later
session, as a system Docker would be. `scripts/docker-engine stop` stops it
(`stop_engine()` here). Two pytest-xdist workers calling `ensure_engine` at
the same moment serialise on an `fcntl.flock` so only one dockerd is started.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
from mailharness.servers.errors import ServerStartError

ENGINE_DIR = Path("/run/mailharness-docker")
DATA_ROOT = Path("/var/lib/mailharness/docker")
EXEC_ROOT = ENGINE_DIR / "exec"
SOCKET = ENGINE_DIR / "docker.sock"
PIDFILE = ENGINE_DIR / "dockerd.pid"
LOG = ENGINE_DIR / "dockerd.log"
LOCK = ENGINE_DIR / "lock"
PRIVATE_HOST = f"unix://{SOCKET}"
SYSTEM_HOST = "unix:///var/run/docker.sock"
# dockerd is ready in a few seconds here (ENVIRONMENT.md); a loaded CI machine gets slack.
DEFAULT_START_TIMEOUT = 60.0
# dockerd stops its containers (none should run) and containerd; it rarely needs long.
STOP_TIMEOUT = 30.0
# A ping that has not answered by then is not an engine we want to wait for.
PING_TIMEOUT = 5.0
# How often readiness is checked while dockerd starts: cheap (a local unix socket).
POLL_INTERVAL = 0.05
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/sbin"]
)


class EngineUnavailable(ServerStartError):
    """No Docker engine answers and none can be started; the message says what to do."""


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """An engine that answered a ping: where it is and whether it is ours."""

    docker_host: str  # what DOCKER_HOST should be to reach it
    private: bool  # mailharness's own dockerd (vs. DOCKER_HOST or the system socket)
    started: bool  # this call started it
    version: str  # the engine's version, e.g. "20.10.24+dfsg1"
    start_seconds: float = 0.0  # how long starting took, when `started`

    def client(self, *, timeout: float = 120.0) -> Any:
        """A `docker.DockerClient` for this engine (the SDK is untyped)."""
        return docker.DockerClient(base_url=self.docker_host, timeout=timeout)


def _ping(base_url: str) -> str | None:
    """The engine's version if it answers at `base_url`, else None."""
    if base_url.startswith("unix://") and not Path(base_url.removeprefix("unix://")).exists():
        return None
    try:
        client = docker.DockerClient(base_url=base_url, timeout=PING_TIMEOUT)
    except docker.errors.DockerException:
        return None
    try:
        client.ping()
        version = client.version().get("Version", "?")
    except (docker.errors.DockerException, OSError, ValueError):
        return None
    finally:
        client.close()
    return str(version)


def find_engine() -> EngineInfo | None:
    """An engine that answers right now, without starting anything."""
    env_host = os.environ.get("DOCKER_HOST")
    candidates = [(env_host, False)] if env_host else []
    candidates += [(SYSTEM_HOST, False), (PRIVATE_HOST, True)]
    for host, private in candidates:
        assert host is not None
        version = _ping(host)
        if version is not None:
            return EngineInfo(host, private=private, started=False, version=version)
    return None


@contextlib.contextmanager
def engine_lock(name: str = LOCK.name) -> Iterator[None]:
    """Serialise engine start/stop (or, by another `name`, image builds) across processes."""
    ENGINE_DIR.mkdir(mode=0o711, parents=True, exist_ok=True)
    fd = os.open(ENGINE_DIR / name, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def dockerd_command(dockerd: str) -> list[str]:
    """The private engine's command line (see the module docstring)."""
    return [
        dockerd,
        "--bridge=none",
        "--iptables=false",
        "--ip-masq=false",
        f"--data-root={DATA_ROOT}",
        f"--exec-root={EXEC_ROOT}",
        f"-H={PRIVATE_HOST}",
        f"--pidfile={PIDFILE}",
    ]


def ensure_engine(*, timeout: float = DEFAULT_START_TIMEOUT) -> EngineInfo:
    """An engine that answers: an existing one, or our private dockerd, started now."""
    found = find_engine()
    if found is not None:
        return found
    dockerd = shutil.which("dockerd", path=_SEARCH_PATH)
    if dockerd is None:
        raise EngineUnavailable(
            "no Docker engine answers (DOCKER_HOST, /var/run/docker.sock) and dockerd is "
            "not installed: `apt-get install -y docker.io`"
        )
    if os.geteuid() != 0:
        raise EngineUnavailable(
            "no Docker engine answers (DOCKER_HOST, /var/run/docker.sock) and only root can "
            "start one: run `sudo scripts/docker-engine start`, or set DOCKER_HOST"
        )
    with engine_lock():
        # Another worker may have started it while we waited for the lock.
        version = _ping(PRIVATE_HOST)
        if version is not None:
            return EngineInfo(PRIVATE_HOST, private=True, started=False, version=version)
        return _start_private(dockerd, timeout)


def _start_private(dockerd: str, timeout: float) -> EngineInfo:
    _remove_stale()
    DATA_ROOT.mkdir(mode=0o711, parents=True, exist_ok=True)
    EXEC_ROOT.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = time.monotonic()
    with open(LOG, "ab") as log:
        # `setsid -f` double-forks: dockerd is not our child, so it outlives this process
        # (it is a machine service) and never becomes a zombie of the test session.
        subprocess.run(
            [
                shutil.which("setsid", path=_SEARCH_PATH) or "setsid",
                "-f",
                *dockerd_command(dockerd),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            check=True,
            timeout=30,
        )
    deadline = started + timeout
    while True:
        version = _ping(PRIVATE_HOST)
        if version is not None:
            return EngineInfo(
                PRIVATE_HOST,
                private=True,
                started=True,
                version=version,
                start_seconds=time.monotonic() - started,
            )
        pid = engine_pid()
        exited = PIDFILE.exists() and pid is None
        if exited or time.monotonic() > deadline:
            what = "exited" if exited else f"did not answer within {timeout:.0f}s"
            raise EngineUnavailable(f"dockerd {what}; its log ({LOG}) ends:\n{log_tail()}")
        time.sleep(POLL_INTERVAL)


def _remove_stale() -> None:
    """A socket or pidfile left by a dockerd that died would make the next one refuse."""
    if engine_pid() is None:
        for path in (SOCKET, PIDFILE):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def engine_pid() -> int | None:
    """Pid of our private dockerd if it is alive."""
    try:
        pid = int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent has not reaped it


def log_tail(lines: int = 20) -> str:
    try:
        return "\n".join(LOG.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_engine(*, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop our private dockerd (never a system one). True if one was running."""
    with engine_lock():
        pid = engine_pid()
        if pid is None:
            _remove_stale()
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(POLL_INTERVAL)
        _remove_stale()
        return True


def status() -> str:
    """One line for `scripts/docker-engine status`."""
    found = find_engine()
    if found is None:
        return "no Docker engine answers (DOCKER_HOST, /var/run/docker.sock, private)"
    owner = "private mailharness engine" if found.private else "existing engine"
    pid = f", pid {engine_pid()}" if found.private else ""
    return f"{owner} at {found.docker_host}: Docker {found.version}{pid}"


def main(argv: list[str] | None = None) -> int:
    """`scripts/docker-engine start|stop|status|env|build-image`."""
    import argparse
    import logging
    import sys

    parser = argparse.ArgumentParser(prog="scripts/docker-engine", description=main.__doc__)
    parser.add_argument("command", choices=["start", "stop", "status", "env", "build-image"])
    args = parser.parse_args(argv)
    try:
        if args.command == "stop":
            print("stopped" if stop_engine() else "no private engine was running")
            return 0
        if args.command == "status":
            print(status())
            return 0 if find_engine() is not None else 3
        info = ensure_engine()
        if args.command == "start":
            how = f"started in {info.start_seconds:.1f} s" if info.started else "already running"
            print(f"{info.docker_host}: Docker {info.version}, {how}")
        elif args.command == "env":
            print(f"export DOCKER_HOST={info.docker_host}")
        else:
            from mailharness.servers.dovecot.image import LOCAL_TAG, ensure_image

            logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
            print(f"{ensure_image(info.client())} (also tagged {LOCAL_TAG})")
    except ServerStartError as exc:
        print(f"docker-engine {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
