"""The fake SMTP server's listeners and what its sessions share (accounts, mail, limits).

Each connection is a session of aiosmtpd's engine with our handler (session.py);
that module, with aiosmtpd and attrs beneath it (~20 ms), is imported by the first
connection, so a server that never meets an SMTP client never pays for it (issue 13).
Listeners are sockets we bound ourselves, served on the caller's running event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailharness.servers.accounts import Accounts
from mailharness.servers.errors import ConfigError
from mailharness.servers.listeners import Endpoint, Listeners, Security, default_connection_cap
from mailharness.servers.ratelimit import TokenBuckets
from mailharness.servers.smtp.capture import MessageLog
from mailharness.servers.smtp.replies import SMTPReplies
from mailharness.servers.smtp.settings import (  # noqa: F401 (re-exported)
    AUTH_MECHANISMS,
    DEFAULT_MAX_RECIPIENTS,
    DEFAULT_SIZE_LIMIT,
    DEFAULT_TIMEOUT,
    SMTPSettings,
)
from mailharness.servers.transcript import TranscriptLog

if TYPE_CHECKING:
    from mailharness.servers.smtp.session import _Handler, _HarnessSMTP


@dataclass(eq=False)
class SMTPServer:
    """All SMTP listeners of one running mail server, sharing accounts and captured mail.

    `settings` may be replaced at run time (a scenario switch): new connections
    see the new settings at once, open ones from their next command.
    """

    accounts: Accounts
    transcripts: TranscriptLog
    settings: SMTPSettings = field(default_factory=SMTPSettings)
    messages: MessageLog = field(default_factory=MessageLog)
    # Local delivery (into the IMAP store) for each recipient, when IMAP is served too.
    deliver: Callable[[str, bytes], None] | None = None
    # Is this recipient a local user whose mailbox is over quota?
    recipient_full: Callable[[str], bool] | None = None
    # Faults of ours (a handler exception): these fail a test.
    errors: list[str] = field(default_factory=list)
    # What a client did or a scenario provoked (a refused handshake): shown, fail nothing.
    client_errors: list[str] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)
    connections: set[_HarnessSMTP] = field(default_factory=set)
    per_ip: Counter[str] = field(default_factory=Counter)
    send_buckets: TokenBuckets = field(default_factory=TokenBuckets)
    clock: Callable[[], float] = time.monotonic
    maintenance: bool = False
    _listeners: Listeners = field(default_factory=Listeners)
    _handler: _Handler | None = field(default=None, init=False, repr=False)
    _replies: tuple[SMTPSettings, SMTPReplies] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._default_cap = default_connection_cap()

    @property
    def handler(self) -> _Handler:
        """The aiosmtpd hooks every session shares (made with the first session)."""
        if self._handler is None:
            from mailharness.servers.smtp.session import _Handler

            self._handler = _Handler(self)
        return self._handler

    @property
    def replies(self) -> SMTPReplies:
        """The texts in force (`SMTPSettings.texts`: custom, else the personality's),
        looked up again only when the settings are replaced."""
        settings = self.settings
        cached = self._replies
        if cached is None or cached[0] is not settings:
            cached = self._replies = (settings, settings.texts)
        return cached[1]

    def reply(self, text: str, **values: str) -> str:
        """Fill a reply template's `{hostname}`, `{id}` and any given `values`."""
        # `secrets.token_hex(6)` is this; secrets imports random, which serve's start skips.
        return text.format(hostname=self.settings.hostname, id=os.urandom(6).hex(), **values)

    def greeting_refusal_for(self, ip: str) -> str | None:
        """What to greet a new connection from `ip` with instead of 220, if anything."""
        settings = self.settings
        if self.maintenance:
            return self.replies.maintenance
        if settings.greeting_refusal is not None:
            return self.reply(settings.greeting_refusal, ip=ip)
        cap = settings.max_connections_per_ip
        if cap is not None and self.per_ip[ip] > cap:
            return self.reply(self.replies.too_many_connections, ip=ip)
        total = settings.max_connections
        if len(self.connections) > (total if total is not None else self._default_cap):
            return self.reply(self.replies.too_many_connections, ip=ip)
        networks = settings.allowed_networks
        if (
            networks is not None
            and settings.reject_unlisted_at == "greeting"
            and not _in_networks(ip, networks)
        ):
            return self.replies.client_rejected.format(ip=ip)
        return None

    async def add_listener(
        self,
        sock: socket.socket,
        security: Security,
        ssl_context: ssl.SSLContext | None,
        *,
        tls_terminated: bool = False,
    ) -> Endpoint:
        """Serve SMTP on an already-listening socket; returns once it accepts connections.

        `tls_terminated`: a plain listener only a TLS-ending front talks to, so its
        clients count as secure (as behind a TLS proxy in Dovecot's trusted networks).
        """
        if security is not Security.NONE and ssl_context is None:
            raise ConfigError(f"security={security.value!r} needs an ssl_context")
        host, port = sock.getsockname()[:2]
        endpoint = Endpoint("smtp", host, port, security)
        loop = asyncio.get_running_loop()

        def factory() -> _HarnessSMTP:
            # aiosmtpd is imported here, by the first connection: not before the greeting.
            from mailharness.servers.smtp.session import _HarnessSMTP

            settings = self.settings
            excluded = [m for m in AUTH_MECHANISMS if m not in settings.auth_mechanisms]
            return _HarnessSMTP(
                self,
                endpoint,
                tls_terminated=tls_terminated,
                hostname=settings.hostname,
                ident=self.reply(self.replies.banner, date=_exchange_date()),
                tls_context=ssl_context if security is Security.STARTTLS else None,
                # Dovecot's way (before_starttls None) is done in the hooks instead.
                require_starttls=settings.starttls_required
                and self.replies.before_starttls is not None,
                data_size_limit=settings.size_limit,
                timeout=settings.timeout,
                auth_required=settings.auth_required,
                auth_require_tls=False,
                auth_exclude_mechanism=excluded,
                authenticator=self.handler.authenticate,
                loop=loop,
            )

        await self._listeners.serve(
            sock, factory, ssl_context if security is Security.IMPLICIT else None
        )
        self.endpoints.append(endpoint)
        return endpoint

    def announce_shutdown(self) -> None:
        """`421 4.3.2 Shutting down` to every open session, then close them."""
        for connection in list(self.connections):
            connection.close_with(self.replies.shutting_down)

    def transports(self) -> list[asyncio.BaseTransport | None]:
        """The open connections' transports (for settling before a verdict)."""
        return [connection.transport for connection in self.connections]

    def close_connections(self) -> None:
        """Drop every open client connection (per-test reset of a shared server)."""
        for connection in list(self.connections):
            connection.abort()
        self.connections.clear()
        self.send_buckets.clear()

    async def stop(self) -> None:
        await self._listeners.close()
        self.close_connections()
        await self._listeners.stop()


def _exchange_date() -> str:
    """Now as Exchange's banner words it: ``Tue, 1 Sep 2020 17:02:13 +0200``."""
    now = dt.datetime.now().astimezone()
    return f"{now:%a}, {now.day} {now:%b %Y %H:%M:%S %z}"


def _in_networks(ip: str, networks: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)
