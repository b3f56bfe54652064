"""Drive ``edge.protocol.HttpConnection`` without sockets: a MockTransport (uvicorn's way).

Bytes go in through ``data_received`` and come out of the transport's buffer;
``Harness`` builds a ``ServerState`` from YAML with in-memory logs.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from edge.config.load import parse_config
from edge.config.schema import ErrorLogSettings
from edge.errorlog import ErrorLog
from edge.exchange import Exchange
from edge.protocol import HttpConnection
from edge.state import ServerState


class MemoryLogFile:
    """A LogFile stand-in that keeps lines in memory."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_line(self, line: str) -> None:
        self.lines.extend(line.split("\n"))

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class MockTransport:
    """Just enough of asyncio.Transport for HttpConnection."""

    def __init__(self, protocol: HttpConnection, peer: tuple[str, int]) -> None:
        self.protocol = protocol
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.reading = True
        self.extra = {"peername": peer, "sockname": ("127.0.0.1", 8080)}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        assert not self.eof_written, "write after write_eof"
        self.buffer += data

    def writelines(self, parts: Any) -> None:
        for part in parts:
            self.write(part)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


class Client:
    def __init__(self, protocol: HttpConnection, transport: MockTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.offset = 0

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def eof(self) -> None:
        if not self.protocol.eof_received():
            self.transport.close()

    def disconnect(self) -> None:
        self.transport.closed = True
        self.protocol.connection_lost(ConnectionResetError())

    async def response(self, timeout: float = 2.0) -> Response:
        """The next complete response in the transport's buffer."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            parsed = parse_one(bytes(self.transport.buffer[self.offset :]))
            if parsed is not None:
                response, used = parsed
                self.offset += used
                return response
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no complete response in {bytes(self.transport.buffer)!r}")
            await asyncio.sleep(0.005)

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def parse_one(data: bytes, head_only: bool = False) -> tuple[Response, int] | None:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    response = Response(status, headers, b"")  # type: ignore[arg-type]
    pos = end + 4
    if status < 200 or status in (204, 304) or head_only:
        return response, pos
    length = response.header("Content-Length")
    if length is not None:
        if len(data) < pos + int(length):
            return None
        response.body = data[pos : pos + int(length)]
        return response, pos + int(length)
    if response.header("Transfer-Encoding") == "chunked":
        body = b""
        while True:
            line_end = data.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(data[pos:line_end], 16)
            if len(data) < line_end + 2 + size + 2:
                return None
            body += data[line_end + 2 : line_end + 2 + size]
            pos = line_end + 2 + size + 2
            if size == 0:
                response.body = body
                return response, pos
    return None  # close-delimited: not used by these tests


class Harness:
    def __init__(self, yaml_text: str, tmp_path: Path) -> None:
        self.config = parse_config(textwrap.dedent(yaml_text), base_dir=str(tmp_path))
        self.error_file = MemoryLogFile()
        self.access_file = MemoryLogFile()
        self.state = ServerState(
            self.config,
            error_log=ErrorLog(ErrorLogSettings(level="info"), file=self.error_file),  # type: ignore[arg-type]
            access_log=self.access_file,  # type: ignore[arg-type]
        )
        self.clients: list[Client] = []

    async def start(self) -> None:
        await self.state.handlers.start()

    def use_handler(
        self, handle: Callable[[Exchange], Awaitable[None]], reads_body: bool = True
    ) -> None:
        """Serve every location with ``handle``."""

        class Handler:
            pass

        handler = Handler()
        handler.handle = handle  # type: ignore[attr-defined]
        handler.reads_body = reads_body  # type: ignore[attr-defined]
        self.state.handlers.handler_for = lambda location: handler  # type: ignore[assignment,method-assign,return-value]

    def connect(self, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> Client:
        listen = self.config.servers[0].listen[0]
        protocol = HttpConnection(self.state, listen)
        transport = MockTransport(protocol, peer)
        protocol.connection_made(transport)  # type: ignore[arg-type]
        client = Client(protocol, transport)
        self.clients.append(client)
        return client

    @property
    def errors(self) -> list[str]:
        return self.error_file.lines

    @property
    def access(self) -> list[str]:
        return self.access_file.lines
