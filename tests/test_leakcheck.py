"""The session's leak check names what it finds: a socket by its addresses, not its fd."""

from __future__ import annotations

import socket

import pytest

from tests.leakcheck import (
    _describe,
    _hex_address,
    _sockets,
    assert_stopped_listening,
    listening_sockets,
)


def test_proc_net_addresses_are_read_as_written() -> None:
    assert _hex_address("0100007F:1FA3") == "127.0.0.1:8099"
    assert _hex_address("00000000000000000000000001000000:0019") == (
        "[0000:0000:0000:0000:0000:0000:0000:0001]:25"
    )


def test_a_left_socket_is_described_by_its_addresses() -> None:
    before = _sockets()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        described = _describe(_sockets() - before)
    # 0A: listening (any other socket a background thread opened meanwhile is ignored)
    assert any(f"tcp 127.0.0.1:{port} -> 0.0.0.0:0 state 0A" in text for text in described)


def _listener(port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_a_stopped_listener_is_told_from_a_new_one_on_its_port() -> None:
    """By socket, not by port number: another worker may bind the freed number."""
    first = _listener()
    port = first.getsockname()[1]
    before = listening_sockets([port])
    with pytest.raises(AssertionError, match="still does"):
        assert_stopped_listening(before)
    first.close()
    assert_stopped_listening(before)
    with _listener(port):  # ours again, on the same port: still a failure
        with pytest.raises(AssertionError, match="this process listens on it again"):
            assert_stopped_listening(before)


def test_nothing_listening_to_begin_with_is_an_error() -> None:
    with socket.socket() as unbound:
        unbound.bind(("127.0.0.1", 0))
        port = unbound.getsockname()[1]
    with pytest.raises(AssertionError, match="nothing was listening"):
        assert_stopped_listening(listening_sockets([port]))
