"""The asyncio shell around the sans-IO IMAP core.

One :class:`asyncio.Protocol` per connection (no streams: they cost a task
and a copy per read). It feeds bytes to :class:`IMAPConnection`, runs each
command's :class:`Session` generator while the transport accepts data
(``pause_writing``/``resume_writing``), waits on timers for the failure
delay, and upgrades with the public ``loop.start_tls``.

    server = IMAPServer(accounts=accounts, store=store, transcripts=TranscriptLog())
    endpoint = await server.add_listener(bind_loopback(), Security.STARTTLS, ssl_ctx)

Scenario switches a test may flip from its own thread while the server runs:
``server.settings = replace(server.settings, ...)`` (new connections at once,
open ones from their next command), ``server.maintenance = True`` (new
connections are greeted with BYE) and ``server.announce_shutdown_threadsafe()``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import enum
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable
from typing import cast

from mailharness.servers.accounts import Accounts
from mailharness.servers.errors import ConfigError, forget_traceback
from mailharness.servers.imap import parser_limits
from mailharness.servers.imap.commands import Delay, Disconnect, Output, ReadLine, StartTLS
from mailharness.servers.imap.protocol import (
    NEED_DATA,
    BadInput,
    ClientLine,
    Command,
    ContinuationRequest,
    IMAPConnection,
    Token,
)
from mailharness.servers.imap.responses import Continuation, Status, UntaggedStatus
from mailharness.servers.imap.session import Session, cached_greeting
from mailharness.servers.imap.settings import IMAPSettings
from mailharness.servers.imap.states import State
from mailharness.servers.imap.store import MailStore
from mailharness.servers.listeners import Endpoint, Listeners, Security, default_connection_cap
from mailharness.servers.transcript import Transcript, TranscriptLog, tls_version_of

__all__ = ["IMAPServer"]

#: Transport buffer limits: large enough that a big FETCH streams at full
#: speed, small enough that a slow reader holds at most a few MiB of ours.
WRITE_HIGH_WATER = 4 * 1024 * 1024
WRITE_LOW_WATER = 1024 * 1024
#: Pipelined input kept while a command runs before we stop reading.
MAX_PENDING_INPUT = 1024 * 1024
#: Transcript entries show this much of a large server write.
TRANSCRIPT_PREVIEW = 200
# Output gathered while the engine runs goes out at the latest past this many bytes.
FLUSH_BYTES = 64 * 1024
#: An IDLE client hears of a change this long after the first one, all changes since
#: coalesced, as Dovecot's mailbox watch does (NOTIFY_DELAY_MSECS = 500): a flag
#: change followed at once by its EXPUNGE reaches the client as the EXPUNGE alone.
IDLE_NOTIFY_DELAY = 0.5


class _Admission(enum.Enum):
    """What a new connection gets before any greeting."""

    GREET = "greet"
    DENY = "deny"  # tcpwrap: closed without a word
    MAINTENANCE = "maintenance"  # * BYE [UNAVAILABLE] Server down for maintenance
    QUEUE_FULL = "queue-full"  # * BYE Connection queue full
    QUEUE = "queue"  # held ungreeted until a slot frees


class IMAPServer:
    """Our IMAP server: listeners, open connections, and recorded errors.

    ``settings`` may be replaced at run time, from any thread (a scenario
    switch): new connections see the new settings at once, open ones from their
    next command; the idle timeout and ``max_connections`` apply to open ones
    at once. ``maintenance`` greets new connections with
    ``* BYE [UNAVAILABLE] Server down for maintenance`` while it is true.
    """

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
        self._settings = _check_settings(settings if settings is not None else IMAPSettings())
        #: Run-time switch, as ``settings.maintenance``: new connections get BYE [UNAVAILABLE].
        self.maintenance = False
        #: Faults of ours (a handler exception): the fixture fails the test with them.
        self.errors: list[str] = []
        #: What a client got wrong (protocol violations, BAD answers): shown, fail nothing.
        self.client_errors: list[str] = []
        self._errors_lock = threading.Lock()
        self._listeners = Listeners()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: set[_Connection] = set()
        self._greeted = 0  # connections counted against max_connections
        self._default_cap = default_connection_cap()
        self._queue: deque[_Connection] = deque()

    @property
    def settings(self) -> IMAPSettings:
        return self._settings

    @settings.setter
    def settings(self, value: IMAPSettings) -> None:
        self._settings = _check_settings(value)
        self._on_loop(self._settings_changed)

    def record_error(self, text: str) -> None:
        """A fault of ours: fails the test that met it."""
        with self._errors_lock:
            self.errors.append(text)

    def record_client_error(self, text: str) -> None:
        """A client's mistake (or one a scenario provoked): reported, fails nothing."""
        with self._errors_lock:
            self.client_errors.append(text)

    def _on_loop(self, func: Callable[[], None]) -> None:
        """Run ``func`` on the server's loop: now if called there, else soon."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            func()
        else:
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(func)

    def _settings_changed(self) -> None:
        for conn in list(self._connections):
            conn.recheck_idle()
        self._admit_queued()

    async def add_listener(
        self,
        sock: socket.socket,
        security: Security,
        ssl_context: ssl.SSLContext | None = None,
        *,
        tls_terminated: bool = False,
    ) -> Endpoint:
        """Serve on an already listening socket (see ``bind_loopback``).

        ``tls_terminated``: a plain listener only a TLS-ending front talks to, so its
        sessions count as secure (as behind a TLS proxy in Dovecot's trusted networks).
        """
        security = Security.parse(security)
        if security is not Security.NONE and ssl_context is None:
            raise ConfigError(
                f"ssl_context=None: security={security.value!r} needs an ssl.SSLContext"
            )
        host, port = sock.getsockname()[:2]
        endpoint = Endpoint("imap", host, port, security)
        loop = asyncio.get_running_loop()
        self._loop = loop
        listener = f"{host}:{port} ({security.value})"

        def factory() -> asyncio.Protocol:
            return _Connection(self, security, ssl_context, listener, tls_terminated)

        tls = ssl_context if security is Security.IMPLICIT else None
        await self._listeners.serve(sock, factory, tls)
        return endpoint

    def transports(self) -> list[asyncio.Transport | None]:
        """The open connections' transports (for settling before a verdict)."""
        return [conn.transport for conn in self._connections]

    async def close_sessions(self) -> None:
        """Abort every open connection (per-test reset); listeners stay up."""
        for conn in list(self._connections):
            conn.abort()
        self._queue.clear()
        await asyncio.sleep(0)

    async def announce_shutdown(self) -> None:
        """``* BYE Server shutting down.`` to every open session, then close them.

        Listeners stay up (a restarting server's next process answers): this is
        the ``shutdown-mid-session`` scenario. A client learns of it on its next
        command (imaplib raises ``IMAP4.abort``).
        """
        self._queue.clear()  # queued clients are closed ungreeted, not let in now
        for conn in list(self._connections):
            conn.shutdown()
        await asyncio.sleep(0)

    def announce_shutdown_threadsafe(self) -> concurrent.futures.Future[None]:
        """:meth:`announce_shutdown` from any thread (a synchronous test).

        Returns a future: ``.result(timeout)`` waits until every BYE is queued
        for sending and every connection is closing.

        >>> server.announce_shutdown_threadsafe().result(5)  # doctest: +SKIP
        """
        if self._loop is None:
            raise RuntimeError("announce_shutdown_threadsafe: the server has no listener yet")
        return asyncio.run_coroutine_threadsafe(self.announce_shutdown(), self._loop)

    async def stop(self) -> None:
        """Stop listening, say ``* BYE Server shutting down.`` to every client, close."""
        await self._listeners.close()
        self._queue.clear()
        for conn in list(self._connections):
            conn.shutdown()
        await self.close_sessions()
        # The BYEs are sent; TLS sessions would now wait for each client's close_notify.
        await self._listeners.stop()

    @property
    def connections(self) -> int:
        """Open connections, greeted or waiting for a slot."""
        return len(self._connections)

    # -- admission and per-user counts ---------------------------------------------------

    def _admission(self, peer_ip: str) -> _Admission:
        settings = self._settings
        if not settings.allows(peer_ip):
            return _Admission.DENY
        if self.maintenance or settings.maintenance:
            return _Admission.MAINTENANCE
        cap = settings.max_connections
        if cap is None:
            cap = self._default_cap
        if self._greeted >= cap or self._queue:
            if settings.queue_full_mode == "hang":
                return _Admission.QUEUE
            return _Admission.QUEUE_FULL
        return _Admission.GREET

    def _admit_queued(self) -> None:
        """Greet waiting connections while there is room (a slot freed, a limit raised)."""
        while self._queue:
            cap = self._settings.max_connections
            if cap is None:
                cap = self._default_cap
            if self._greeted >= cap:
                return
            conn = self._queue.popleft()
            if not conn.closed:
                conn.start()

    def _sessions_of(self, login: str, peer_ip: str) -> int:
        return sum(
            1
            for conn in self._connections
            if conn.peer_ip == peer_ip
            and conn.session is not None
            and conn.session.login == login
            and not conn.closed
        )


class _Connection(asyncio.Protocol):
    # One per client: slots keep it small (idle connections) and its attributes quick.
    __slots__ = (
        "_batch",
        "_batch_bytes",
        "blocked",
        "change_pending",
        "closed",
        "conn",
        "gen",
        "greeted",
        "greeted_at",
        "last_activity",
        "listener",
        "loop",
        "message_limits",
        "paused",
        "peer",
        "peer_ip",
        "reading_paused",
        "security",
        "send_value",
        "server",
        "session",
        "settings",
        "ssl_context",
        "timeout_handle",
        "tls_terminated",
        "transcript",
        "transport",
        "want_line",
    )

    def __init__(
        self,
        server: IMAPServer,
        security: Security,
        ssl_context: ssl.SSLContext | None,
        listener: str,
        tls_terminated: bool = False,
    ) -> None:
        self.server = server
        self.tls_terminated = tls_terminated
        self.settings = server.settings
        self.peer: tuple[object, ...] = ("?", 0)
        self.peer_ip = "?"
        self.greeted = False
        self.security = security
        self.ssl_context = ssl_context
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.transcript: Transcript | None = None
        self.session: Session | None = None
        self.conn = self._new_parser()
        self.message_limits = self.settings.parser_limits
        self.gen: Output | None = None
        self.send_value: bytes | None = None
        self.want_line = False
        self.paused = False
        self.blocked = False
        self.reading_paused = False
        self.closed = False
        # While the engine runs (_process), output gathers here and goes out in one
        # write when it stops: one send, not one per response (a LOGOUT's BYE and OK,
        # a FETCH's many small responses); flushed early past FLUSH_BYTES so that
        # the transport's flow control still sees a large reply as it grows.
        self._batch: list[bytes] | None = None
        self._batch_bytes = 0
        self.change_pending = False
        self.last_activity = self.loop.time()
        self.greeted_at = 0.0
        # One timer for both timeouts (idle, and login counted from the greeting); it is
        # moved only when it fires, not on every command.
        self.timeout_handle: asyncio.TimerHandle | None = None

    def _new_parser(self) -> IMAPConnection:
        settings = self.settings
        return IMAPConnection(
            max_line=settings.max_line_bytes,
            max_literal=settings.max_literal_bytes,
            max_append=settings.max_append_bytes,
            max_login_command=settings.max_login_command_bytes,
            max_tag=settings.max_tag_bytes,
            prelogin=self.session is None or self.session.state is State.NOT_AUTHENTICATED,
            replies=settings.texts,
        )

    def _set_limits(self, settings: IMAPSettings) -> None:
        self.conn.max_line = settings.max_line_bytes
        self.conn.max_literal = settings.max_literal_bytes
        self.conn.max_append = settings.max_append_bytes
        self.conn.max_login_command = settings.max_login_command_bytes
        self.conn.max_tag = settings.max_tag_bytes
        self.conn.replies = settings.texts
        self.message_limits = settings.parser_limits

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_LOW_WATER)
        self.peer = peer = transport.get_extra_info("peername") or ("?", 0)
        self.peer_ip = str(peer[0])
        self.server._connections.add(self)
        admission = self.server._admission(self.peer_ip)
        if admission is _Admission.GREET and self.server.settings.greeting_delay <= 0:
            self._greet()  # the usual case: the transcript opens with the greeting
            return
        transcript = self._open_transcript()
        texts = self.settings.texts
        if admission is _Admission.DENY:
            transcript.event("refused: source outside allowed_networks (tcpwrap)")
            self._close()
        elif admission is _Admission.MAINTENANCE:
            bye = texts.bye_maintenance
            self._write(UntaggedStatus(Status.BYE, bye.text, bye.code).to_bytes())
            self._close()
        elif admission is _Admission.QUEUE_FULL:
            self._write(UntaggedStatus(Status.BYE, texts.bye_queue_full).to_bytes())
            self._close()
        elif admission is _Admission.QUEUE:
            transcript.event("queued: max_connections reached, not greeted")
            self.server._queue.append(self)
        else:
            self.start()

    def _open_transcript(self) -> Transcript:
        transcript = self.transcript = self.server.transcripts.open(
            "imap", f"{self.peer[0]}:{self.peer[1]}", self.listener
        )
        if self.security is Security.IMPLICIT:  # asyncio greets us after the handshake
            transcript.tls(tls_version_of(self.transport), "implicit")
        return transcript

    def start(self) -> None:
        """Greet and serve (at once, or when a queued connection gets its slot).

        With ``greeting_delay`` the greeting waits on a loop timer, as stock
        Dovecot's does while it spawns a login process for the connection.
        """
        delay = self.server.settings.greeting_delay
        if delay > 0:
            self.loop.call_later(delay, self._greet)
        else:
            self._greet()

    def _greet(self) -> None:
        """Send the greeting (the client waits for it), then make the session."""
        transport = self.transport
        if transport is None or transport.is_closing():
            if self.transcript is None:
                self._open_transcript()
            return  # the client left before its greeting
        live = self.server.settings
        if live is not self.settings:  # replaced while this connection waited
            self.settings = live
            self._set_limits(live)
        secure = self.security is Security.IMPLICIT or self.tls_terminated
        starttls = self.security is Security.STARTTLS
        greeting = cached_greeting(
            self.settings, secure=secure, starttls_available=starttls, peer=self.peer_ip
        )
        if greeting is None:  # the first on these terms: the session makes it
            greeting = self._new_session(secure, starttls).greeting()
        # In the transcript before it is sent: a test that has the greeting finds the
        # session in the log (`MailServer.settle` waits only when there is one).
        if self.transcript is None:
            self._open_transcript()
        self._note_written(greeting)
        transport.write(greeting)
        if self.session is None:
            self._new_session(secure, starttls)
        self.greeted = True
        self.server._greeted += 1
        self.last_activity = self.greeted_at = self.loop.time()
        first = min(self.settings.idle_timeout, self.settings.login_timeout)
        self.timeout_handle = self.loop.call_later(first, self._check_timeouts)
        if self.conn.buffered:
            self._process()  # the client spoke before its greeting

    def _new_session(self, secure: bool, starttls_available: bool) -> Session:
        peer_ip = self.peer_ip
        session = self.session = Session(
            accounts=self.server.accounts,
            store=self.server.store,
            settings=self.settings,
            secure=secure,
            starttls_available=starttls_available,
            record_error=self.server.record_error,
            record_client_error=self.server.record_client_error,
            peer=peer_ip,
            sessions_of=lambda login: self.server._sessions_of(login, peer_ip),
        )
        session.on_mailbox_change = self._change_from_any_thread
        return session

    def _refresh_settings(self, session: Session) -> None:
        """Pick up settings replaced at run time, between commands."""
        live = self.server.settings
        if live is self.settings:
            return
        session.use_settings(live)  # checks them: nothing changes if they are bad
        self.settings = live
        self._set_limits(live)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.loop.time()
        if self.gen is None and self._answered_at_once(data):
            return
        self.conn.receive_data(data)
        if (
            self.session is None
            and self.conn.buffered > MAX_PENDING_INPUT
            and self.transport is not None
        ):
            self.reading_paused = True  # queued and talking: hold it until greeted
            self.transport.pause_reading()
        self._process()

    def eof_received(self) -> bool | None:
        self._finish("client closed")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost: {exc!r}" if exc else "closed")
        self.transport = None  # no protocol <-> transport cycle left behind

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._process()

    # -- the engine --------------------------------------------------------------------

    def _answered_at_once(self, data: bytes) -> bool:
        """A lone LOGIN or LOGOUT, answered without the engine (issue 13): the same
        transcript, the same writes, the same close as `_run` and `_step` make of it."""
        session = self.session
        if session is None or self.closed or self.blocked or self.paused:
            return False
        cmd = self.conn.simple_command(data)
        if cmd is None:
            return False
        self._refresh_settings(session)
        if not session.answers_at_once(cmd):
            return False  # as if never looked at: the engine runs it
        self._log_command(cmd)
        out, disconnect = session.answer_at_once(cmd)
        for piece in out:
            self._note_written(piece)
        assert self.transport is not None  # not closed (checked above)
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))
        if disconnect or session.state is State.LOGOUT:
            self._close()
        return True

    def _process(self) -> None:
        """Run the current command, then parse and start the next, until we must wait."""
        if self._batch is not None:  # re-entered (a resume inside a write): one batch
            self._run()
            return
        self._batch = []
        try:
            self._run()
        finally:
            self._flush()
            self._batch = None

    def _run(self) -> None:
        session = self.session
        if session is None:
            return
        try:
            while not self.closed and not self.paused and not self.blocked:
                if self.gen is not None and not self.want_line:
                    self._step()
                    continue
                self.conn.prelogin = session.state is State.NOT_AUTHENTICATED
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
                    self.server.record_client_error(f"client protocol error: {event.reason}")
                    self.want_line = False
                    self.send_value = None
                    continue
                if self.gen is not None:
                    return  # pragma: no cover - in line mode every event is a ClientLine
                if isinstance(event, Command):
                    self._log_command(event)
                    self._refresh_settings(session)
                    self.gen = session.handle(event)
                elif isinstance(event, ContinuationRequest):
                    refusal = session.refuse_literal(event)
                    if refusal is not None:
                        self.conn.reject_literal()
                        self._write(refusal)
                    else:
                        ok = session.replies.literal_continuation
                        self._write(Continuation(ok).to_bytes())
                elif isinstance(event, BadInput):
                    self.server.record_client_error(
                        f"client protocol error: {event.reason} (tag={event.tag!r})"
                    )
                    if event.bye is not None:  # a command over Dovecot's limits
                        self._write(UntaggedStatus(Status.BYE, event.bye).to_bytes())
                    else:
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
            bug = session.replies.server_bug
            self._write(UntaggedStatus(Status.BAD, bug.text, bug.code).to_bytes())

    def _step(self) -> None:
        assert self.gen is not None
        value, self.send_value = self.send_value, None
        parser_limits.use(self.message_limits)  # every entry into the core that may parse mail
        try:
            item = self.gen.send(value)
        except StopIteration:
            self.gen = None
            if self.session is not None and self.session.state is State.LOGOUT:
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
            if item.farewell:
                self._write(item.farewell)
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
            forget_traceback(exc)
            self._close()
            return
        if transport is None:
            self._close()
            return
        self.transport = transport
        if self.transcript is not None:
            self.transcript.tls(tls_version_of(transport), "STARTTLS")
        self.blocked = False
        self._process()

    # -- mailbox notifications and timers -----------------------------------------------

    def _change_from_any_thread(self) -> None:
        if self.change_pending or self.closed:
            return
        self.change_pending = True
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self.loop.call_soon_threadsafe(self._delay_change)

    def _delay_change(self) -> None:
        self.loop.call_later(IDLE_NOTIFY_DELAY, self._mailbox_changed)

    def _mailbox_changed(self) -> None:
        self.change_pending = False
        session = self.session
        if session is None or self.closed:
            return
        parser_limits.use(self.message_limits)
        if session.idling:
            data = session.idle_updates()
        elif self.gen is None and session.notify is not None:
            data = session.notify_updates()  # RFC 5465: news at any time between commands
        else:
            return
        if data:
            self._write(data)
        if session.state is State.LOGOUT:
            self._close()

    def _check_timeouts(self) -> None:
        """Say BYE past the idle timeout, or past the login timeout while not logged in
        (Dovecot's, counted from connect); else look again when the nearer one is due."""
        self.timeout_handle = None
        session = self.session
        if self.closed or session is None:
            return
        settings = self.server.settings  # a timeout changed at run time applies at once
        now = self.loop.time()
        remaining = self.last_activity + settings.idle_timeout - now
        if session.state is State.NOT_AUTHENTICATED:
            remaining = min(remaining, self.greeted_at + settings.login_timeout - now)
        if remaining > 0:
            self.timeout_handle = self.loop.call_later(remaining, self._check_timeouts)
            return
        text = settings.texts.bye_idle_timeout
        self._write(UntaggedStatus(Status.BYE, text).to_bytes())
        self._close()

    def recheck_idle(self) -> None:
        """A timeout may have changed: compute the remaining time anew."""
        if self.timeout_handle is None or self.closed:
            return
        self.timeout_handle.cancel()
        self.timeout_handle = self.loop.call_later(0, self._check_timeouts)

    # -- output and teardown --------------------------------------------------------------

    def _note_written(self, data: bytes) -> None:
        """Into the transcript: each line of a short write, the start of a long one."""
        if self.transcript is not None:
            if len(data) <= 4096:
                self.transcript.server_lines(data)
            else:
                self.transcript.server(data[:TRANSCRIPT_PREVIEW] + b"... [%d bytes]" % len(data))

    def _write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            return
        self._note_written(data)
        batch = self._batch
        if batch is None:
            self.transport.write(data)
            return
        batch.append(data)
        self._batch_bytes += len(data)
        if self._batch_bytes >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        batch = self._batch
        if not batch:
            return
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        batch.clear()
        self._batch_bytes = 0
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def _log_command(self, cmd: Command) -> None:
        """Credentials go to the transcript decoded: who logs in shows, the secret not."""
        transcript = self.transcript
        if transcript is None:
            return
        if cmd.name == "LOGIN" and len(cmd.args) >= 2:
            transcript.login(cmd.tag, _token_text(cmd.args[0]))
        elif cmd.name == "AUTHENTICATE" and cmd.args:
            initial = _token_text(cmd.args[1]) if len(cmd.args) > 1 else None
            transcript.auth(cmd.tag, "AUTHENTICATE", _token_text(cmd.args[0]), initial)
        else:
            name = f"UID {cmd.name}" if cmd.uid else cmd.name
            transcript.client(cmd.transcript, tag=cmd.tag, command=name)

    def _log_client_line(self, line: bytes, session: Session) -> None:
        if self.transcript is None:
            return
        if session.in_auth:
            self.transcript.auth_response(line)
        else:
            self.transcript.client(line)

    def _close(self) -> None:
        self._flush()
        if self.transport is not None and not self.closed:
            self.transport.close()
        self._finish("server closed")

    def shutdown(self) -> None:
        if self.greeted:  # a queued client never heard from us: just close
            text = self.settings.texts.bye_shutdown
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
        if self.timeout_handle is not None:
            self.timeout_handle.cancel()
            self.timeout_handle = None
        if self.transcript is not None:
            self.transcript.event(why)
        if self.session is not None:
            self.session.shutdown()
            # The session holds callbacks bound to this connection: dropping it here
            # leaves no cycle for the collector (issue 14: none per session).
            self.session = None
        self.server._connections.discard(self)
        if self.greeted:
            self.server._greeted -= 1
            self.server._admit_queued()
        else:
            with contextlib.suppress(ValueError):  # a queued client gave up waiting
                self.server._queue.remove(self)


def _check_settings(value: object) -> IMAPSettings:
    if not isinstance(value, IMAPSettings):
        raise ConfigError(f"settings={value!r}: expected IMAPSettings")
    return value


def _token_text(token: Token) -> str:
    """An argument as the transcript shows it (a list is not a credential)."""
    if isinstance(token, bytes):
        return token.decode("utf-8", "replace")
    return token if isinstance(token, str) else "(...)"
