"""On-the-fly gzip (nginx ``ngx_http_gzip_filter_module``): a ``ResponseSink`` that compresses.

Theory of operation
-------------------
``GzipSink`` sits in front of the writer.  On ``send_head`` it decides once,
with nginx's rules, whether this response is compressed:

* the status is 200, 403 or 404 (so never a 206 range answer or a 304);
* it has no ``Content-Encoding`` (a ``gzip_static`` file, an app's own gzip)
  and no ``Cache-Control: no-transform`` (RFC 9110 §7.7);
* its type is in ``gzip_types`` (text/html always; ``*`` any) and its
  ``Content-Length``, when known, is at least ``gzip_min_length``;
* then ``Vary: Accept-Encoding`` is added with ``gzip_vary`` (whether or not
  this client gets gzip: a cache must keep both), and the client must accept
  gzip (``accepts_gzip``, the negotiation ``gzip_static`` uses) and, for a
  request that came through a proxy (a ``Via`` header), ``gzip_proxied`` must
  allow it.

A compressed response loses ``Content-Length`` (the writer frames it chunked,
or by closing) and ``Accept-Ranges``, gets ``Content-Encoding: gzip``, and its
strong ``ETag`` becomes weak (the bytes differ; nginx does the same).  Each
``send`` is compressed with a sync flush so a streamed (proxied) response
keeps flowing; ``sendfile`` reads the file in pieces.  zlib releases the GIL,
so pieces above ``INLINE_LIMIT`` are compressed in the default thread pool,
off the event loop; small ones inline, where a thread hop costs more than
the compression (see docs/edge.md for the measurement).
"""

from __future__ import annotations

import asyncio
import os
import zlib

from edge.exchange import Request, ResponseSink, SinkFilter
from edge.handlers.static import accepts_gzip
from edge.response_rules import GzipRules

COMPRESSED_STATUSES = frozenset((200, 403, 404))
INLINE_LIMIT = 16 * 1024  # bytes compressed on the loop; more go to the thread pool (docs)
FILE_PIECE = 256 * 1024


def _media_type(value: bytes | None) -> str:
    if value is None:
        return ""
    return value.split(b";", 1)[0].strip().lower().decode("latin-1")


def _proxied_allows(
    conditions: tuple[str, ...], request: Request, headers: dict[bytes, bytes]
) -> bool:
    """nginx gzip_proxied for a request with ``Via``: any condition listed that holds."""
    if not conditions:
        return False
    if "any" in conditions:
        return True
    control = headers.get(b"cache-control", b"").lower()
    checks = {
        "expired": b"expires" in headers,
        "no-cache": b"no-cache" in control,
        "no-store": b"no-store" in control,
        "private": b"private" in control,
        "no_last_modified": b"last-modified" not in headers,
        "no_etag": b"etag" not in headers,
        "auth": request.header(b"authorization") is not None,
    }
    return any(checks.get(condition, False) for condition in conditions)


def compressible(
    rules: GzipRules, request: Request, status: int, headers: list[tuple[bytes, bytes]]
) -> tuple[bool, bool]:
    """(compress it, add Vary) for a response head, by the rules of the module docstring."""
    if status not in COMPRESSED_STATUSES:
        return False, False
    seen = {name.lower(): value for name, value in headers}
    if b"content-encoding" in seen:
        return False, False
    if b"no-transform" in seen.get(b"cache-control", b"").lower():
        return False, False
    types = rules.types
    if "*" not in types and _media_type(seen.get(b"content-type")) not in types:
        return False, False
    length = seen.get(b"content-length")
    if length is not None and int(length) < rules.min_length:
        return False, False
    if not accepts_gzip(request.header(b"accept-encoding")):
        return False, rules.vary
    if request.header(b"via") is not None and not _proxied_allows(rules.proxied, request, seen):
        return False, rules.vary
    return True, rules.vary


class GzipSink(SinkFilter):
    """A ``ResponseSink`` that gzips the body when ``compressible`` says so."""

    __slots__ = ("_request", "_rules", "_compressor", "_loop")

    def __init__(self, inner: ResponseSink, request: Request, rules: GzipRules) -> None:
        super().__init__(inner)
        self._request = request
        self._rules = rules
        self._compressor: zlib._Compress | None = None
        self._loop = asyncio.get_running_loop()

    async def send_head(
        self, status: int, headers: list[tuple[bytes, bytes]], reason: bytes | None = None
    ) -> None:
        compress, vary = compressible(self._rules, self._request, status, headers)
        if vary and not any(
            name.lower() == b"vary" and b"accept-encoding" in value.lower()
            for name, value in headers
        ):
            headers = [*headers, (b"Vary", b"Accept-Encoding")]
        if compress:
            kept = []
            for name, value in headers:
                lowered = name.lower()
                if lowered in (b"content-length", b"accept-ranges"):
                    continue
                if lowered == b"etag" and value[:2] != b"W/":
                    value = b"W/" + value
                kept.append((name, value))
            kept.append((b"Content-Encoding", b"gzip"))
            headers = kept
            # wbits 16 + 15: the gzip container (RFC 1952), what browsers take as "gzip".
            self._compressor = zlib.compressobj(self._rules.comp_level, zlib.DEFLATED, 31)
        await self._inner.send_head(status, headers, reason)

    async def _compress(self, data: bytes, mode: int) -> bytes:
        compressor = self._compressor
        assert compressor is not None
        if len(data) <= INLINE_LIMIT:
            return compressor.compress(data) + compressor.flush(mode)
        return await self._loop.run_in_executor(None, _compress_piece, compressor, data, mode)

    async def send(self, data: bytes) -> None:
        if self._compressor is None:
            await self._inner.send(data)
        elif data:
            out = await self._compress(data, zlib.Z_SYNC_FLUSH)
            if out:
                await self._inner.send(out)

    async def sendfile(self, file: object, offset: int, count: int) -> None:
        if self._compressor is None:
            await self._inner.sendfile(file, offset, count)
            return
        fd = file if isinstance(file, int) else file.fileno()  # type: ignore[attr-defined]
        while count > 0:
            piece = await self._loop.run_in_executor(
                None, os.pread, fd, min(count, FILE_PIECE), offset
            )
            if not piece:
                break
            offset += len(piece)
            count -= len(piece)
            await self.send(piece)

    async def end(self) -> None:
        compressor = self._compressor
        if compressor is not None and not self.finished:
            self._compressor = None
            tail = compressor.flush(zlib.Z_FINISH)
            await self._inner.send(tail)
        await self._inner.end()


def _compress_piece(compressor: zlib._Compress, data: bytes, mode: int) -> bytes:
    return compressor.compress(data) + compressor.flush(mode)
