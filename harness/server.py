"""`MailServer`: the one object a test holds for a running set of mail listeners.

It owns the listeners, the users, the CA, the captured mail and the
transcripts, and has a sync face (an event loop in a background thread) and an
async face (the caller's own loop, for pytest-asyncio tests):

    with MailServer(MailConfig()) as server:               # sync
        smtplib.SMTP(*server.smtp.starttls.address)...
        server.wait_for_messages(1)

    async with MailServer(MailConfig()) as server:         # async
        ...
        await server.messages.wait_async(1)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from harness.certs import CertVariant, MailCA
from harness.lifecycle import LoopThread
from servers.accounts import DEFAULT_USERS, Accounts, User
from servers.errors import ConfigError, ServerStartError, choice_error
from servers.listeners import DEFAULT_HOST, Endpoint, Security, bind_loopback, require_loopback
from servers.smtp import CapturedMessage, MessageLog, SMTPServer, SMTPSettings
from servers.transcript import TranscriptLog

ALL_SECURITIES = (Security.NONE, Security.STARTTLS, Security.IMPLICIT)


@dataclass(frozen=True, slots=True, kw_only=True)
class MailConfig:
    """What to serve. Frozen; vary it with `dataclasses.replace`.

    `smtp=None` serves no SMTP at all. Strings are accepted where enums are
    expected (`cert="expired"`, `smtp_listeners=("starttls",)`), and a wrong
    one names the field and the allowed values.
    """

    host: str = DEFAULT_HOST
    users: tuple[User, ...] = DEFAULT_USERS
    cert: CertVariant = CertVariant.TRUSTED
    smtp: SMTPSettings | None = field(default_factory=SMTPSettings)
    smtp_listeners: tuple[Security, ...] = ALL_SECURITIES

    def __post_init__(self) -> None:
        require_loopback(self.host)
        object.__setattr__(self, "cert", CertVariant.parse(self.cert))
        if isinstance(self.smtp_listeners, str | Security):
            raise ConfigError(
                f"smtp_listeners={self.smtp_listeners!r}: expected a tuple of securities, "
                "e.g. ('starttls', 'implicit')"
            )
        listeners = tuple(Security.parse(s, "smtp_listeners") for s in self.smtp_listeners)
        if len(set(listeners)) != len(listeners):
            raise ConfigError(f"smtp_listeners={self.smtp_listeners!r}: each security at most once")
        object.__setattr__(self, "smtp_listeners", listeners)
        object.__setattr__(self, "users", tuple(self.users))
        if self.smtp is not None and not isinstance(self.smtp, SMTPSettings):
            raise ConfigError(f"smtp={self.smtp!r}: expected SMTPSettings or None")


@dataclass(frozen=True, slots=True)
class ProtocolEndpoints:
    """The listeners of one protocol, by security: `server.smtp.starttls.port`."""

    protocol: str
    endpoints: tuple[Endpoint, ...] = ()

    def get(self, security: Security | str) -> Endpoint:
        wanted = Security.parse(security)
        for endpoint in self.endpoints:
            if endpoint.security is wanted:
                return endpoint
        available = [e.security.value for e in self.endpoints] or ["none served"]
        raise ConfigError(
            f"{self.protocol} security={wanted.value!r}: this server has no such listener; "
            f"it has: {', '.join(available)}"
        )

    @property
    def plain(self) -> Endpoint:
        return self.get(Security.NONE)

    @property
    def starttls(self) -> Endpoint:
        return self.get(Security.STARTTLS)

    @property
    def implicit(self) -> Endpoint:
        return self.get(Security.IMPLICIT)

    def __iter__(self) -> Iterator[Endpoint]:
        return iter(self.endpoints)

    def __bool__(self) -> bool:
        return bool(self.endpoints)


class MailServer:
    """A running (or startable) set of fake mail listeners; see the module docstring."""

    def __init__(self, config: MailConfig | None = None, *, ca: MailCA | None = None) -> None:
        self.config = config or MailConfig()
        self._owns_ca = ca is None
        self.ca = ca if ca is not None else MailCA()
        self.users = Accounts.of(self.config.users)
        self.transcripts = TranscriptLog()
        self.messages = MessageLog()
        self.errors: list[str] = []
        self.smtp = ProtocolEndpoints("smtp")
        self._smtp_server: SMTPServer | None = None
        self._thread: LoopThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- async face -----------------------------------------------------------
    async def astart(self) -> MailServer:
        """Bind every listener and serve on the running loop; returns once all accept."""
        if self._loop is not None:
            raise ServerStartError("MailServer already started")
        self._loop = asyncio.get_running_loop()
        try:
            await self._serve()
        except BaseException:
            await self.astop()
            raise
        return self

    async def _serve(self) -> None:
        config = self.config
        if config.smtp is not None:
            smtp = SMTPServer(
                accounts=self.users,
                transcripts=self.transcripts,
                settings=config.smtp,
                messages=self.messages,
                errors=self.errors,
            )
            self._smtp_server = smtp
            endpoints = []
            for security in config.smtp_listeners:
                context = None if security is Security.NONE else self.ca.server_context(config.cert)
                sock = bind_loopback(config.host)
                try:
                    endpoints.append(await smtp.add_listener(sock, security, context))
                except BaseException:
                    sock.close()
                    raise
            self.smtp = ProtocolEndpoints("smtp", tuple(endpoints))

    async def astop(self) -> None:
        if self._smtp_server is not None:
            await self._smtp_server.stop()
            self._smtp_server = None
        self._loop = None
        if self._owns_ca:
            self.ca.close()

    async def areset(self) -> None:
        """Forget everything a test did: connections, mail, transcripts, errors, user changes."""
        if self._smtp_server is not None:
            self._smtp_server.close_connections()
            # Let the aborted connections finish their connection_lost callbacks.
            await asyncio.sleep(0)
        self._clear_state()

    def _clear_state(self) -> None:
        self.messages.clear()
        self.transcripts.clear()
        self.errors.clear()
        self.users.replace_all(self.config.users)

    async def __aenter__(self) -> MailServer:
        return await self.astart()

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()

    # --- sync face ------------------------------------------------------------
    def start(self) -> MailServer:
        """Start in a background loop thread; raises here if any listener fails."""
        if self._thread is not None:
            raise ServerStartError("MailServer already started")
        self._thread = LoopThread(name="mailharness-server").start()
        try:
            self._thread.run(self.astart())
        except BaseException:
            self._thread.stop()
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            thread.run(self.astop())
        finally:
            thread.stop()

    def reset(self) -> None:
        if self._thread is not None:
            self._thread.run(self.areset())
        elif self._loop is not None and self._smtp_server is not None:
            self._smtp_server.close_connections()
            self._clear_state()
        else:
            self._clear_state()

    def __enter__(self) -> MailServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests read ------------------------------------------------------
    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Block until `count` messages were accepted; TimeoutError says what did arrive."""
        return self.messages.wait(count, timeout)

    def endpoints(self) -> list[Endpoint]:
        return list(self.smtp)

    def describe(self) -> dict[str, Any]:
        """The facts a person or a script needs to connect (the `serve --json` object)."""
        return {
            "endpoints": [e.as_dict() for e in self.endpoints()],
            "users": [
                {
                    "address": u.address,
                    "login": u.login,
                    "password": u.password,
                    "app_password": u.app_password,
                    "oauth_token": u.oauth_token,
                }
                for u in self.users
            ],
            "ca_path": os.fspath(self.ca.ca_path),
            "cert": self.config.cert.value,
        }

    def __repr__(self) -> str:
        listeners = ", ".join(f"{e.url}({e.security.value})" for e in self.endpoints())
        return f"<MailServer {listeners or 'not started'}>"


def parse_security_list(value: object, field_name: str) -> tuple[Security, ...]:
    """Accept 'starttls,implicit' or a sequence; used by the CLI and config files."""
    if isinstance(value, str):
        items: list[str] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list | tuple):
        items = [str(v) for v in value]
    else:
        raise choice_error(field_name, value, [s.value for s in Security])
    return tuple(Security.parse(v, field_name) for v in items)
