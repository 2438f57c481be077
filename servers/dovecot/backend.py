"""What every Dovecot backend offers: a native process or a Docker container.

Code that needs "a real Dovecot" takes a `DovecotBackend` and does not care
which one it got:

    def seed(dovecot: DovecotBackend) -> None:
        dovecot.deliver("alice@example.test", b"Subject: hi\\r\\n\\r\\nhello\\r\\n")
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from mailharness.servers.accounts import User
from mailharness.servers.dovecot.config import DovecotConfig, Quota
from mailharness.servers.listeners import Endpoint, Security

if TYPE_CHECKING:
    from mailharness.servers.dovecot.container import DovecotContainer
    from mailharness.servers.dovecot.process import DovecotProcess


class DovecotBackend(Protocol):
    """The shared API of `DovecotProcess` and `DovecotContainer`."""

    config: DovecotConfig
    endpoints: tuple[Endpoint, ...]
    greeting: bytes
    startup_seconds: float

    def start(self) -> Self: ...

    def stop(self) -> None: ...

    def endpoint(self, security: Security | str, protocol: str = ...) -> Endpoint: ...

    @property
    def users(self) -> list[User]: ...

    def add_user(self, user: User) -> User: ...

    def set_user(self, user: User, *, flush: bool = ...) -> User: ...

    def remove_user(self, login: str, *, flush: bool = ...) -> None: ...

    def reset_users(self, users: Iterable[User]) -> None: ...

    def set_passdb_failing(self, failing: bool) -> None: ...

    def set_quota(
        self, login: str, storage_bytes: int | None = ..., messages: int | None = ...
    ) -> None: ...

    def quota(self, login: str) -> Quota | None: ...

    def usage(self, login: str) -> tuple[int, int]: ...

    def folder(self, login: str, mailbox: str = ...) -> Path: ...

    def wipe_mail(self) -> None: ...

    def close_sessions(self) -> int: ...

    def flush_auth(self) -> None: ...

    def service_pids(self, services: Iterable[str]) -> list[int]: ...

    def deliver(
        self, login: str, raw: bytes | str, *, mailbox: str = ..., flags: Iterable[str] = ...
    ) -> Path: ...

    def deliver_many(
        self,
        login: str,
        messages: Iterable[bytes | str],
        *,
        mailbox: str = ...,
        flags: Iterable[str] = ...,
    ) -> list[Path]: ...

    def doveadm(
        self, *args: str, check: bool = ..., timeout: float = ...
    ) -> subprocess.CompletedProcess[str]: ...

    def log_text(self, tail: int | None = ...) -> str: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


if TYPE_CHECKING:
    # mypy proves both backends satisfy the protocol.
    def _both_are_backends(
        process: DovecotProcess, container: DovecotContainer
    ) -> tuple[DovecotBackend, DovecotBackend]:
        return process, container
