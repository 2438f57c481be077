"""One SMTP session of the fake server: aiosmtpd's protocol engine and our handler.

aiosmtpd parses SMTP; everything a scenario decides (who may log in, what is
accepted, what the replies say) lives in `_Handler` and `replies`. The listeners
and what sessions share are `SMTPServer`'s (server.py), which imports this module,
and so aiosmtpd (and attrs beneath it, ~20 ms), at its first connection (issue 13).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import itertools
import logging
import re
import warnings
from collections.abc import Callable
from typing import Any, cast

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)
from mailharness.servers.accounts import Mechanism
from mailharness.servers.errors import forget_traceback
from mailharness.servers.listeners import Endpoint
from mailharness.servers.smtp import replies
from mailharness.servers.smtp.capture import CapturedMessage
from mailharness.servers.smtp.server import SMTPServer, _in_networks
from mailharness.servers.transcript import Transcript, tls_version_of

_queue_ids = itertools.count(1)


class _DropKnownNoise(logging.Filter):
    """Two aiosmtpd warnings that are not ours to act on: we enforce the TLS rules for
    AUTH ourselves, and aiosmtpd itself sets the deprecated `Session.login_data`."""

    NOISE = ("auth_require_tls == False", "Session.login_data is deprecated")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


logging.getLogger("mail.log").addFilter(_DropKnownNoise())


def _writable(transport: asyncio.BaseTransport | None) -> asyncio.WriteTransport | None:
    """The transport, if it writes: asyncio's are WriteTransports, uvloop's act as one
    without subclassing it, so an isinstance check would skip every write on uvloop."""
    return cast(asyncio.WriteTransport, transport) if hasattr(transport, "write") else None


def _is_secure(transport: asyncio.BaseTransport | None) -> bool:
    return transport is not None and transport.get_extra_info("ssl_object") is not None


class _TranscribingReader:
    """Wraps aiosmtpd's StreamReader to log each client line, masking secrets.

    Message data (after a 354) is summarised rather than copied; AUTH lines and the
    lines answering a 334 challenge go to the transcript's SASL decoder, which keeps
    the user name and masks the secret.
    """

    _inner: asyncio.StreamReader
    _transcript: Transcript
    in_data: bool
    mask_next: bool
    _data_bytes: int
    # aiosmtpd's command loop is suspended reading the next command (readuntil b"\n"),
    # not a DATA line, an AUTH response or the rest of an overlong line.
    at_command: bool

    _OWN = ("in_data", "mask_next", "_data_bytes", "at_command")

    def __init__(self, reader: asyncio.StreamReader, transcript: Transcript) -> None:
        object.__setattr__(self, "_inner", reader)
        object.__setattr__(self, "_transcript", transcript)
        object.__setattr__(self, "in_data", False)
        object.__setattr__(self, "mask_next", False)
        object.__setattr__(self, "_data_bytes", 0)
        object.__setattr__(self, "at_command", False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._inner, name, value)

    def _log(self, line: bytes) -> None:
        transcript = self._transcript
        if self.in_data:
            if line in (b".\r\n", b".\n"):
                transcript.client_data(f"[message data: {self._data_bytes} bytes]")
                transcript.client_data(".")
                self.in_data = False
                self._data_bytes = 0
            else:
                self._data_bytes += len(line)
        elif self.mask_next:
            self.mask_next = False
            transcript.auth_response(line)
        else:
            words = line.split()
            if len(words) >= 2 and words[0].upper() == b"AUTH":
                initial = words[2] if len(words) > 2 else None
                transcript.auth(None, "AUTH", words[1].decode("utf-8", "replace"), initial)
            else:
                transcript.client(line)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        self.at_command = separator == b"\n" and not self.in_data and not self.mask_next
        try:
            line: bytes = await self._inner.readuntil(separator)
        finally:
            self.at_command = False
        self._log(line)
        return line

    def idle_at_command(self) -> bool:
        """Is the command loop parked on an empty buffer, waiting for the next command?"""
        if not self.at_command:
            return False
        inner = self._inner
        waiter = inner._waiter  # type: ignore[attr-defined]
        return (
            waiter is not None
            and not inner._buffer  # type: ignore[attr-defined]
            and not inner._eof  # type: ignore[attr-defined]
            and not waiter.done()
        )

    async def readline(self) -> bytes:
        line: bytes = await self._inner.readline()
        self._log(line)
        return line


class _HarnessSMTP(SMTP):
    """aiosmtpd's SMTP with production reply texts, a transcript per connection and the
    connection-level refusals a scenario asks for (maintenance, caps, allowlists)."""

    def __init__(
        self,
        service: SMTPServer,
        listener: Endpoint,
        *,
        tls_terminated: bool = False,
        **kwargs: Any,
    ) -> None:
        with warnings.catch_warnings():
            # "Requiring AUTH while not requiring TLS": we enforce TLS rules ourselves.
            warnings.simplefilter("ignore")
            super().__init__(service.handler, **kwargs)
        self.service = service
        self.listener = listener
        self.listener_text = _describe(listener)
        # A fault front ended TLS before us (see add_listener): the client's leg is secure.
        self.tls_terminated = tls_terminated
        self.transcript: Transcript | None = None
        self.peer_ip = ""
        self.peer_text = "?"
        self._counted = False
        # Who the client (Dovecot's submission) says logged in, by XCLIENT LOGIN=.
        self.xclient_login: str | None = None

    # The TLS version on the client's connection now (None in the clear): it changes only
    # here, at the implicit-TLS start or after STARTTLS, so each message need not ask.
    tls_version: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.tls_version = tls_version_of(transport)
        if self.transcript is None:
            peer = transport.get_extra_info("peername")
            self.peer_ip = peer[0] if peer else ""
            self.peer_text = f"{peer[0]}:{peer[1]}" if peer else "?"
            self.transcript = self.service.transcripts.open(
                "smtp", self.peer_text, self.listener_text
            )
            if self.tls_version is not None:
                self.transcript.tls(self.tls_version, "implicit")
            self.service.connections.add(self)
            self.service.per_ip[self.peer_ip] += 1
            self._counted = True
            refusal = self.service.greeting_refusal_for(self.peer_ip)
            if refusal is not None:
                self._refuse_session(transport, refusal)
                return
        else:
            self.transcript.tls(self.tls_version, "STARTTLS")
        super().connection_made(transport)

    _refusing = False

    def _refuse_session(self, transport: asyncio.BaseTransport, refusal: str) -> None:
        """Greet with the refusal; a 421 closes, a 554 answers 503 to all but QUIT."""
        self._refusing = True
        super().connection_made(transport)
        if refusal.startswith("421"):
            assert self._handler_coroutine is not None
            self._handler_coroutine.cancel()
            self.write_now(refusal)
            transport.close()
            return
        self.greeting_override = refusal
        denied = self.service.replies.access_denied.format(ip=self.peer_ip)

        async def deny(arg: str | None) -> None:
            await self.push(denied)

        self._smtp_methods = {
            name: (method if name == "QUIT" else deny)
            for name, method in self._smtp_methods.items()
        }

    greeting_override: str | None = None

    def connection_lost(self, error: Exception | None) -> None:
        self.service.connections.discard(self)
        if self._counted:
            self._counted = False
            self.service.per_ip[self.peer_ip] -= 1
        if self.transcript is not None:
            self.transcript.event("connection closed" + (f": {error}" if error else ""))
        if self.session is None:
            # An implicit-TLS handshake that failed (a TLS 1.0 client, a version scan):
            # asyncio reports the loss though aiosmtpd never started a session, and
            # aiosmtpd's own bookkeeping asserts one. Only the stream's is left to undo,
            # and the tables that tie a session into cycles.
            asyncio.StreamReaderProtocol.connection_lost(self, error)
            self._forget_tables()
            return
        super().connection_lost(error)
        task = self._handler_coroutine
        if task is not None and not self._forgetting:
            self._forgetting = True
            task.add_done_callback(self._forget)

    _forgetting = False

    def _forget(self, task: asyncio.Task[None]) -> None:
        """Drop what ties this finished session into cycles (aiosmtpd's tables of bound
        methods, its streams, the handler task's traceback), so reference counting frees
        a session at once instead of the cycle collector, sessions later."""
        if not task.cancelled() and task.exception() is not None:
            forget_traceback(task.exception())
        self._forget_tables()

    def _forget_tables(self) -> None:
        self._smtp_methods = {}
        self._auth_methods = {}
        self._client_connected_cb = None
        self._handler_coroutine = None
        for stream in ("_reader", "_writer", "_transcribing"):
            vars(self).pop(stream, None)

    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        assert self.transcript is not None
        wrapped = _TranscribingReader(reader, self.transcript)
        self._transcribing = wrapped
        super()._cb_client_connected(wrapped, writer)  # type: ignore[arg-type]

    _transcribing: _TranscribingReader | None = None

    async def push(self, status: str | bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            # aiosmtpd reads on after its own goodbye (502 after too many unknown
            # commands): Postfix sends nothing after a goodbye, and a TLS transport that
            # is gone would fail the write (an error of ours in the record).
            return
        text = self._production(status)
        reader = getattr(self, "_reader", None)
        if isinstance(reader, _TranscribingReader):
            if text.startswith("354"):
                reader.in_data = True
            elif text.startswith("334"):
                reader.mask_next = True
        await super().push(text)

    def _production(self, status: str | bytes) -> str:
        """The reply as the scenario words it (aiosmtpd's texts rewritten), transcribed."""
        text = self._worded(status)
        self._log_server(text)
        return text

    def _worded(self, status: str | bytes) -> str:
        """The reply as the scenario words it: aiosmtpd's own texts rewritten."""
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        text = replies.REWRITES.get(text, text)
        if text.startswith("530 "):
            texts = self.service.replies
            if text == replies.AUTH_REQUIRED:
                text = self.service.reply(texts.auth_required)
            elif text == replies.STARTTLS_FIRST and texts.before_starttls is not None:
                text = self.service.reply(texts.before_starttls)
        if self.greeting_override is not None and text.startswith("220 "):
            text, self.greeting_override = self.greeting_override, None
        return text

    # --- the fast path ------------------------------------------------------------------
    # aiosmtpd reads every line through a StreamReader and a coroutine, and a message
    # line by line: for a plain MAIL, RCPT, DATA and message that is most of the CPU a
    # message costs (docs/benchmarks.md). So while aiosmtpd's command loop is parked
    # waiting for a command, a chunk that holds exactly one MAIL, RCPT, DATA or RSET
    # that aiosmtpd would accept is answered here, inline: the same checks, hooks,
    # texts, transcript and state (aiosmtpd's session and envelope). A DATA answered
    # here takes the message here too, in chunks rather than lines. Anything else, and
    # every error, goes to aiosmtpd, which answers it as it always did.
    _fast_body: bytearray | None = None
    # Bytes of message data counted and dropped (over the size limit), and the reply
    # the message will get; set when a message outgrows the size limit.
    _fast_dropped = 0
    _fast_refusal: str | None = None

    def data_received(self, data: bytes) -> None:
        if self._fast_body is not None:
            self._take_message_data(data)
        elif not self._fast_command(data):
            super().data_received(data)

    def _fast_command(self, data: bytes) -> bool:
        """Answer `data` here if it is one plain MAIL/RCPT/DATA/RSET aiosmtpd would take."""
        size = len(data)
        if (
            size > 512  # aiosmtpd's least command size limit, CRLF included
            or data.find(b"\n") != size - 1
            or data[-2:] != b"\r\n"
            or self._refusing
            or self._paused  # type: ignore[attr-defined]  # asyncio's FlowControlMixin
            or not self._tls_handshake_okay
            or (self.require_starttls and not self._tls_protocol)
            or self._enforce_call_limit
            or self.enable_SMTPUTF8
            or self.transport is None
        ):
            return False
        reader = self._transcribing
        session, envelope = self.session, self.envelope
        if reader is None or not reader.idle_at_command() or session is None or envelope is None:
            return False
        verb = data[:5].upper()
        if verb == b"RSET\r":
            self.envelope = self._create_envelope()  # aiosmtpd's _set_rset_state
            self._fast_reply("250 OK", data)
            return True
        if not session.host_name or (self._auth_required and not session.authenticated):
            return False
        handler = self.event_handler  # the service's _Handler, as aiosmtpd was given it
        if verb == b"MAIL ":
            parsed = self._plain_line(_PLAIN_MAIL, data) if envelope.mail_from is None else None
            if parsed is None:
                parsed = self._plain_path(data, "FROM:", envelope.mail_from is None)
            if parsed is None:
                return False
            envelope.smtp_utf8 = False
            self._fast_hook(data, handler.mail_status, session, envelope, *parsed)
            return True
        if verb == b"RCPT ":
            parsed = self._plain_line(_PLAIN_RCPT, data) if envelope.mail_from else None
            if parsed is None:
                parsed = self._plain_path(data, "TO:", bool(envelope.mail_from))
            if parsed is None or parsed[1]:
                return False
            self._fast_hook(data, handler.rcpt_status, session, envelope, parsed[0], [])
            return True
        if verb == b"DATA\r":
            if not envelope.rcpt_tos:
                return False
            self._fast_body = bytearray()
            self._fast_reply("354 End data with <CR><LF>.<CR><LF>", data)
            return True
        return False

    def _plain_line(self, pattern: re.Pattern[bytes], line: bytes) -> tuple[str, list[str]] | None:
        """The commonest line, `MAIL FROM:<a@b>` or `RCPT TO:<a@b>` with no parameter, read
        by one expression: aiosmtpd reads it to the same address (see `_getaddr`)."""
        match = pattern.fullmatch(line)
        if match is None:
            return None
        local = match[1]
        if self.local_part_limit and len(local) > self.local_part_limit:
            return None
        return f"{local.decode()}@{match[2].decode()}", []

    def _plain_path(self, line: bytes, keyword: str, allowed: bool) -> tuple[str, list[str]] | None:
        """`MAIL FROM:<a@b> [SIZE=n] [BODY=7BIT|8BITMIME]` or `RCPT TO:<a@b>` as aiosmtpd
        reads it, if it takes it without an error reply: (address, options), else None."""
        if not allowed:
            return None
        try:
            arg = line[5:-2].strip().decode("ascii")
        except UnicodeDecodeError:
            return None
        if arg[: len(keyword)].upper() != keyword:
            return None
        address, rest = self._getaddr(arg[len(keyword) :].strip())
        if not address or rest is None:
            return None
        options = rest.upper().split()
        if not options:
            return address, options
        assert self.session is not None
        if keyword != "FROM:" or not self.session.extended_smtp:
            return None
        params = self._getparams(options)
        if params is None or params.pop("BODY", "7BIT") not in ("7BIT", "8BITMIME"):
            return None
        size = params.pop("SIZE", None)
        if params or isinstance(size, bool):
            return None
        if size is not None and (
            not size.isdigit() or (self.data_size_limit and int(size) > self.data_size_limit)
        ):
            return None
        return address, options

    def _fast_hook(self, line: bytes, hook: Callable[..., str], *args: Any) -> None:
        """Call a handler hook; its exception is answered as aiosmtpd's loop would."""
        try:
            status = hook(self, *args)
        except Exception as error:
            status = self.service.handler.failure(error)
        self._fast_reply(status, line)

    def _fast_reply(
        self, status: str, command: bytes | None = None, message_size: int | None = None
    ) -> None:
        """Transcribe the command (or the message's summary) and the reply, send the
        reply, then move the idle deadline (aiosmtpd moves it for each command it reads).
        The transcript is written first: a test that has the reply may read it at once."""
        text = self._worded(status)
        transcript = self.transcript
        if transcript is not None:
            if command is not None:
                transcript.client(command)
            if message_size is not None:
                transcript.client_data(f"[message data: {message_size} bytes]")
                transcript.client_data(".")
            self._log_server(text)
        transport = self.transport
        if transport is not None:
            transport.write(text.encode("ascii") + b"\r\n")  # type: ignore[attr-defined]
        if command is not None:
            self._reset_timeout()

    def _take_message_data(self, data: bytes) -> None:
        """Gather message data up to the lone dot, as aiosmtpd's DATA does line by line."""
        body = self._fast_body
        assert body is not None
        if not body and not self._fast_dropped:  # the usual case: all of it in one chunk
            if data[:3] == b".\r\n":
                end = 0
            else:
                found = data.find(b"\r\n.\r\n")
                end = found + 2 if found >= 0 else -1
            if end >= 0:
                self._fast_body = None
                self._end_message(data[:end])
                if len(data) > end + 3:
                    self.data_received(data[end + 3 :])
                return
        searched = max(0, len(body) - 4)
        body += data
        if not self._fast_dropped and body[:3] == b".\r\n":
            end = 0
        else:
            found = body.find(b"\r\n.\r\n", searched)
            if found < 0:
                self._bound_message_data(body)
                return
            end = found + 2
        rest = bytes(body[end + 3 :])
        del body[end:]
        self._fast_body = None
        self._end_message(body)
        if rest:
            self.data_received(rest)

    def _bound_message_data(self, body: bytearray) -> None:
        """A message past the size limit is counted and dropped, not kept (aiosmtpd's way)."""
        limit = self.data_size_limit
        if not limit or len(body) <= limit + 2 * self.line_length_limit:
            return
        if self._fast_refusal is None:
            self._fast_refusal = _data_refusal(body, limit, self.line_length_limit)
        keep = 4  # enough to find the end marker across chunks
        self._fast_dropped += len(body) - keep
        del body[:-keep]

    def _end_message(self, body: bytes | bytearray) -> None:
        size = self._fast_dropped + len(body)
        refusal = self._fast_refusal or _data_refusal(
            body, self.data_size_limit, self.line_length_limit
        )
        self._fast_dropped, self._fast_refusal = 0, None
        if refusal is not None:
            self.envelope = self._create_envelope()  # aiosmtpd's _set_post_data_state
            self._fast_reply(refusal, message_size=size)
            return
        content = bytes(body)
        if content[:1] == b"." or b"\r\n." in content:  # RFC 5321 4.5.2 transparency
            content = b"\r\n".join(
                line[1:] if line[:1] == b"." else line for line in content.split(b"\r\n")
            )
        envelope = self.envelope
        assert envelope is not None and self.session is not None
        envelope.content = envelope.original_content = content
        try:
            status = self.event_handler.data_status(self, self.session, envelope)
        except Exception as error:
            # As in aiosmtpd: the transaction stays open when the hook fails.
            self._fast_reply(self.service.handler.failure(error), message_size=size)
            return
        self.envelope = self._create_envelope()  # aiosmtpd's _set_post_data_state
        self._fast_reply(status, message_size=size)

    def _log_server(self, text: str) -> None:
        """A reply, each of its lines an event (one note for all of EHLO's)."""
        if self.transcript is not None:
            self.transcript.server_lines(text + "\r\n")

    def write_now(self, text: str) -> None:
        """Send a reply outside the command loop (timeouts, shutdown, refusals)."""
        self._log_server(text)
        transport = _writable(self.transport)
        if transport is not None and not transport.is_closing():
            transport.write(text.encode("utf-8") + b"\r\n")

    # aiosmtpd re-arms its idle timer (a cancel and a call_later) on every command. Here
    # the armed timer stays and the deadline moves; a timer that fires before the
    # deadline re-arms itself for the rest. A command then costs one clock read.
    _idle_deadline = 0.0
    _idle_timer_at = float("inf")  # when the armed timer fires

    def _reset_timeout(self, duration: float | None = None) -> None:
        wait = duration or self._timeout_duration
        deadline = self.loop.time() + wait
        self._idle_deadline = deadline
        if self._timeout_handle is None or deadline < self._idle_timer_at:
            if self._timeout_handle is not None:
                self._timeout_handle.cancel()
            self._timeout_handle = self.loop.call_later(wait, self._timeout_cb)
            self._idle_timer_at = deadline

    def _timeout_cb(self) -> None:
        left = self._idle_deadline - self.loop.time()
        if left > 0:
            self._timeout_handle = self.loop.call_later(left, self._timeout_cb)
            self._idle_timer_at = self._idle_deadline
            return
        self.write_now(self.service.reply(self.service.replies.idle_timeout))
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    @property
    def secure(self) -> bool:
        """Is the client's leg encrypted (here, or by a front that ended TLS for us)?"""
        return self.tls_terminated or self.tls_version is not None

    async def smtp_STARTTLS(self, arg: str) -> None:
        settings = self.service.settings
        if _is_secure(self.transport):
            await self.push(self.service.replies.tls_already_active)
        elif self.tls_context is None:
            await self.push(self.service.replies.starttls_missing)
        elif settings.starttls_broken and not self._tls_protocol:
            await self.push(self.service.replies.starttls_broken)
        else:
            await super().smtp_STARTTLS(arg)

    async def challenge_auth(
        self, challenge: str | bytes, encode_to_b64: bool = True, log_client_response: bool = False
    ) -> Any:
        """aiosmtpd's, but a response line over the reader's limit is the client's error."""
        try:
            return await super().challenge_auth(challenge, encode_to_b64, log_client_response)
        except ValueError as exc:  # StreamReader.readline: the line outgrew its limit
            if "not found" in str(exc):
                await self._discard_rest_of_line()
            raise _ClientLineTooLong from None

    async def _discard_rest_of_line(self) -> None:
        reader = getattr(self._reader, "_inner", self._reader)
        while True:
            try:
                await reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as exc:
                await reader.read(exc.consumed)
            except asyncio.IncompleteReadError:
                return

    async def handle_exception(self, error: Exception) -> str:
        """Client mistakes are transcript events; only our own faults are recorded errors."""
        if isinstance(error, _ClientLineTooLong):
            self._client_event("AUTH response line too long")
            return self.service.replies.line_too_long
        if isinstance(error, TLSSetupException):
            self._client_event(f"STARTTLS handshake failed: {error.__cause__!r}")
            forget_traceback(error)
            return self.service.replies.tls_handshake_failed
        status: str = await super().handle_exception(error)
        return status

    def _client_event(self, text: str) -> None:
        """A client's mistake: in its transcript and in `client_errors` (fails nothing)."""
        if self.transcript is not None:
            self.transcript.event(f"client error: {text}")
        self.service.client_errors.append(f"SMTP {text}")

    async def smtp_XCLIENT(self, arg: str) -> None:
        """Postfix's XCLIENT, LOGIN= and ADDR= only: the session then acts for that login and
        address (allowlists check it); answered, as Postfix does, with a new greeting."""
        if not self.service.settings.xclient:
            await self.push('500 Error: command "XCLIENT" not recognized')
            return
        for attribute in (arg or "").split():
            name, _, raw = attribute.partition("=")
            value = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), raw)
            if value.upper() in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
                continue
            if name.upper() == "LOGIN":
                self.xclient_login = value
            elif name.upper() == "ADDR":
                self.peer_ip = value.removeprefix("IPV6:")
        assert self.session is not None
        self.session.host_name = None
        self.session.extended_smtp = False
        self.envelope = self._create_envelope()
        await self.push(self.service.replies.xclient_greeting.format(hostname=self.hostname))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's, with a fast path for the plain `<local@domain>` nearly every client
        sends: aiosmtpd parses each MAIL and RCPT address with the email package's header
        parser and defines a class per call, about a fifth of a message's CPU time. The
        fast path takes only ASCII dot-atoms, for which that parser returns the text as
        is and ends the rest at the first non-blank; anything else goes to aiosmtpd."""
        match = _SIMPLE_PATH.match(arg)
        if match is None:
            result: tuple[str | None, str | None] = super()._getaddr(arg)
            return result
        local = match.group(1)
        if self.local_part_limit and len(local) > self.local_part_limit:
            return None, None
        return f"{local}@{match.group(2)}", arg[match.end() :]

    def close_with(self, text: str) -> None:
        """Send a final reply and close (a shutdown announced to open sessions)."""
        self.write_now(text)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        transport = _writable(self.transport)
        if transport is not None:
            transport.abort()


class _ClientLineTooLong(Exception):
    """An AUTH response longer than the line limit: answered, not recorded as ours."""


# RFC 3461 xtext, which XCLIENT values are encoded in: "+" and two hex digits per byte.
# A path aiosmtpd's parser returns unchanged: `<` dot-atom `@` dot-atom `>`, then blanks
# (which it skips) up to a parameter, never a comment (which it would parse).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*)@({_ATEXT}(?:\.{_ATEXT})*)>[ \t]*(?![(\s])")

_ATEXT_BYTES = _ATEXT.encode()
_DOT_ATOM = rb"(%s(?:\.%s)*)" % (_ATEXT_BYTES, _ATEXT_BYTES)
# The whole line: one space after the verb, then the keyword in any case, blanks, the
# path, blanks; anything else (parameters, odd spacing) takes the general way.
_PLAIN_MAIL = re.compile(rb"(?i:MAIL FROM:)[ \t]*<%s@%s>[ \t]*\r\n" % (_DOT_ATOM, _DOT_ATOM))
_PLAIN_RCPT = re.compile(rb"(?i:RCPT TO:)[ \t]*<%s@%s>[ \t]*\r\n" % (_DOT_ATOM, _DOT_ATOM))

_XTEXT_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")


def _data_refusal(body: bytes | bytearray, limit: int | None, line_limit: int) -> str | None:
    """What aiosmtpd's DATA answers a message it will not take, else None: the first of a
    line over `line_limit` (CRLF included) or the running size passing `limit`."""
    if len(body) <= line_limit and (not limit or len(body) <= limit):
        return None
    lines = body.split(b"\r\n")
    if body[-2:] == b"\r\n":
        lines.pop()  # the empty string after the last CRLF
    if (not limit or len(body) <= limit) and max(map(len, lines), default=0) + 2 <= line_limit:
        return None
    size = 0
    for line in lines:
        if len(line) + 2 > line_limit:
            return "500 Line too long (see RFC5321 4.5.3.1.6)"
        size += len(line) + 2
        if limit and size > limit:
            return "552 Error: Too much mail data"
    return None


def _describe(endpoint: Endpoint) -> str:
    return f"{endpoint.protocol}/{endpoint.security.value} {endpoint.host}:{endpoint.port}"


class _Handler:
    """aiosmtpd hooks: scenario rules applied after aiosmtpd's envelope bookkeeping."""

    def __init__(self, service: SMTPServer) -> None:
        self.service = service

    # --- authentication -------------------------------------------------
    def authenticate(
        self, server: _HarnessSMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        login = data.login.decode("utf-8", "replace")
        secret = data.password.decode("utf-8", "replace")
        return self._result(server, login, secret, Mechanism.PASSWORD, data)

    def _result(
        self, server: _HarnessSMTP, login: str, secret: str, mechanism: Mechanism, data: Any
    ) -> AuthResult:
        result = self.service.accounts.authenticate(
            login, secret, mechanism, protocol="smtp", source=server.peer_ip
        )
        if result.ok:
            return AuthResult(success=True, auth_data=data)
        reply = self.service.reply(self.service.replies.for_outcome(result.outcome))
        return AuthResult(success=False, handled=False, message=reply)

    async def auth_XOAUTH2(self, server: _HarnessSMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            blob = args[1]
        else:
            response = await server.challenge_auth("", encode_to_b64=False)
            if response is MISSING:
                return AuthResult(success=False, handled=True)
            blob = response.decode("ascii", "replace")
        try:
            fields = base64.b64decode(blob, validate=True).decode("utf-8").split("\x01")
        # binascii.Error is a ValueError; a non-ASCII str raises a bare ValueError.
        except (ValueError, UnicodeDecodeError):
            await server.push(self.service.replies.bad_auth_syntax)
            return AuthResult(success=False, handled=True)
        user = next((f[5:] for f in fields if f.startswith("user=")), "")
        token = next((f[12:] for f in fields if f.startswith("auth=Bearer ")), "")
        result = self._result(
            server, user, token, Mechanism.XOAUTH2, LoginPassword(user.encode(), b"")
        )
        if not result.success:
            # Gmail sends an error challenge; the client answers with an empty line.
            challenge = self.service.replies.xoauth2_challenge
            await server.challenge_auth(challenge, encode_to_b64=False)
        return result

    async def handle_EHLO(
        self,
        server: _HarnessSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self._dovecot_tls_first(server):
            # Dovecot's submission: AUTH advertised, but with no mechanism usable yet.
            responses = ["250-AUTH" if r.startswith("250-AUTH") else r for r in responses]
        elif not self._auth_allowed(server):
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        if self.service.settings.xclient:
            responses.insert(1, "250-XCLIENT ADDR LOGIN")
        return _as_personality(responses, self.service.replies, server.peer_ip)

    async def handle_AUTH(
        self, server: _HarnessSMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        if self._dovecot_tls_first(server) or not self._auth_allowed(server):
            return self.service.replies.plaintext_auth_disabled
        return MISSING

    def _auth_allowed(self, server: _HarnessSMTP) -> bool:
        settings = self.service.settings
        if settings.starttls_required and not server.secure:
            return False
        return settings.plaintext_auth or server.secure

    def _dovecot_tls_first(self, server: _HarnessSMTP) -> bool:
        """STARTTLS required, not yet done, answered the way Dovecot's submission does."""
        return (
            self.service.settings.starttls_required
            and self.service.replies.before_starttls is None
            and not server.secure
        )

    # --- mail -------------------------------------------------------------
    # aiosmtpd awaits its hooks; the fast path (_HarnessSMTP.data_received) calls the
    # same rules synchronously, so each hook is a thin wrapper of a plain method.
    async def handle_MAIL(
        self,
        server: _HarnessSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        return self.mail_status(server, session, envelope, address, mail_options)

    async def handle_RCPT(
        self,
        server: _HarnessSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        return self.rcpt_status(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: _HarnessSMTP, session: Session, envelope: Envelope) -> str:
        return self.data_status(server, session, envelope)

    async def handle_exception(self, error: Exception) -> str:
        return self.failure(error)

    def mail_status(
        self,
        server: _HarnessSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        limit = self.service.settings.send_rate
        if limit is not None:
            auth_data = session.auth_data
            who = auth_data.login if isinstance(auth_data, LoginPassword) else server.peer_ip
            if not self.service.send_buckets.take(who, limit, self.service.clock()):
                reply = self.service.reply(self.service.replies.send_rate_exceeded)
                if reply.startswith("421"):
                    asyncio.get_running_loop().call_soon(_close, server)
                return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return self.service.replies.mail_ok

    def rcpt_status(
        self,
        server: _HarnessSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        service = self.service
        networks = service.settings.allowed_networks
        if networks is not None and not _in_networks(server.peer_ip, networks):
            return service.replies.client_rejected.format(ip=server.peer_ip)
        if service.recipient_full is not None and service.recipient_full(address):
            temporary = service.settings.quota_temporary
            text = service.replies.over_quota_temporary if temporary else service.replies.over_quota
            return service.reply(text, rcpt=address)
        if envelope.rcpt_tos and any(address.lower() == k.lower() for k in envelope.rcpt_tos):
            return service.replies.rcpt_duplicate
        if len(envelope.rcpt_tos) >= service.settings.max_recipients:
            return service.replies.too_many_recipients
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return service.replies.rcpt_ok

    def data_status(self, server: _HarnessSMTP, session: Session, envelope: Envelope) -> str:
        queue_id = f"MH{next(_queue_ids):08X}"
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8", "surrogateescape")
        peer = session.peer
        auth_data = session.auth_data
        login = auth_data.login if isinstance(auth_data, LoginPassword) else None
        if login is None and server.xclient_login is not None:
            login = server.xclient_login.encode("utf-8")
        received_at = dt.datetime.now(dt.UTC)
        if self.service.settings.trace_header:
            content = (
                received_header(
                    helo=session.host_name,
                    peer_ip=peer[0] if peer else None,
                    hostname=self.service.settings.hostname,
                    secure=server.secure,
                    authenticated=bool(session.authenticated),
                    queue_id=queue_id,
                    mail_from=envelope.mail_from or "",
                    rcpt_tos=envelope.rcpt_tos,
                    when=received_at,
                )
                + content
            )
        captured = CapturedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=content,
            peer=server.peer_text,
            login=login.decode("utf-8", "replace") if login is not None else None,
            listener=server.listener_text,
            tls_version=server.tls_version,
            received_at=received_at,
            queue_id=queue_id,
        )
        self.service.messages.add(captured)
        deliver = self.service.deliver
        if deliver is not None:
            for rcpt in envelope.rcpt_tos:
                deliver(rcpt, content)
        return self.service.replies.data_accepted.format(queue_id=queue_id)

    def failure(self, error: Exception) -> str:
        # Client mistakes were taken apart in _HarnessSMTP.handle_exception: this is ours.
        self.service.errors.append(f"SMTP handler error: {type(error).__name__}: {error}")
        return self.service.replies.internal_error


def received_header(
    *,
    helo: str | None,
    peer_ip: str | None,
    hostname: str,
    secure: bool,
    authenticated: bool,
    queue_id: str,
    mail_from: str,
    rcpt_tos: list[str] | tuple[str, ...],
    when: dt.datetime,
) -> bytes:
    """The trace header Dovecot's submission prepends (lib-smtp, smtp-server-transaction.c).

    ``from`` is the EHLO name ("unknown" without one), then the client's address;
    ``with`` is ESMTP plus S for TLS and A for AUTH (RFC 3848); ``for`` only with
    exactly one recipient. Dovecot behind its login process writes no ``(using TLS...)``
    line, so neither do we.
    """
    peer = f" ([{peer_ip}])" if peer_ip else ""
    protocol = "ESMTP" + ("S" if secure else "") + ("A" if authenticated else "")
    date = _header_date(when)
    head = (
        f"Received: from {helo or 'unknown'}{peer}\r\n\tby {hostname} with {protocol}\r\n"
        f"\tid {queue_id}\r\n\t(envelope-from <{mail_from}>)"
    )
    if len(rcpt_tos) == 1:
        text = f"{head}\r\n\tfor <{rcpt_tos[0]}>; {date}\r\n"
    else:
        text = f"{head}; {date}\r\n"
    return text.encode("utf-8", "surrogateescape")


_last_header_date: tuple[int, str] = (-1, "")


def _header_date(when: dt.datetime) -> str:
    """RFC 5322 date of `when` to the second, formatted once per second (a message each
    costs a strftime otherwise)."""
    global _last_header_date
    second = int(when.timestamp())
    if _last_header_date[0] != second:
        whole = dt.datetime.fromtimestamp(second, dt.UTC)
        _last_header_date = (second, email.utils.format_datetime(whole))
    return _last_header_date[1]


def _close(server: _HarnessSMTP) -> None:
    if server.transport is not None:
        server.transport.close()


def _as_personality(responses: list[str], texts: replies.SMTPReplies, ip: str) -> list[str]:
    """EHLO's lines as the personality words and orders them (`SMTPReplies.ehlo_*`)."""
    first, *rest = (r[4:] for r in responses)
    if texts.ehlo_hello:
        first = f"{first} {texts.ehlo_hello.format(ip=ip)}"
    by_keyword = {line.split(" ", 1)[0].upper(): line for line in rest}
    if texts.auth_shown is not None and "AUTH" in by_keyword:
        offered = by_keyword["AUTH"].split()[1:]
        shown = [m for m in texts.auth_shown if m in offered] or offered
        by_keyword["AUTH"] = " ".join(["AUTH", *shown])
    if texts.ehlo_keywords is not None:
        extra = [k for k in by_keyword if k == "XCLIENT"]  # the relay's, never a provider's
        rest = [by_keyword[k] for k in (*texts.ehlo_keywords, *extra) if k in by_keyword]
    else:
        rest = [by_keyword.get(line.split(" ", 1)[0].upper(), line) for line in rest]
    lines = [first, *rest]
    return [("250 " if i == len(lines) - 1 else "250-") + line for i, line in enumerate(lines)]
