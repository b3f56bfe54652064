"""The request body as ``wsgi.input``.

``InputStream`` never reads past the body: it is bounded by CONTENT_LENGTH (or,
for chunked HTTP bodies, by the parser's end of message), so an app that
calls ``read()`` cannot block on the next pipelined request or on a client
that keeps its connection open.  A body cut short raises ``ClientDisconnected``
(an ``OSError``, which is what PEP 3333 apps and Django expect from I/O).

``buffer_body`` implements uWSGI's ``post-buffering``: the body is read before
the app runs, into memory up to the limit and into an unnamed temporary file
beyond it, so a slow upload never holds a worker thread inside the app.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from typing import BinaryIO

ReadChunk = Callable[[int], bytes]

READ_SIZE = 65536
# Body left unread by the app is discarded, up to this size, to keep the connection:
# beyond it, closing is cheaper than reading (and the keep-alive is declined up front).
DRAIN_LIMIT = 65536
MAX_READ = 262144


class ClientDisconnected(OSError):
    """The client went away (or stopped sending) before the whole body arrived.

    ``status`` is what the client is answered when nothing was sent yet (0: it is
    gone, send nothing).
    """

    status = 0


class MalformedBody(ClientDisconnected):
    """The body broke its framing (a bad chunk): the client gets 400 if nothing was sent yet."""

    status = 400


class BodyTimeout(ClientDisconnected):
    """The body did not arrive within ``request-body-timeout``: 408 if nothing was sent yet."""

    status = 408


class InputStream:
    """A file-like view of a body arriving from ``read_chunk``.

    ``length`` None means the source knows where the body ends (de-chunked HTTP);
    then ``read_chunk`` returns b"" at the end.
    """

    __slots__ = ("_read_chunk", "_remaining", "_buffer", "_length", "_eof", "failed")

    def __init__(self, read_chunk: ReadChunk, length: int | None, preread: bytes = b"") -> None:
        self._read_chunk = read_chunk
        self._length = length
        if length is not None and len(preread) > length:
            preread = preread[:length]
        self._buffer = preread
        self._remaining = (length - len(preread)) if length is not None else -1
        self._eof = length is not None and self._remaining == 0
        self.failed = False  # a read raised: the connection cannot be reused

    @property
    def exhausted(self) -> bool:
        """True when the whole body has been read from the client."""
        return self._eof

    @property
    def pending(self) -> int:
        """Body bytes the client has still to send: -1 when unknown (a chunked body)."""
        if self._eof:
            return 0
        return self._remaining if self._length is not None else -1

    def _fill(self, want: int) -> bytes:
        """Read the next piece of body from the client (b"" at the end of the body)."""
        if self._eof:
            return b""
        # recv(n) allocates n bytes up front, so ask for at most MAX_READ at a time.
        want = min(want, MAX_READ)
        if self._remaining > 0:
            want = min(want, self._remaining)
        try:
            data = self._read_chunk(max(want, 1))
        except BaseException:
            self.failed = True
            raise
        if not data:
            if self._remaining > 0:
                self.failed = True
                received = (self._length or 0) - self._remaining
                raise ClientDisconnected(
                    f"client disconnected after {received} of {self._length} body bytes"
                )
            self._eof = True
            return b""
        if self._remaining > 0:
            self._remaining -= len(data)
            if self._remaining <= 0:
                self._eof = True
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = [self._buffer]
            self._buffer = b""
            while True:
                data = self._fill(READ_SIZE)
                if not data:
                    return b"".join(parts)
                parts.append(data)
        buffer = self._buffer
        if len(buffer) < size:
            parts = [buffer]
            have = len(buffer)
            while have < size:
                data = self._fill(size - have)
                if not data:
                    break
                parts.append(data)
                have += len(data)
            buffer = b"".join(parts)
        self._buffer = buffer[size:]
        return buffer[:size]

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else None
        buffer = self._buffer
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            if newline >= 0:
                end = newline + 1
                break
            if limit is not None and len(buffer) >= limit:
                end = limit
                break
            start = len(buffer)
            data = self._fill(READ_SIZE)
            if not data:
                end = len(buffer)
                break
            buffer += data
        if limit is not None and end > limit:
            end = limit
        self._buffer = buffer[end:]
        return buffer[:end]

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def drain(self, limit: int) -> bool:
        """Read and discard what the app left unread; False if more than ``limit`` remains."""
        self._buffer = b""
        discarded = 0
        while not self._eof:
            if discarded > limit or (self._remaining > 0 and self._remaining > limit - discarded):
                return False
            data = self._fill(READ_SIZE)
            discarded += len(data)
        return True


def buffer_body(stream: InputStream, memory_limit: int) -> BinaryIO:
    """Read the whole body now (uWSGI ``post-buffering``); return it rewound.

    It stays in memory up to ``memory_limit`` bytes and moves to an unnamed
    temporary file beyond that.
    """
    target = tempfile.SpooledTemporaryFile(max_size=memory_limit, prefix="appserver-body-")
    try:
        while True:
            data = stream.read(READ_SIZE)
            if not data:
                break
            target.write(data)
    except BaseException:
        target.close()
        raise
    target.seek(0)
    return target  # type: ignore[return-value]
