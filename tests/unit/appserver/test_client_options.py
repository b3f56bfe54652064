"""TCP_NODELAY and socket-timeout on accepted sockets: set once on the listener where
the kernel copies them (TCP on Linux), per socket elsewhere (unix sockets)."""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

import pytest

from appserver.listeners import bind, prepare_client, prepare_listener


def _timeouts(sock: socket.socket) -> tuple[float, float]:
    def read(option: int) -> float:
        seconds, micros = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, option, 16))
        return seconds + micros / 1_000_000

    return read(socket.SO_RCVTIMEO), read(socket.SO_SNDTIMEO)


def _accept_one(listener_sock: socket.socket, address: object, family: int) -> socket.socket:
    client = socket.socket(family, socket.SOCK_STREAM)
    client.connect(address)
    listener_sock.setblocking(True)
    accepted, _peer = listener_sock.accept()
    client.close()
    return accepted


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux copies the options")
def test_tcp_sockets_inherit_nodelay_and_the_timeout_from_the_listener() -> None:
    listener = bind("uwsgi", "127.0.0.1:0", 16, None)
    try:
        prepare_listener(listener, 2.5)
        assert listener.inherits_client_options
        accepted = _accept_one(listener.sock, listener.sock.getsockname(), socket.AF_INET)
        with accepted:
            prepare_client(accepted, listener, 2.5)  # nothing left to do
            assert _timeouts(accepted) == (2.5, 2.5)
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert accepted.gettimeout() is None  # no poll() before each recv/send
    finally:
        listener.sock.close()


def test_unix_sockets_get_the_timeout_one_by_one(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    listener = bind("uwsgi", path, 16, None)
    try:
        prepare_listener(listener, 1.5)
        assert not listener.inherits_client_options  # unix accept() copies nothing
        accepted = _accept_one(listener.sock, path, socket.AF_UNIX)
        with accepted:
            assert _timeouts(accepted) == (0.0, 0.0)
            prepare_client(accepted, listener, 1.5)
            assert _timeouts(accepted) == (1.5, 1.5)
    finally:
        listener.sock.close()


def test_an_expired_kernel_timeout_raises_what_the_handlers_catch(tmp_path: Path) -> None:
    from appserver.response import SOCKET_TIMEOUTS

    listener = bind("uwsgi", "127.0.0.1:0", 16, None)
    try:
        prepare_listener(listener, 0.2)
        client = socket.create_connection(listener.sock.getsockname())
        listener.sock.setblocking(True)
        accepted, _peer = listener.sock.accept()
        prepare_client(accepted, listener, 0.2)
        with client, accepted, pytest.raises(SOCKET_TIMEOUTS):
            accepted.recv(10)
    finally:
        listener.sock.close()
