"""The protocol-based uwsgi upstream connection: reads, flow control, timeouts, errors."""

from __future__ import annotations

import asyncio

import pytest

from edge.config.schema import Endpoint
from edge.upstream.connection import STREAM_LIMIT, UpstreamConnection, open_connection


async def _server(handler: object) -> tuple[asyncio.Server, Endpoint]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    port = server.sockets[0].getsockname()[1]
    return server, Endpoint(host="127.0.0.1", port=port)


def test_send_read_and_eof() -> None:
    async def scenario() -> None:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.readexactly(5)
            writer.write(data.upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server, endpoint = await _server(echo)
        async with server:
            connection = await open_connection(endpoint, lambda: 7.0, 5.0)
            assert connection.opened == 7.0 and not connection.reused
            await connection.send(b"hello", 5.0)
            received = b""
            while True:
                data = await connection.read(3, 5.0)
                if not data:
                    break
                assert len(data) <= 3
                received += data
            assert received == b"HELLO"
            assert await connection.read(3, 5.0) == b""
            connection.close()
            await asyncio.sleep(0.05)

    asyncio.run(scenario())


def test_read_times_out() -> None:
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the client gives up
            writer.close()
            await writer.wait_closed()

        server, endpoint = await _server(silent)
        async with server:
            connection = await open_connection(endpoint, lambda: 0.0)
            with pytest.raises(TimeoutError):
                await connection.read(10, 0.05)
            connection.abort()
            await asyncio.sleep(0.05)

    asyncio.run(scenario())


def test_reading_pauses_past_the_limit_and_resumes() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        connection = UpstreamConnection(Endpoint(host="x", port=1), loop)

        class Transport:
            paused = False

            def pause_reading(self) -> None:
                self.paused = True

            def resume_reading(self) -> None:
                self.paused = False

        transport = Transport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        connection.data_received(b"x" * (2 * STREAM_LIMIT + 1))
        assert transport.paused
        while transport.paused:
            assert await connection.read(STREAM_LIMIT // 2, None)
        connection.connection_lost(ConnectionResetError(104, "reset"))
        with pytest.raises(ConnectionResetError):
            await connection.read(STREAM_LIMIT, None)

    asyncio.run(scenario())


def test_connect_refused() -> None:
    async def scenario() -> None:
        server, endpoint = await _server(lambda r, w: None)
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await open_connection(endpoint, lambda: 0.0, 5.0)

    asyncio.run(scenario())
