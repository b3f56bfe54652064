"""The request body as handlers read it (``edge.exchange.RequestBody``).

Theory of operation: the connection's ``RequestParser`` already holds every
byte the client sent; this reader pulls ``Data`` events out of it on demand
and stops at the request's ``EndOfMessage`` (what follows belongs to the next
pipelined request).  When the parser has nothing, the reader asks the
connection to resume reading (flow control: the connection pauses the socket
while body bytes pile up unread) and waits for the next ``data_received``,
at most ``client_body_timeout`` each time, as nginx times "between two
successive read operations".  ``Expect: 100-continue`` is answered here, on
the first read, so a client is only told to send a body somebody will read.

The parser enforces ``client_max_body_size`` on chunked bodies as they stream
(the front set its limit after routing) and refuses bad chunk framing; both
surface as ``ClientError`` with the parser's status (413/400), after which the
connection cannot be reused.

``read_all`` exists for uwsgi upstreams, which need CONTENT_LENGTH before the
body: up to ``spool_limit`` bytes stay in memory, past it the body goes to a
temporary file, which ``cleanup()`` removes when the request ends (nginx's
``client_body_buffer_size`` / ``client_body_temp_path``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path
from typing import Protocol

from edge.exchange import ClientError
from httpproto import NEED_DATA, Data, EndOfMessage, HttpProtocolError, RequestParser
from httpproto.response import CONTINUE

READ_SIZE = 65536


class BodySource(Protocol):
    """What the reader needs from the connection (``edge.protocol.HttpConnection``)."""

    parser: RequestParser

    def write(self, data: bytes) -> None: ...

    def body_consumed(self, size: int) -> None: ...

    def body_starved(self) -> None: ...

    def body_failed(self) -> None: ...

    async def wait_for_data(self, timeout: float) -> None: ...


class RequestBodyReader:
    __slots__ = (
        "_source",
        "_length",
        "_timeout",
        "_pending",
        "_done",
        "_continue_sent",
        "received",
        "_temp_paths",
    )

    def __init__(
        self, source: BodySource, content_length: int | None, chunked: bool, timeout: float
    ) -> None:
        self._source = source
        # No Content-Length and not chunked: a request without a body (RFC 9112 §6.3).
        self._length: int | None = None if chunked else (content_length or 0)
        self._timeout = timeout
        self._pending = b""
        # Even a request without a body has its EndOfMessage to take from the parser.
        self._done = False
        self._continue_sent = False
        self.received = 0
        self._temp_paths: list[str] = []

    @property
    def length(self) -> int | None:
        """Content-Length; None for a chunked body until it has been read whole."""
        return self._length

    @property
    def done(self) -> bool:
        """True once the whole body has been taken from the parser."""
        return self._done

    async def read(self, max_bytes: int = READ_SIZE) -> bytes:
        pending = self._pending
        if pending:
            if len(pending) <= max_bytes:
                self._pending = b""
                return pending
            self._pending = pending[max_bytes:]
            return pending[:max_bytes]
        while not self._done:
            data = self._pull()
            if data is None:
                await self._wait()
                continue
            if data:
                if len(data) > max_bytes:
                    self._pending = data[max_bytes:]
                    return data[:max_bytes]
                return data
        return b""

    def _pull(self) -> bytes | None:
        """The next body bytes in the parser (b"" at the end), or None when it has none."""
        source = self._source
        parser = source.parser
        try:
            event = parser.next_event()
        except HttpProtocolError as exc:
            self._done = True
            source.body_failed()
            raise ClientError(
                f"client sent invalid request body: {exc}", status=exc.status_hint
            ) from None
        if type(event) is Data:
            data = event.data
            self.received += len(data)
            source.body_consumed(len(data))
            return data
        if type(event) is EndOfMessage:
            self._done = True
            if self._length is None:
                self._length = self.received
            return b""
        if event is NEED_DATA:
            return None
        # A head or CLOSED cannot come before this request's EndOfMessage.
        raise AssertionError(f"unexpected parser event in a body: {event!r}")

    async def _wait(self) -> None:
        source = self._source
        if not self._continue_sent:
            self._continue_sent = True
            if source.parser.waiting_for_100_continue:
                source.write(CONTINUE)
        source.body_starved()
        try:
            await source.wait_for_data(self._timeout)
        except TimeoutError:
            self._done = True
            source.body_failed()
            raise ClientError(
                "client timed out while reading client request body", status=408
            ) from None

    def drain_buffered(self) -> bool:
        """Discard what the parser already holds of this body, without waiting.

        True when the body is complete (the connection can serve the next request).
        """
        self._pending = b""
        try:
            while not self._done:
                if self._pull() is None:
                    return False
        except ClientError:
            return False
        return True

    async def discard(self) -> None:
        """Read and drop the whole body (nginx's ``ngx_http_discard_request_body``)."""
        self._pending = b""
        while not self._done:
            if self._pull() is None:
                await self._wait()

    async def read_all(
        self, spool_limit: int = 1 << 20
    ) -> tuple[int, list[bytes] | os.PathLike[str]]:
        chunks: list[bytes] = []
        size = 0
        spool: tempfile._TemporaryFileWrapper[bytes] | None = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.read(READ_SIZE * 4)
                if not data:
                    break
                size += len(data)
                if spool is None:
                    chunks.append(data)
                    if size > spool_limit:
                        spool = tempfile.NamedTemporaryFile(prefix="edge-body-", delete=False)
                        self._temp_paths.append(spool.name)
                        pending, chunks = chunks, []
                        await loop.run_in_executor(None, spool.writelines, pending)
                else:
                    await loop.run_in_executor(None, spool.write, data)
        finally:
            if spool is not None:
                spool.close()
        if spool is None:
            return size, chunks
        return size, Path(spool.name)

    def cleanup(self) -> None:
        """Remove spooled temp files (called by the front when the request ends)."""
        for path in self._temp_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._temp_paths.clear()
