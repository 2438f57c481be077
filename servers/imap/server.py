"""The asyncio shell around the sans-IO IMAP core.

One :class:`asyncio.Protocol` per connection (no streams: they cost a task
and a copy per read). It feeds bytes to :class:`IMAPConnection`, runs each
command's :class:`Session` generator while the transport accepts data
(``pause_writing``/``resume_writing``), waits on timers for the failure
delay, and upgrades with the public ``loop.start_tls``.

    server = IMAPServer(accounts=accounts, store=store, transcripts=TranscriptLog())
    endpoint = await server.add_listener(bind_loopback(), Security.STARTTLS, ssl_ctx)
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from typing import cast

from servers.accounts import Accounts
from servers.errors import ConfigError
from servers.imap.commands import Delay, Disconnect, Output, ReadLine, StartTLS
from servers.imap.protocol import (
    NEED_DATA,
    BadInput,
    ClientLine,
    Command,
    ContinuationRequest,
    IMAPConnection,
)
from servers.imap.responses import Continuation, Status, UntaggedStatus
from servers.imap.session import Session
from servers.imap.settings import IMAPSettings
from servers.imap.store import MailStore
from servers.listeners import Endpoint, Security
from servers.transcript import Transcript, TranscriptLog

__all__ = ["IMAPServer"]

#: Transport buffer limits: large enough that a big FETCH streams at full
#: speed, small enough that a slow reader holds at most a few MiB of ours.
WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_LOW_WATER = 1024 * 1024
#: Pipelined input kept while a command runs before we stop reading.
MAX_PENDING_INPUT = 1024 * 1024
#: Transcript entries show this much of a large server write.
TRANSCRIPT_PREVIEW = 200


class IMAPServer:
    """Our IMAP server: listeners, open connections, and recorded errors."""

    def __init__(
        self,
        *,
        accounts: Accounts,
        store: MailStore,
        transcripts: TranscriptLog,
        settings: IMAPSettings | None = None,
    ) -> None:
        self.accounts = accounts
        self.store = store
        self.transcripts = transcripts
        self.settings = settings if settings is not None else IMAPSettings()
        #: Client protocol violations and server exceptions, for the fixture to report.
        self.errors: list[str] = []
        self._errors_lock = threading.Lock()
        self._servers: list[asyncio.Server] = []
        self._connections: set[_Connection] = set()

    def record_error(self, text: str) -> None:
        with self._errors_lock:
            self.errors.append(text)

    async def add_listener(
        self, sock: socket.socket, security: Security, ssl_context: ssl.SSLContext | None = None
    ) -> Endpoint:
        """Serve on an already listening socket (see ``bind_loopback``)."""
        security = Security.parse(security)
        if security is not Security.NONE and ssl_context is None:
            raise ConfigError(
                f"ssl_context=None: security={security.value!r} needs an ssl.SSLContext"
            )
        host, port = sock.getsockname()[:2]
        endpoint = Endpoint("imap", host, port, security)
        loop = asyncio.get_running_loop()
        listener = f"{host}:{port} ({security.value})"

        def factory() -> asyncio.Protocol:
            return _Connection(self, security, ssl_context, listener)

        server = await loop.create_server(
            factory,
            sock=sock,
            ssl=ssl_context if security is Security.IMPLICIT else None,
        )
        self._servers.append(server)
        return endpoint

    async def close_sessions(self) -> None:
        """Abort every open connection (per-test reset); listeners stay up."""
        for conn in list(self._connections):
            conn.abort()
        await asyncio.sleep(0)

    async def stop(self) -> None:
        """Stop listening, say ``* BYE Server shutting down.`` to every client, close."""
        for server in self._servers:
            server.close()
        for conn in list(self._connections):
            conn.shutdown()
        await self.close_sessions()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    @property
    def connections(self) -> int:
        return len(self._connections)


class _Connection(asyncio.Protocol):
    def __init__(
        self,
        server: IMAPServer,
        security: Security,
        ssl_context: ssl.SSLContext | None,
        listener: str,
    ) -> None:
        self.server = server
        self.settings = server.settings
        self.security = security
        self.ssl_context = ssl_context
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.transcript: Transcript | None = None
        self.conn = self._new_parser()
        self.session: Session | None = None
        self.gen: Output | None = None
        self.send_value: bytes | None = None
        self.want_line = False
        self.paused = False
        self.blocked = False
        self.reading_paused = False
        self.closed = False
        self.change_pending = False
        self.last_activity = self.loop.time()
        self.idle_handle: asyncio.TimerHandle | None = None

    def _new_parser(self) -> IMAPConnection:
        return IMAPConnection(
            max_line=self.settings.max_line_bytes, max_literal=self.settings.max_literal_bytes
        )

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.transcript = self.server.transcripts.open(
            "imap", f"{peer[0]}:{peer[1]}", self.listener
        )
        if self.security is Security.IMPLICIT:
            self.transcript.event("TLS (implicit)")
        self.session = Session(
            accounts=self.server.accounts,
            store=self.server.store,
            settings=self.settings,
            secure=self.security is Security.IMPLICIT,
            starttls_available=self.security is Security.STARTTLS,
            record_error=self.server.record_error,
            peer=str(peer[0]),
        )
        self.session.on_mailbox_change = self._change_from_any_thread
        self.server._connections.add(self)
        self._write(self.session.greeting())
        self.idle_handle = self.loop.call_later(self.settings.idle_timeout, self._idle_check)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        self.conn.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        self._finish("client closed")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost: {exc!r}" if exc else "closed")

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._process()

    # -- the engine --------------------------------------------------------------------

    def _process(self) -> None:
        """Run the current command, then parse and start the next, until we must wait."""
        session = self.session
        if session is None:
            return
        try:
            while not self.closed and not self.paused and not self.blocked:
                if self.gen is not None and not self.want_line:
                    self._step()
                    continue
                event = self.conn.next_event()
                if event is NEED_DATA:
                    if self.reading_paused and self.transport is not None:
                        self.reading_paused = False
                        self.transport.resume_reading()
                    return
                if isinstance(event, ClientLine):
                    if self.want_line:
                        self._log_client_line(event.text, session)
                        self.want_line = False
                        self.send_value = event.text
                    continue
                if self.gen is not None and isinstance(event, BadInput):
                    # The bare line we waited for was unusable (too long): the
                    # handler sees None, as for a cancelled exchange, and answers.
                    self.server.record_error(f"client protocol error: {event.reason}")
                    self.want_line = False
                    self.send_value = None
                    continue
                if self.gen is not None:
                    return  # pragma: no cover - in line mode every event is a ClientLine
                if isinstance(event, Command):
                    self._log_command(event)
                    self.gen = session.handle(event)
                elif isinstance(event, ContinuationRequest):
                    refusal = session.refuse_literal(event)
                    if refusal is not None:
                        self.conn.reject_literal()
                        self._write(refusal)
                    else:
                        ok = self.settings.replies.literal_continuation
                        self._write(Continuation(ok).to_bytes())
                elif isinstance(event, BadInput):
                    self.server.record_error(
                        f"client protocol error: {event.reason} (tag={event.tag!r})"
                    )
                    self._write(session.bad_input(event))
                    if event.fatal:
                        self._close()
            if (
                self.gen is not None
                and self.conn.buffered > MAX_PENDING_INPUT
                and not self.reading_paused
                and self.transport is not None
            ):
                self.reading_paused = True
                self.transport.pause_reading()
        except Exception as exc:  # a bug of ours: keep the server up, tell the client
            self.server.record_error(f"server exception: {exc!r}")
            self.gen = None
            bug = self.settings.replies.server_bug
            self._write(UntaggedStatus(Status.BAD, bug.text, bug.code).to_bytes())

    def _step(self) -> None:
        assert self.gen is not None
        value, self.send_value = self.send_value, None
        try:
            item = self.gen.send(value)
        except StopIteration:
            self.gen = None
            if self.session is not None and self.session.state.value == "logout":
                self._close()
            return
        if isinstance(item, bytes):
            if item:
                self._write(item)
        elif isinstance(item, ReadLine):
            self.want_line = True
            self.conn.expect_line()
        elif isinstance(item, Delay):
            self.blocked = True
            self.loop.call_later(item.seconds, self._unblock)
        elif isinstance(item, StartTLS):
            self.blocked = True
            # Anything pipelined after STARTTLS came in the clear: drop it (CVE-2011-0411).
            self.conn = self._new_parser()
            self.loop.create_task(self._start_tls())
        elif isinstance(item, Disconnect):
            self._close()

    def _unblock(self) -> None:
        self.blocked = False
        self._process()

    async def _start_tls(self) -> None:
        assert self.transport is not None and self.ssl_context is not None
        try:
            transport = await self.loop.start_tls(
                self.transport, self, self.ssl_context, server_side=True
            )
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            if self.transcript is not None:
                self.transcript.event(f"STARTTLS handshake failed: {exc!r}")
            self._close()
            return
        if transport is None:
            self._close()
            return
        self.transport = transport
        if self.transcript is not None:
            self.transcript.event("TLS (STARTTLS)")
        self.blocked = False
        self._process()

    # -- mailbox notifications and timers -----------------------------------------------

    def _change_from_any_thread(self) -> None:
        if self.change_pending or self.closed:
            return
        self.change_pending = True
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self.loop.call_soon_threadsafe(self._mailbox_changed)

    def _mailbox_changed(self) -> None:
        self.change_pending = False
        session = self.session
        if session is None or self.closed or not session.idling:
            return
        data = session.idle_updates()
        if data:
            self._write(data)
        if session.state.value == "logout":
            self._close()

    def _idle_check(self) -> None:
        if self.closed:
            return
        remaining = self.last_activity + self.settings.idle_timeout - self.loop.time()
        if remaining > 0:
            self.idle_handle = self.loop.call_later(remaining, self._idle_check)
            return
        text = self.settings.replies.bye_idle_timeout
        self._write(UntaggedStatus(Status.BYE, text).to_bytes())
        self._close()

    # -- output and teardown --------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        if self.transcript is not None:
            if len(data) <= 4096:
                for line in data.split(b"\r\n")[:-1] or [data]:
                    self.transcript.server(line)
            else:
                self.transcript.server(data[:TRANSCRIPT_PREVIEW] + b"... [%d bytes]" % len(data))
        self.transport.write(data)

    def _log_command(self, cmd: Command) -> None:
        if self.transcript is None:
            return
        if cmd.name == "LOGIN":
            self.transcript.client_masked(f"{cmd.tag} LOGIN ")
        elif cmd.name == "AUTHENTICATE" and len(cmd.args) > 1:
            mech = cmd.args[0] if isinstance(cmd.args[0], str) else "?"
            self.transcript.client_masked(f"{cmd.tag} AUTHENTICATE {mech} ")
        else:
            self.transcript.client(cmd.transcript)

    def _log_client_line(self, line: bytes, session: Session) -> None:
        if self.transcript is None:
            return
        if session.in_auth and line.strip() not in (b"", b"*"):
            self.transcript.client_masked()
        else:
            self.transcript.client(line)

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self._finish("server closed")

    def shutdown(self) -> None:
        text = self.settings.replies.bye_shutdown
        self._write(UntaggedStatus(Status.BYE, text).to_bytes())
        self._close()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self._finish("aborted by the harness")

    def _finish(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.gen = None
        if self.idle_handle is not None:
            self.idle_handle.cancel()
        if self.transcript is not None:
            self.transcript.event(why)
        if self.session is not None:
            self.session.shutdown()
        self.server._connections.discard(self)
