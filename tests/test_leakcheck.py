"""The session's leak check names what it finds: a socket by its addresses, not its fd."""

from __future__ import annotations

import socket

from tests.leakcheck import _describe, _hex_address, _sockets


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
