"""One client connection through the front: admit it (or not), then pump both ways.

Connection-level faults are decided once, from the fault set in force when
the connection was accepted, in the order a real network meets them:
allowlist, connection cap, reset, hang, TLS handshake, slow greeting. Then
two pumps run (client → backend "upstream", backend → client "downstream"),
each a reader and a writer joined by a small queue; the writers consult the
*current* fault set for every chunk (live faults).
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from mailharness.servers.faults import replies
from mailharness.servers.faults.channel import Channel, StreamChannel, accepted_channel, connect
from mailharness.servers.faults.framing import LineScanner
from mailharness.servers.faults.shaping import Shaper, Stream
from mailharness.servers.faults.starttls import Forward, Gate, Reply, StartTLS, make_gate
from mailharness.servers.faults.tls import start_server_tls
from mailharness.servers.faults.toxics import (
    Allowlist,
    ConnectionCap,
    DropOnCommand,
    ExcessReply,
    Fault,
    Hang,
    Reset,
    SlowGreeting,
    TLSVersion,
)
from mailharness.servers.transcript import Transcript, TranscriptLog

if TYPE_CHECKING:
    from mailharness.servers.faults.front import FaultFront

F = TypeVar("F")
Chunk = tuple[float, bytes] | None  # (arrival time, data); None: end of stream
# Chunks in flight per direction: enough to keep a paced writer busy, small enough
# that a slow client pushes back on the backend instead of the front buffering a mailbox.
QUEUE_CHUNKS = 8
# A graceful close (TLS close_notify) may wait for a peer that is gone; then abort.
CLOSE_TIMEOUT = 1.0
BACKEND_CONNECT_TIMEOUT = 5.0
_LINGER_RESET = struct.pack("ii", 1, 0)


def _first(faults: Iterable[Fault], kind: type[F]) -> F | None:
    return next((f for f in faults if isinstance(f, kind)), None)


class Session:
    """See the module docstring. ``run()`` returns when the connection is over."""

    def __init__(
        self, front: FaultFront, sock: socket.socket, faults: tuple[Fault, ...], rng: random.Random
    ) -> None:
        self.front = front
        self.faults = faults
        self._rng = rng
        self._sock: socket.socket | None = sock
        host, port, *_ = sock.getpeername()
        self.client_ip: str = host
        self.peer = f"{host}:{port}"
        self.accepted = time.monotonic()
        self._transcript: Transcript | None = None
        self._plain: StreamChannel | None = None
        self.client: Channel | None = None
        self.backend: StreamChannel | None = None
        self._client_lock = asyncio.Lock()
        self._gate: Gate | None = None
        self._pin: TLSVersion | None = None
        self._greeting_due = 0.0
        self._over = asyncio.Event()
        self._scanner = LineScanner()
        self._shapers: dict[Stream, Shaper] = {
            s: Shaper(s, rng) for s in ("upstream", "downstream")
        }
        self.holds_slot = False

    # --- bookkeeping -----------------------------------------------------------------
    def event(self, text: str) -> None:
        """A `*` line in this connection's transcript (opened at the first event)."""
        transcript = self._opened()
        if transcript is not None:
            transcript.event(text)

    def _opened(self) -> Transcript | None:
        log: TranscriptLog | None = self.front.transcripts
        if log is None:
            return None
        if self._transcript is None:
            protocol = self.front.protocol or "tcp"
            self._transcript = log.open(protocol, self.peer, f"fault front {self.front.label}")
        return self._transcript

    def _rolled(self, kind: type[F]) -> F | None:
        fault = _first(self.faults, kind)
        probability: float = getattr(fault, "probability", 1.0)
        if fault is None or (probability < 1.0 and self._rng.random() >= probability):
            return None
        return fault

    # --- admission -------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._run()
        except Exception as exc:  # a connection's failure must never reach the loop
            self.event(f"front error: {exc!r}")
        finally:
            await self._close()

    async def _run(self) -> None:
        deny = None
        allowlist = _first(self.faults, Allowlist)
        if allowlist is not None and not allowlist.allows(self.client_ip):
            self.event(f"fault: {allowlist} refuses {self.client_ip} ({allowlist.mode})")
            if allowlist.mode not in ("login", "rcpt"):
                await self._refuse(allowlist.mode, replies.ACCESS_DENIED_GREETING)
                return
            deny = allowlist.mode
        cap = _first(self.faults, ConnectionCap)
        if not self.front.cap_acquire(self.client_ip, cap):
            assert cap is not None
            self.event(f"fault: {cap} exceeded by {self.client_ip}")
            await self._refuse(cap.on_excess, replies.TOO_MANY_CONNECTIONS)
            return
        self.holds_slot = True
        if (reset := self._rolled(Reset)) is not None:
            if reset.after_seconds:
                await asyncio.sleep(reset.after_seconds)
            self.event(f"fault: {reset}: RST")
            self._reset()
            return
        if (hang := self._rolled(Hang)) is not None:
            self.event(f"fault: {hang}: accepted, never greeting")
            await self._hang()
            return
        self._plain = self.client = await self._wrap()
        self._pin = _first(self.faults, TLSVersion)
        implicit = self._pin is not None and self._pin.security == "implicit"
        if implicit and not await self._start_tls(None):
            return
        if (slow := self._rolled(SlowGreeting)) is not None:
            self.event(f"fault: {slow}")
            self._greeting_due = self.accepted + slow.seconds
        try:
            # A front that ends TLS connects from the backend's own address: Dovecot counts
            # such a session as secured (as it would one from login_trusted_networks), so a
            # strict backend takes the credentials the client sent over TLS to the front.
            source = self.front.backend[0] if self._pin is not None else None
            self.backend = await connect(self.front.backend, BACKEND_CONNECT_TIMEOUT, source)
        except (OSError, TimeoutError) as exc:
            self.event(f"backend {self.front.backend} unreachable: {exc!r}")
            return
        protocol = self.front.protocol
        if protocol is not None and (self._pin is not None or deny is not None):
            self._gate = make_gate(
                protocol,
                starttls=self._pin is not None and self._pin.security == "starttls",
                tls_active=self._pin is not None and self._pin.security == "implicit",
                deny=deny,
                client_ip=self.client_ip,
            )
        await self._pump()

    async def _wrap(self) -> StreamChannel:
        sock, self._sock = self._sock, None
        assert sock is not None
        return await accepted_channel(sock)

    def _reset(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            sock.close()

    async def _hang(self) -> None:
        channel = self.client = await self._wrap()
        while await channel.read():
            pass

    async def _refuse(
        self, mode: str | ExcessReply, greetings: dict[replies.Protocol, str]
    ) -> None:
        if mode == "reset":
            self._reset()
        elif mode == "hang":
            await self._hang()
        elif mode == "greeting" or callable(mode):
            if callable(mode):
                data = mode(self.client_ip)
            else:
                assert self.front.protocol is not None  # checked when the fault was set
                data = replies.line(greetings[self.front.protocol], ip=self.client_ip)
            self.client = await self._wrap()
            await self.client.write(data)
        # "close": the finally clause closes the socket: EOF before any greeting.

    async def _start_tls(self, reply: bytes | None) -> bool:
        """TLS with the pinned version; for STARTTLS, after writing ``reply`` in the clear."""
        pin, contexts, plain = self._pin, self.front.contexts, self._plain
        assert pin is not None and contexts is not None and plain is not None
        how = "implicit" if reply is None else "STARTTLS"
        async with self._client_lock:
            if reply is not None:
                await plain.write(reply)
            try:
                self.client, version = await start_server_tls(plain, pin, contexts)
            except Exception as exc:  # ssl.SSLError, tlslite's TLSError, OSError, timeout
                self.event(f"TLS handshake failed ({how}, {pin.version} only): {exc!r}")
                return False
        transcript = self._opened()
        if transcript is not None:  # later events carry the version the front negotiated
            transcript.tls(version, f"{how}, cert {pin.variant}")
        return True

    # --- pumping ---------------------------------------------------------------------
    async def _pump(self) -> None:
        upstream: asyncio.Queue[Chunk] = asyncio.Queue(QUEUE_CHUNKS)
        downstream: asyncio.Queue[Chunk] = asyncio.Queue(QUEUE_CHUNKS)
        tasks = [
            asyncio.create_task(self._guard(self._read_client(upstream), ends=False)),
            asyncio.create_task(self._guard(self._read_backend(downstream), ends=False)),
            asyncio.create_task(self._guard(self._write("upstream", upstream, self._to_backend))),
            asyncio.create_task(
                self._guard(self._write("downstream", downstream, self._to_client))
            ),
        ]
        try:
            await self._over.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _guard(self, work: Any, *, ends: bool = True) -> None:
        """A writer's end (EOF flushed, or a drop) ends the connection; so does any error.

        A reader that reaches EOF only queues it: its writer flushes what is
        queued first, so the last reply before a server's close still arrives.
        """
        try:
            await work
        except (ConnectionError, OSError) as exc:
            self.event(f"connection error: {exc!r}")
            self._over.set()
        finally:
            if ends:
                self._over.set()

    async def _read_client(self, queue: asyncio.Queue[Chunk]) -> None:
        assert self.client is not None
        while data := await self.client.read():
            actions = self._gate.from_client(data) if self._gate is not None else [Forward(data)]
            for action in actions:
                if isinstance(action, Forward):
                    if self._command_drop(action.data):
                        self._over.set()
                        return
                    await queue.put((time.monotonic(), action.data))
                elif isinstance(action, Reply):
                    await self._to_client(action.data)
                elif isinstance(action, StartTLS):
                    if not await self._start_tls(action.reply):
                        self._over.set()
                        return
                    assert self._gate is not None
                    self._gate.tls_active = True
        await queue.put(None)

    async def _read_backend(self, queue: asyncio.Queue[Chunk]) -> None:
        assert self.backend is not None
        while data := await self.backend.read():
            if self._gate is not None:
                data = self._gate.from_server(data)
            if data:
                await queue.put((time.monotonic(), data))
        await queue.put(None)

    def _command_drop(self, data: bytes) -> bool:
        """DropOnCommand: True to close at once; or arm the downstream reply budget."""
        rules = [f for f in self.front.faults if isinstance(f, DropOnCommand)]
        if not rules:
            return False
        for line in self._scanner.lines(data):
            for rule in rules:
                if rule.matches(line) and (
                    rule.probability >= 1.0 or self._rng.random() < rule.probability
                ):
                    shown = line.rstrip(b"\r\n")[:80].decode("utf-8", "replace")
                    self.event(f"fault: {rule} matched {shown!r}")
                    if rule.reply_bytes == 0:
                        return True
                    self._shapers["downstream"].set_budget(rule.reply_bytes)
                    return False
        return False

    async def _write(
        self,
        stream: Stream,
        queue: asyncio.Queue[Chunk],
        write: Callable[[bytes], Any],
    ) -> None:
        shaper = self._shapers[stream]
        while (item := await queue.get()) is not None:
            arrived, data = item
            due = arrived + shaper.delay(self.front.faults)
            if stream == "downstream" and self._greeting_due:
                due, self._greeting_due = max(due, self._greeting_due), 0.0
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            data, drop = shaper.limit(self.front.faults, data)
            await shaper.send(data, write, lambda: shaper.rate(self.front.faults))
            if drop is not None:
                self.event(f"fault: {drop}: closing")
                return

    async def _to_client(self, data: bytes) -> None:
        async with self._client_lock:
            assert self.client is not None
            await self.client.write(data)

    async def _to_backend(self, data: bytes) -> None:
        assert self.backend is not None
        await self.backend.write(data)

    # --- teardown --------------------------------------------------------------------
    def abort(self) -> None:
        """The front is stopping: close everything at once."""
        for channel in (self.client, self.backend):
            if channel is not None:
                channel.abort()

    async def _close(self) -> None:
        if self.holds_slot:
            self.holds_slot = False
            self.front.cap_release(self.client_ip)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for channel in (self.client, self.backend):
            if channel is None:
                continue
            try:
                await asyncio.wait_for(channel.close(), CLOSE_TIMEOUT)
            except asyncio.CancelledError:
                self.abort()
                raise
            except Exception:
                channel.abort()
