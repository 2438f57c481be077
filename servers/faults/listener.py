"""The front's port, in one of three states: serving, refusing, or silently dropping SYNs.

One address for the front's whole life: switching state binds a new socket
to the same address *before* closing the old one (``SO_REUSEPORT`` allows
the overlap), so no other process can take the port in between.

- SERVE: listening; accepted sockets go to ``on_accept``.
- REFUSE: bound but not listening; the kernel answers SYN with RST
  (``ConnectionRefusedError`` at once).
- DROP: listening with backlog 0 and its one accept-queue slot filled by a
  connection of our own that is never accepted. Linux drops SYNs to a
  listener whose accept queue is full, so clients time out in connect, as
  behind a firewall that drops packets, without root or iptables.

Every method must run on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
from collections.abc import Callable

from mailharness.servers.listeners import LISTEN_BACKLOG, require_loopback


class ListenerMode(enum.Enum):
    SERVE = "serve"
    REFUSE = "refuse"
    DROP = "drop"


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted sockets (see servers.listeners).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    """The front's listening port; see the module docstring."""

    def __init__(self, host: str, on_accept: Callable[[socket.socket], None]) -> None:
        self.host = require_loopback(host)
        self._on_accept = on_accept
        self._sock: socket.socket | None = None
        self._filler: socket.socket | None = None
        self.mode: ListenerMode | None = None
        self.port = 0

    def open(self, mode: ListenerMode, port: int = 0) -> int:
        """Bind (port 0: the kernel picks one) in ``mode``; returns the port."""
        self._sock = _bound_socket(self.host, port)
        self.port = self._sock.getsockname()[1]
        self._enter(mode)
        return self.port

    def switch(self, mode: ListenerMode) -> None:
        if mode is self.mode or self._sock is None:
            return
        fresh = _bound_socket(self.host, self.port)
        self._release()
        self._sock = fresh
        self._enter(mode)

    def _enter(self, mode: ListenerMode) -> None:
        assert self._sock is not None
        self.mode = mode
        if mode is ListenerMode.SERVE:
            self._sock.listen(LISTEN_BACKLOG)
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._accept_ready)
        elif mode is ListenerMode.DROP:
            self._sock.listen(0)
            # Fill the single accept-queue slot. The handshake completes in the kernel,
            # so a blocking connect returns at once; it is never accepted.
            filler = socket.socket(self._sock.family, socket.SOCK_STREAM)
            filler.settimeout(1.0)
            try:
                filler.connect((self.host, self.port))
            except BaseException:
                filler.close()
                raise
            self._filler = filler
        # REFUSE: bound, not listening.

    def _accept_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                conn, _address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ECONNABORTED: the client gave up before we accepted
            conn.setblocking(False)
            self._on_accept(conn)

    def _release(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self.mode is ListenerMode.SERVE:
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        filler, self._filler = self._filler, None
        if filler is not None:
            filler.close()

    def close(self) -> None:
        self._release()
        self.mode = None
