"""WebSocket (Upgrade) pass-through: a real ``websockets`` echo server behind a real edge,
and a real ``websockets`` client through it (nginx's proxy_set_header Upgrade recipe)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.edge import EdgeProcess, start_edge, write_config
from tests.support.processes import ServerProcess, wait_until

ECHO_APP = Path(__file__).parent / "apps" / "ws_echo.py"

CONFIG = """
error_log: {{level: info}}
servers:
  - listen: 127.0.0.1:0
    locations:
      - path: /ws
        proxy: echo
        protocol: http
        proxy_read_timeout: 1s
        params:
          Upgrade: $http_upgrade
          Connection: $connection_upgrade
      - path: /plain
        proxy: echo
        protocol: http
upstreams:
  echo:
    servers: ["127.0.0.1:{port}"]
"""


@pytest.fixture(scope="module")
def echo_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    directory = tmp_path_factory.mktemp("echo")
    server = ServerProcess(
        [sys.executable, str(ECHO_APP)], cwd=directory, log_path=directory / "echo.log"
    ).start()
    try:
        yield int(server.wait_for_log(r"listening on (\d+)").group(1))
    finally:
        assert server.proc is not None
        server.proc.terminate()
        server.proc.wait(10)


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, echo_port: int
) -> Iterator[tuple[EdgeProcess, str]]:
    directory = tmp_path_factory.mktemp("edge")
    config = write_config(directory, CONFIG.format(port=echo_port))
    process = start_edge(["-c", str(config)], cwd=directory, log_path=directory / "edge.log")
    try:
        host, port = process.addresses()[0]
        yield process, f"ws://{host}:{port}"
    finally:
        process.stop()


def _worker_fds(process: EdgeProcess) -> int:
    pid = max(process.worker_pids())
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_thousand_messages_and_large_frames_go_through(edge: tuple[EdgeProcess, str]) -> None:
    process, base = edge

    async def exchange() -> None:
        async with connect(base + "/ws", max_size=8 * 1024 * 1024) as ws:
            for i in range(1000):
                await ws.send(f"message {i}")
                assert await ws.recv() == f"message {i}"
            big = os.urandom(1024 * 1024)
            for _ in range(3):
                await ws.send(big)
                assert await ws.recv() == big

    asyncio.run(exchange())
    process.wait_for_log(r'"GET /ws HTTP/1.1" 101 \d{7,}')


def test_a_close_from_the_client_and_from_the_server(edge: tuple[EdgeProcess, str]) -> None:
    process, base = edge
    before = _worker_fds(process)

    async def both() -> tuple[int | None, int | None]:
        async with connect(base + "/ws") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            await ws.close(1000, "client says bye")
            client_code = ws.close_code
        async with connect(base + "/ws") as ws:
            await ws.send("close-me")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            server_code = ws.close_code
        # A client that drops the TCP connection without a close frame.
        ws = await connect(base + "/ws")
        await ws.send("hi")
        assert await ws.recv() == "hi"
        ws.transport.abort()
        return client_code, server_code

    start = len(process.log())
    assert asyncio.run(both()) == (1000, 4000)
    # The close handshake ends with the server closing TCP; the dropped client is ours to see.
    process.wait_for_log("upstream closed the upgraded connection", start=start)
    process.wait_for_log("client closed the upgraded connection", start=start)
    # Both tunnels are gone: the worker holds no descriptor more than before.
    wait_until(lambda: _worker_fds(process) <= before, timeout=5, what="fds released")


def test_an_idle_tunnel_ends_after_proxy_read_timeout(edge: tuple[EdgeProcess, str]) -> None:
    process, base = edge

    async def idle() -> float:
        async with connect(base + "/ws", ping_interval=None) as ws:
            await ws.send("silence")
            started = time.monotonic()
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return time.monotonic() - started

    elapsed = asyncio.run(idle())
    assert 0.8 < elapsed < 5
    process.wait_for_log(r"upstream timed out \(proxy_read_timeout\) in the upgraded connection")


def test_without_the_upgrade_params_nothing_is_upgraded(edge: tuple[EdgeProcess, str]) -> None:
    """nginx semantics: Upgrade and Connection are hop-by-hop, passed only when configured;
    without them the echo server sees a plain GET and refuses it (426)."""
    _process, base = edge
    host, port = base[len("ws://") :].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"GET /plain HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        head = sock.recv(65536)
    assert not head.startswith(b"HTTP/1.1 101"), head
    assert head.split(b" ", 2)[1] in (b"400", b"426"), head
